"""The embedded launcher: instance overrides, clean stop, its own /dev/shm regions removed, clear failures."""

import socket
from pathlib import Path

import pytest
import tritonclient.http as httpclient
from orchestrator_helpers import free_port

from voicebot import contract as c
from voicebot.serving.launcher import LaunchError, ServerOptions, TritonServer
from voicebot.serving.repository import ModelDeploy

pytestmark = pytest.mark.integration


def options(tmp_path: Path, **kw) -> ServerOptions:
    http, grpc, metrics = free_port(), free_port(), free_port()
    return ServerOptions(http_port=http, grpc_port=grpc, metrics_port=metrics, runtime_dir=tmp_path, **kw)


def test_override_instances_stop_cleanly_and_remove_shm(tmp_path):
    server = TritonServer(
        options(tmp_path, models=[c.AUDIO_DECODE.name], overrides={c.AUDIO_DECODE.name: ModelDeploy("KIND_CPU", 2)})
    )
    with server:
        server.start(timeout=60, progress=None)
        client = httpclient.InferenceServerClient(server.http_url)
        config = client.get_model_config(c.AUDIO_DECODE.name)
        assert config["instance_group"][0]["count"] == 2 and config["instance_group"][0]["kind"] == "KIND_CPU"
        assert not client.is_model_ready(c.LLM.name)  # only the requested subset is served
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
        opts = options(tmp_path, models=[c.AUDIO_DECODE.name])
        opts.http_port = busy.getsockname()[1]
        server = TritonServer(opts)
        with pytest.raises(LaunchError, match="exited"):
            server.start(timeout=60, progress=None)
    assert server.process is None


def _status(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None) -> int:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, method=method, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


ADMIN_CALLS = [
    ("POST", "/v2/repository/index"),
    ("POST", "/v2/repository/models/audio_decode/unload"),
    ("GET", "/v2/systemsharedmemory/status"),
    ("GET", "/v2/logging"),
    ("GET", "/v2/trace/setting"),
]
CLIENT_CALLS = [
    ("GET", "/v2/models/audio_decode"),
    ("GET", "/v2/models/audio_decode/config"),
    ("GET", "/v2/models/audio_decode/stats"),
]


def test_triton_is_closed_by_default_and_wants_the_token_once_one_is_set(tmp_path):
    import tritonclient.grpc as grpcclient
    from audio_files import encode, tone
    from tritonclient.utils import InferenceServerException

    from voicebot.access import GRPC_TOKEN_HEADER, HTTP_TOKEN_HEADER, authorize, triton_key

    wav = encode(tone(0.5), 16000, "wav")

    def grpc_decode(url: str, token: str | None) -> None:
        client = authorize(grpcclient.InferenceServerClient(url), token, "grpc")
        inputs = c.AUDIO_DECODE.infer_inputs(grpcclient, {c.AUDIO_BYTES: wav})
        try:
            assert client.infer(c.AUDIO_DECODE.name, inputs).as_numpy(c.AUDIO).size > 0
        finally:
            client.close()

    # No token: what nothing here needs is closed (the key is random per start), the rest open.
    server = TritonServer(options(tmp_path / "open", models=[c.AUDIO_DECODE.name]))
    with server:
        server.start(timeout=60, progress=None)
        base = f"http://{server.http_url}"
        for method, path in ADMIN_CALLS:
            assert _status(base + path, method, b"{}" if method == "POST" else None) == 403, path
            forged = {"voicebot-admin": "never"}  # the old fixed value opens nothing
            assert _status(base + path, method, b"{}" if method == "POST" else None, forged) == 403, path
        for method, path in CLIENT_CALLS:
            assert _status(base + path, method) == 200, path
        grpc_decode(server.grpc_url, None)

    token = "launcher-test-token"
    server = TritonServer(options(tmp_path / "token", models=[c.AUDIO_DECODE.name], api_token=token))
    with server:
        server.start(timeout=60, progress=None)
        base = f"http://{server.http_url}"
        assert _status(base + "/v2/health/ready") == 200  # probes need no token
        for method, path in CLIENT_CALLS:
            assert _status(base + path, method) == 403, path
            assert _status(base + path, method, headers={HTTP_TOKEN_HEADER: "wrong-token-here"}) == 403, path
            assert _status(base + path, method, headers={HTTP_TOKEN_HEADER: token}) == 403, path  # not the token
            assert _status(base + path, method, headers={HTTP_TOKEN_HEADER: triton_key(token)}) == 200, path
        for method, path in ADMIN_CALLS:  # the token's key is not the admin key
            headers = {HTTP_TOKEN_HEADER: triton_key(token)}
            assert _status(base + path, method, b"{}" if method == "POST" else None, headers) == 403, path
        with pytest.raises(InferenceServerException, match=GRPC_TOKEN_HEADER):
            grpc_decode(server.grpc_url, None)
        grpc_decode(server.grpc_url, token)
        # The token itself (it also opens the orchestrator) is not on the command line anyone can read.
        cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes().decode()
        assert token not in cmdline and triton_key(token) in cmdline
