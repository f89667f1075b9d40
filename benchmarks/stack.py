"""The served stack for benchmarks and the soak: the embedded tritonserver plus the orchestrator as
its own process (as `make run` has them), on free loopback ports, with the corpus ingested."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from voicebot.serving.launcher import RUNTIME_DIR, ServerOptions, TritonServer, free_port
from voicebot.serving.repository import ModelDeploy, parse_instance_override


def instance_overrides(specs: list[str]) -> dict[str, ModelDeploy]:
    """``["whisper_stt=KIND_CPU:2"]`` -> the launcher's overrides."""
    out = {}
    for spec in specs:
        model, kind, count = parse_instance_override(spec)
        out[model] = ModelDeploy(kind=kind or "", count=count or 0)
    return out


def upload(base: str, path: Path, name: str | None = None, data: bytes | None = None) -> dict[str, Any]:
    import httpx

    content = data if data is not None else path.read_bytes()
    resp = httpx.post(f"{base}/v1/documents", files={"file": (name or path.name, content)}, timeout=300)
    if resp.status_code not in (200, 201):
        raise RuntimeError(f"upload of {name or path.name} answered {resp.status_code}: {resp.text[:200]}")
    result: dict[str, Any] = resp.json()
    return result


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


class ServedStack:
    """``with ServedStack(workdir, documents) as stack:`` — Triton, the orchestrator, the documents."""

    def __init__(
        self,
        workdir: Path,
        documents: list[Path] | list[tuple[Path, str]],
        runtime: str = "bench",
        instances: list[str] | None = None,
        profile: str = "cpu",
        **env: str,
    ) -> None:
        self.workdir = workdir
        self.profile = profile
        # (path, the name it is uploaded under): the name's suffix says the document's type
        self.documents = [d if isinstance(d, tuple) else (d, d.name) for d in documents]
        self.triton = TritonServer(
            ServerOptions(
                profile=profile,
                http_port=free_port(),
                grpc_port=free_port(),
                metrics_port=free_port(),
                runtime_dir=RUNTIME_DIR / runtime,
                overrides=instance_overrides(instances or []),
            )
        )
        self.port = free_port()
        self.env = dict(
            os.environ,
            VOICEBOT_PORT=str(self.port),
            VOICEBOT_INDEX_DIR=str(workdir / "served-index"),
            VOICEBOT_MAX_SESSIONS="32",
            **env,
        )
        self.orchestrator: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/voice"

    def __enter__(self) -> ServedStack:
        try:
            self.triton.start()
            self.env["VOICEBOT_TRITON_GRPC_URL"] = self.triton.grpc_url
            self.env["VOICEBOT_TRITON_HTTP_URL"] = self.triton.http_url
            self.orchestrator = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "--log-level", "WARNING", "--profile", self.profile],
                env=self.env,
                cwd=self.workdir,
                stdout=subprocess.DEVNULL,
                stderr=open(self.workdir / "orchestrator.log", "wb"),
            )
            wait_http(f"{self.base}/healthz")
            for path, name in self.documents:
                upload(self.base, path, name)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.orchestrator is not None:
            self.orchestrator.terminate()
            try:
                self.orchestrator.wait(30)
            except subprocess.TimeoutExpired:
                self.orchestrator.kill()
                self.orchestrator.wait(5)
        self.triton.stop()
