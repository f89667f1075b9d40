"""Start the tritonserver bundled in ``nvidia-pytriton`` on the project's model repository.

The wheel carries a complete tritonserver 2.51 and the Python backend, but the stub
for each Python version lives apart from the backend, the bundled libraries are not on
the loader path, and the stub embeds whichever libpython it finds first. This module
assembles a backend directory, sets the environment the stub needs, renders the
repository for a deployment profile, starts the server, waits for every model with a
visible progress line, and stops it cleanly, removing its own ``/dev/shm`` regions.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..access import TOKEN_ENV, restriction_flags
from .loopback import LOOPBACK_ENV
from .repository import PROJECT_ROOT, ModelDeploy, load_profile, render

RUNTIME_DIR = PROJECT_ROOT / ".run"
_LOADED = re.compile(r"successfully loaded '([^']+)'")


class LaunchError(RuntimeError):
    """The server could not be started or did not become ready."""


@dataclass
class TritonPaths:
    server: Path
    backend_dir: Path | None  # .../backends, holding python/ with backend, utils and stub; None: the server's own
    cache_dir: Path | None
    libs_dir: Path | None


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS has free right now (tests and benchmarks start servers on these)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pytriton_root() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise LaunchError("nvidia-pytriton is not installed: run `make run` (or pip install nvidia-pytriton==0.7.0)")
    return Path(next(iter(spec.submodule_search_locations)))


def prepare_backend(runtime_dir: Path, server: Path | None = None) -> TritonPaths:
    """Locate the bundled server and build ``backends/python`` with the stub for this Python."""
    root = pytriton_root() / "tritonserver"
    python_backend = root / "backends" / "python"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    for needed in (python_backend / "libtriton_python.so", python_backend / "triton_python_backend_utils.py", stub):
        if not needed.is_file():
            raise LaunchError(f"nvidia-pytriton is incomplete: {needed} is missing (Python {version} supported?)")
    target = runtime_dir / "backends" / "python"
    target.mkdir(parents=True, exist_ok=True)
    for src in (python_backend / "libtriton_python.so", python_backend / "triton_python_backend_utils.py", stub):
        dst = target / src.name
        if not dst.is_file() or dst.stat().st_size != src.stat().st_size or dst.stat().st_mtime < src.stat().st_mtime:
            shutil.copy2(src, dst)
    libs = root.parent.parent / "nvidia_pytriton.libs"
    return TritonPaths(
        server=server or root / "bin" / "tritonserver",
        backend_dir=runtime_dir / "backends",
        cache_dir=root / "caches",
        libs_dir=libs if libs.is_dir() else None,
    )


def server_env(paths: TritonPaths) -> dict[str, str]:
    """The environment the Python stubs need (docs/runtime-notes.md, "Triton from a wheel")."""
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    lib_dirs = [str(sysconfig.get_config_var("LIBDIR") or "")]  # this interpreter's libpython first
    if paths.libs_dir is not None:
        lib_dirs.append(str(paths.libs_dir))
    if env.get("LD_LIBRARY_PATH"):
        lib_dirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(d for d in lib_dirs if d)
    # The project is installed (editable) in the venv; its root must NOT go on sys.path,
    # where the top-level triton/ folder would pass for the GPU compiler package that
    # torch probes for.
    # Weights come from packages; nothing may reach for a model hub.
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # glibc gives each thread that allocates its own heap arena (up to 8 per core), and
    # tritonserver's gRPC and HTTP threads leave each arena fragmented: a 10-minute soak grew
    # its RSS 11% with the default and 4.4-5% with two arenas (docs/runtime-notes.md).
    env.setdefault("GLIBC_TUNABLES", f"glibc.malloc.arena_max={MALLOC_ARENAS}")
    return env


MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """The same limit for this (already running) process's later threads; False where the
    C library is not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


@dataclass
class ServerOptions:
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    profile: str = "cpu"
    overrides: dict[str, ModelDeploy] = field(default_factory=dict)
    runtime_dir: Path = RUNTIME_DIR
    server: Path | None = None
    log_verbose: int = 0
    extra_args: list[str] = field(default_factory=list)
    models: list[str] | None = None  # a subset of the repository; None serves every model
    exit_timeout: int = 10
    system_server: Path | None = None  # a full Triton install (container) instead of the pytriton wheel
    extra_flags: list[str] = field(default_factory=list)
    # When set, inference, metadata, configs and statistics need it (voicebot/access.py).
    api_token: str | None = None


