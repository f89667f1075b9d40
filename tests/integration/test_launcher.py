"""The embedded launcher: instance overrides, clean stop, its own /dev/shm regions removed, clear failures."""

import socket
from pathlib import Path

import pytest
import tritonclient.http as httpclient
from orchestrator_helpers import free_port

from voicebot.serving.launcher import LaunchError, ServerOptions, TritonServer
from voicebot.serving.repository import ModelDeploy

pytestmark = pytest.mark.integration


def options(tmp_path: Path, **kw) -> ServerOptions:
    http, grpc, metrics = free_port(), free_port(), free_port()
    return ServerOptions(http_port=http, grpc_port=grpc, metrics_port=metrics, runtime_dir=tmp_path, **kw)


def test_override_instances_stop_cleanly_and_remove_shm(tmp_path):
    server = TritonServer(
        options(tmp_path, models=["audio_decode"], overrides={"audio_decode": ModelDeploy("KIND_CPU", 2)})
    )
    with server:
        server.start(timeout=60, progress=None)
        client = httpclient.InferenceServerClient(server.http_url)
        config = client.get_model_config("audio_decode")
        assert config["instance_group"][0]["count"] == 2 and config["instance_group"][0]["kind"] == "KIND_CPU"
        assert not client.is_model_ready("llm")  # only the requested subset is served
        regions = list(Path("/dev/shm").glob(f"{server._shm_prefix}*"))
        assert regions, "the Python backend should hold shared-memory regions under our prefix"
        process = server.process
    assert process.poll() is not None  # stopped
    assert not list(Path("/dev/shm").glob(f"{server._shm_prefix}*"))
    with socket.socket() as sock:  # nothing listens on the port any more
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", server.options.http_port))


def test_a_server_that_cannot_start_is_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        opts = options(tmp_path, models=["audio_decode"])
        opts.http_port = busy.getsockname()[1]
        server = TritonServer(opts)
        with pytest.raises(LaunchError, match="exited"):
            server.start(timeout=60, progress=None)
    assert server.process is None


def test_hardened_server_refuses_repository_and_config_apis(tmp_path):
    import urllib.error
    import urllib.request

    from voicebot.serving.__main__ import HARDENING_FLAGS

    server = TritonServer(options(tmp_path, models=["audio_decode"], extra_flags=HARDENING_FLAGS))
    with server:
        server.start(timeout=60, progress=None)
        for method, path in [("POST", "/v2/repository/index"), ("GET", "/v2/models/audio_decode/config")]:
            req = urllib.request.Request(
                f"http://{server.http_url}{path}", method=method, data=b"{}" if method == "POST" else None
            )
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(req, timeout=5)
            assert info.value.code in (403, 400), path
        client = httpclient.InferenceServerClient(server.http_url)
        assert client.is_model_ready("audio_decode")  # inference and health stay open
