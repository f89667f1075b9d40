"""Keep a tritonserver serving: restart it when it, or one of its model processes, dies.

Measured on Triton 2.51 (``tests/integration/test_fault_drills.py``): when the stub process
of a decoupled Python model is killed, the server keeps reporting the model READY, never
fails the request that stub was serving, and answers every later request with "Stub process
'llm_0_0' is not healthy". Nothing inside the server brings the model back while model
control is off, so the launcher watches the processes itself and restarts the server (all
models: 3–14 s on the CPU profile), a bounded number of times.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .launcher import LaunchError, TritonServer

STUB_COMM = "triton_python_b"  # /proc/<pid>/comm keeps 15 characters of the stub's name


@dataclass(frozen=True)
class Stub:
    pid: int
    model: str


def rss_mib(pid: int, proc: Path = Path("/proc")) -> float | None:
    """A process's resident memory in MiB (None once it is gone)."""
    try:
        for line in (proc / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _stat(pid_dir: Path) -> tuple[str, str, int] | None:
    """(comm, state, ppid) of one process, or None when it is gone."""
    try:
        text = (pid_dir / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split at the last ')'.
    head, _, tail = text.rpartition(")")
    fields = tail.split()
    return head.partition("(")[2], fields[0], int(fields[1])


def model_stubs(server_pid: int, proc: Path = Path("/proc")) -> dict[int, Stub]:
    """The live (not zombie) Python-backend stubs the server started, by pid."""
    stubs: dict[int, Stub] = {}
    for pid_dir in proc.glob("[0-9]*"):
        stat = _stat(pid_dir)
        if stat is None or stat[2] != server_pid or not stat[0].startswith(STUB_COMM) or stat[1] == "Z":
            continue
        try:
            argv = (pid_dir / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # argv[1] is <repository>/<model>/<version>/model.py
        parts = Path(argv[1].decode(errors="replace")).parts if len(argv) > 1 else ()
        stubs[int(pid_dir.name)] = Stub(int(pid_dir.name), parts[-3] if len(parts) >= 3 else "?")
    return stubs


class Supervisor:
    """Restarts ``server`` (same ports, same models) when it exits or a model stub dies.

    Gives up with :class:`LaunchError` after ``max_restarts`` restarts within ``window_s``:
    a model that crashes on load would otherwise restart forever.
    """

    def __init__(
        self,
        server: TritonServer,
        interval_s: float = 1.0,
        max_restarts: int = 5,
        window_s: float = 600.0,
        start_timeout_s: float = 180.0,
        progress: IO[str] | None = sys.stderr,
    ) -> None:
        self.server = server
        self.interval_s = interval_s
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.start_timeout_s = start_timeout_s
        self.progress = progress
        self.restarts: deque[float] = deque()
        self.restart_count = 0
        self._stubs: dict[int, Stub] = {}
        self.failure: LaunchError | None = None

    def _say(self, text: str) -> None:
        if self.progress is not None:
            self.progress.write(f"[triton] {text}\n")
            self.progress.flush()

    def take_baseline(self) -> None:
        """Remember the stubs of a server that just became ready."""
        process = self.server.process
        self._stubs = model_stubs(process.pid) if process is not None else {}

    def problem(self) -> str | None:
        process = self.server.process
        if process is None or process.poll() is not None:
            code = None if process is None else process.returncode
            return f"tritonserver exited (code {code})"
        alive = model_stubs(process.pid)
        for pid, stub in sorted(self._stubs.items()):
            if pid not in alive:
                return f"the process of model '{stub.model}' (pid {pid}) died"
        return None

    def restart(self, reason: str) -> None:
        now = time.monotonic()
        while self.restarts and now - self.restarts[0] > self.window_s:
            self.restarts.popleft()
        if len(self.restarts) >= self.max_restarts:
            raise LaunchError(
                f"{reason}; already restarted {len(self.restarts)} times in {self.window_s:g} s, giving up"
            )
        self.restarts.append(now)
        self.restart_count += 1
        self._say(f"{reason}: restarting tritonserver (restart {self.restart_count})")
        began = time.monotonic()
        # A dead stub's request is never finished, so a graceful shutdown would wait for it.
        self.server.stop(timeout=3)
        self.server.start(timeout=self.start_timeout_s, progress=self.progress)
        self.take_baseline()
        self._say(f"restarted in {time.monotonic() - began:.1f} s")

    def check(self) -> bool:
        """One round: restart if something died. True when a restart happened."""
        reason = self.problem()
        if reason is None:
            return False
        self.restart(reason)
        return True

    def run(self, stop: threading.Event) -> None:
        """Check every ``interval_s`` until ``stop`` is set; remembers why it gave up in ``failure``."""
        self.take_baseline()
        try:
            while not stop.wait(self.interval_s):
                self.check()
        except LaunchError as exc:
            self.failure = exc
            self._say(f"error: {exc}")

    def start_thread(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="triton-supervisor", daemon=True)
        thread.start()
        return thread
