"""``python -m voicebot.serving``: run the embedded tritonserver until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from ..access import GRPC_TOKEN_HEADER, HTTP_TOKEN_HEADER, TOKEN_ENV, env_token, triton_key
from .config import ConfigError
from .launcher import RUNTIME_DIR, LaunchError, ServerOptions, TritonServer
from .repository import ModelDeploy, parse_instance_override
from .supervisor import Supervisor


def parse_args(argv: list[str] | None = None) -> tuple[ServerOptions, float, int]:
    parser = argparse.ArgumentParser(prog="python -m voicebot.serving", description=__doc__)
    parser.add_argument(
        "--host", default="127.0.0.1", help="bind address for HTTP, gRPC and metrics (default 127.0.0.1)"
    )
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--profile", default="cpu", help="deployment profile: cpu, gpu or a JSON file")
    parser.add_argument(
        "--instances",
        action="append",
        default=[],
        metavar="MODEL=KIND:COUNT",
        help="override a model's instance group, e.g. whisper_stt=KIND_CPU:2 (repeatable)",
    )
    parser.add_argument("--runtime-dir", type=Path, default=RUNTIME_DIR)
    parser.add_argument("--tritonserver", type=Path, default=None, help="server binary (default: the bundled one)")
    parser.add_argument(
        "--system-tritonserver",
        type=Path,
        default=None,
        help="a full Triton install's server (NVIDIA's container), used with its own backends",
    )
    parser.add_argument(
        "--print-key",
        action="store_true",
        help="print the header value Triton wants for VOICEBOT_API_TOKEN (for perf_analyzer, curl) and exit",
    )
    parser.add_argument("--log-verbose", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for all models")
    parser.add_argument(
        "--max-restarts",
        type=int,
        default=5,
        help="restart the server when it or a model process dies, at most this often in 10 minutes (0: exit)",
    )
    args = parser.parse_args(argv)
    if args.print_key:
        token = env_token()
        if token is None:
            raise SystemExit(f"{TOKEN_ENV} is not set: Triton's client APIs are open, no key is needed")
        print(f"{HTTP_TOKEN_HEADER}: {triton_key(token)}   (gRPC: {GRPC_TOKEN_HEADER})")
        raise SystemExit(0)
    overrides: dict[str, ModelDeploy] = {}
    for text in args.instances:
        model, kind, count = parse_instance_override(text)
        overrides[model] = ModelDeploy(kind=kind or "", count=count or 0)
    return (
        ServerOptions(
            host=args.host,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            profile=args.profile,
            overrides=overrides,
            runtime_dir=args.runtime_dir,
            server=args.tritonserver,
            log_verbose=args.log_verbose,
            system_server=args.system_tritonserver,
            api_token=env_token(),
        ),
        args.timeout,
        args.max_restarts,
    )


def main(argv: list[str] | None = None) -> int:
    try:
        options, timeout, max_restarts = parse_args(argv)
        server = TritonServer(options)
        supervisor = Supervisor(server, max_restarts=max_restarts, start_timeout_s=timeout)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        with server:
            server.start(timeout=timeout)
            print(f"[triton] log: {server.log_path}; Ctrl-C stops", file=sys.stderr)
            supervisor.run(stop)
            if supervisor.failure is not None:
                print(server.log_tail(), file=sys.stderr)
                return 1
        print("[triton] stopped", file=sys.stderr)
        return 0
    except (LaunchError, ConfigError, ValueError) as exc:
        print(f"[triton] error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
