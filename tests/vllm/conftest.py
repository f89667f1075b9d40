"""A real tritonserver whose ``llm`` runs on vLLM's CPU build (``make test-vllm``, in .venv-vllm)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicebot import contract as c
from voicebot.serving.repository import PROFILES_DIR

PROFILE = PROFILES_DIR / "cpu-vllm.json"


@pytest.fixture(scope="session")
def vllm_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cpu-vllm with vLLM's request log on: the tests wait for its "Aborted request" line."""
    profile = json.loads(PROFILE.read_text())
    profile["models"] = {c.LLM.name: profile["models"][c.LLM.name]}
    profile["models"][c.LLM.name]["sidecar"]["engine_args"]["enable_log_requests"] = True
    path = tmp_path_factory.mktemp("profile") / "cpu-vllm-test.json"
    path.write_text(json.dumps(profile))
    return path


@pytest.fixture(scope="session")
def vllm_triton(vllm_profile: Path) -> Iterator[object]:
    try:
        import vllm  # noqa: F401
    except ImportError:
        pytest.fail("vLLM is not installed in this venv: run these tests with `make test-vllm` (.venv-vllm)")
    from triton_helpers import own_server

    from voicebot.hf_weights import SOURCES, hf_model_dir
    from voicebot.serving.launcher import RUNTIME_DIR

    sidecar = json.loads(vllm_profile.read_text())["models"][c.LLM.name]["sidecar"]
    assert sidecar["packaged_model"] in SOURCES
    hf_model_dir(sidecar["packaged_model"])  # converted? (else the message says how)
    try:
        server = own_server(RUNTIME_DIR / "test-vllm", models=[c.LLM.name], profile=str(vllm_profile))
    except Exception as exc:
        pytest.fail(f"tritonserver with the vLLM llm did not start: {exc}")
    yield server
    server.stop()
