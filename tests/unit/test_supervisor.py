"""The supervisor's process bookkeeping, on a fake /proc and a stand-in server (no Triton)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from voicebot import contract as c
from voicebot.serving.launcher import LaunchError
from voicebot.serving.supervisor import Supervisor, model_stubs


def fake_process(proc: Path, pid: int, comm: str, state: str, ppid: int, argv: list[str]) -> None:
    d = proc / str(pid)
    d.mkdir()
    (d / "stat").write_text(f"{pid} ({comm}) {state} {ppid} 1 1 0 -1 4194560 0 0\n")
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")


def test_model_stubs_finds_the_servers_live_stubs_only(tmp_path: Path) -> None:
    stub = "/x/backends/python/triton_python_backend_stub"
    fake_process(tmp_path, 10, "tritonserver", "S", 1, ["tritonserver"])
    fake_process(tmp_path, 11, "triton_python_b", "S", 10, [stub, "/r/model_repository-1/llm/1/model.py", "shm"])
    fake_process(tmp_path, 12, "triton_python_b", "S", 10, [stub, "/r/model_repository-1/tts/1/model.py", "shm"])
    fake_process(tmp_path, 13, "triton_python_b", "Z", 10, [stub, "/r/model_repository-1/embedder/1/model.py"])
    fake_process(tmp_path, 14, "triton_python_b", "S", 99, [stub, "/other/model_repository-2/llm/1/model.py"])
    fake_process(tmp_path, 15, "odd) name (x", "S", 10, ["python"])  # a comm with parentheses
    stubs = model_stubs(10, proc=tmp_path)
    assert {pid: s.model for pid, s in stubs.items()} == {11: c.LLM.name, 12: c.TTS.name}


class StandIn:
    """What the supervisor uses of a TritonServer: a process, stop() and start()."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 0, progress: object = None) -> StandIn:
        self.process = subprocess.Popen(["sleep", "60"])
        self.starts += 1
        return self

    def stop(self, timeout: float | None = None) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None


def test_restarts_a_dead_server_and_gives_up_after_too_many() -> None:
    server = StandIn().start()
    supervisor = Supervisor(server, max_restarts=2, window_s=600, progress=None)  # type: ignore[arg-type]
    supervisor.take_baseline()
    try:
        assert supervisor.problem() is None and not supervisor.check()
        for n in (1, 2):
            assert server.process is not None
            server.process.kill()
            server.process.wait()
            assert "exited" in (supervisor.problem() or "")
            assert supervisor.check()
            assert supervisor.restart_count == n and server.starts == n + 1
            assert supervisor.problem() is None
        server.process.kill()
        server.process.wait()
        with pytest.raises(LaunchError, match="giving up"):
            supervisor.check()
    finally:
        server.stop()


def test_old_restarts_leave_the_window() -> None:
    server = StandIn().start()
    supervisor = Supervisor(server, max_restarts=1, window_s=0.0, progress=None)  # type: ignore[arg-type]
    try:
        for _ in range(3):  # each earlier restart is already outside a zero-length window
            assert server.process is not None
            server.process.kill()
            server.process.wait()
            assert supervisor.check()
        assert supervisor.restart_count == 3
    finally:
        server.stop()


def test_server_processes_and_the_orchestrator_get_two_malloc_arenas(monkeypatch):
    from voicebot.serving.launcher import MALLOC_ARENAS, TritonPaths, limit_malloc_arenas, server_env

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    paths = TritonPaths(server=Path("/x/tritonserver"), backend_dir=None, cache_dir=None, libs_dir=None)
    assert server_env(paths)["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max={MALLOC_ARENAS}"
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")  # an operator's own choice wins
    assert server_env(paths)["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=4"
    assert limit_malloc_arenas() is True  # glibc accepts the limit for this running process