class TritonServer:
    """A running tritonserver process; a context manager that always cleans up."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None
        self.models: list[str] = []
        self._shm_prefix = f"voicebot{os.getpid()}_{options.http_port}_"
        self.log_path = options.runtime_dir / f"tritonserver-{options.http_port}.log"
        self._log: IO[bytes] | None = None
        self._repository: Path | None = None

    @property
    def http_url(self) -> str:
        return f"{self.options.host}:{self.options.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.options.host}:{self.options.grpc_port}"

    def command(self, paths: TritonPaths, repository: Path) -> list[str]:
        o = self.options
        own_backends = [] if paths.backend_dir is None else [f"--backend-directory={paths.backend_dir}"]
        own_cache = [] if paths.cache_dir is None else [f"--cache-directory={paths.cache_dir}"]
        return [
            str(paths.server),
            f"--model-repository={repository}",
            *own_backends,
            *own_cache,
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            f"--http-address={o.host}",
            f"--http-port={o.http_port}",
            f"--grpc-address={o.host}",
            f"--grpc-port={o.grpc_port}",
            f"--metrics-address={o.host}",
            f"--metrics-port={o.metrics_port}",
            "--allow-metrics=true",
            "--model-control-mode=none",
            "--strict-readiness=true",
            "--exit-on-error=true",
            # Shutdown waits this long for open client connections and in-flight requests.
            f"--exit-timeout-secs={o.exit_timeout}",
            f"--log-verbose={o.log_verbose}",
            # Closed by default: the APIs nothing here needs, and with a token every other but health.
            *restriction_flags(o.api_token),
            *o.extra_args,
            *o.extra_flags,
        ]

    def start(self, timeout: float = 180.0, progress: IO[str] | None = sys.stderr) -> TritonServer:
        o = self.options
        o.runtime_dir.mkdir(parents=True, exist_ok=True)
        if o.system_server is not None:  # NVIDIA's container: its own server, backends and Python
            paths = TritonPaths(server=o.system_server, backend_dir=None, cache_dir=None, libs_dir=None)
        else:
            paths = prepare_backend(o.runtime_dir, o.server)
        deploys = load_profile(o.profile)
        for model, override in o.overrides.items():
            base = deploys.get(model, ModelDeploy())
            deploys[model] = ModelDeploy(override.kind or base.kind, override.count or base.count, base.sidecar)
        repository = o.runtime_dir / f"model_repository-{o.http_port}"
        self._repository = repository
        self.models = render(repository, deploys, only=self.options.models)
        env = server_env(paths)
        # Models that call other models (voice_answer) do so through this server's gRPC port.
        loopback_host = "127.0.0.1" if o.host in ("0.0.0.0", "::", "") else o.host
        env[LOOPBACK_ENV] = f"{loopback_host}:{o.grpc_port}"
        env.pop(TOKEN_ENV, None)  # the models' own calls carry exactly the token this server wants
        if o.api_token:
            env[TOKEN_ENV] = o.api_token
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(
            self.command(paths, repository),
            env=env,
            cwd=o.runtime_dir,  # stubs put their cwd on sys.path: never the project root (see server_env)
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self.wait_ready(timeout, progress)
        except BaseException:
            self.stop()
            raise
        return self

    def _get(self, path: str, method: str = "GET") -> Any:
        req = urllib.request.Request(
            f"http://{self.http_url}{path}", method=method, data=b"{}" if method == "POST" else None
        )
        with urllib.request.urlopen(req, timeout=2) as resp:
            body = resp.read()
            return json.loads(body) if body else None

    def loaded_models(self) -> set[str]:
        """Models the log reports as loaded (the HTTP API only answers once all are)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return set()
        return set(_LOADED.findall(text))

    def is_ready(self) -> bool:
        try:
            self._get("/v2/health/ready")
            return True
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(self, timeout: float, progress: IO[str] | None) -> None:
        began = time.monotonic()
        total = len(self.models)
        while True:
            elapsed = time.monotonic() - began
            if self.process is not None and self.process.poll() is not None:
                raise LaunchError(f"tritonserver exited with {self.process.returncode}:\n{self.log_tail()}")
            loaded = self.loaded_models()
            ready = len(loaded)
            if progress is not None:
                loading = ", ".join(sorted(set(self.models) - loaded))
                progress.write(f"\r[triton] {ready}/{total} models ready ({elapsed:4.1f} s) {loading[:60]:<60}")
                progress.flush()
            if ready == total and self.is_ready():
                if progress is not None:
                    progress.write(
                        f"\n[triton] ready: HTTP {self.http_url}, gRPC {self.grpc_url}, "
                        f"metrics {self.options.host}:{self.options.metrics_port}\n"
                    )
                return
            if elapsed > timeout:
                raise LaunchError(f"tritonserver not ready after {timeout:.0f} s ({ready}/{total}):\n{self.log_tail()}")
            time.sleep(0.5)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float | None = None) -> None:
        """SIGINT (Triton unloads models and exits), then SIGKILL after ``timeout``."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout if timeout is not None else self.options.exit_timeout + 5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc is not None:
            # Stubs are in the server's process group; none may outlive it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for leftover in Path("/dev/shm").glob(f"{self._shm_prefix}*"):
            leftover.unlink(missing_ok=True)
        if self._repository is not None:
            shutil.rmtree(self._repository, ignore_errors=True)  # rendered per start; the log stays
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> TritonServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
