"""``python -m orchestrator``: serve the orchestrator (optionally with the embedded Triton)."""

from __future__ import annotations

import argparse
import os
import sys
import threading

from . import logs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator", description=__doc__)
    parser.add_argument("--with-triton", action="store_true", help="start the embedded tritonserver first (make run)")
    parser.add_argument("--host", default=None, help="bind address (VOICEBOT_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (VOICEBOT_PORT, default 8080)")
    parser.add_argument(
        "--profile",
        default="cpu",
        help="deployment profile (triton/profiles/<name>.json): Triton's models with --with-triton, and the"
        " retrieval settings it chooses (VOICEBOT_* variables win)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)

    from pydantic import ValidationError

    from voicebot.serving.config import ConfigError
    from voicebot.serving.launcher import LaunchError, ServerOptions, TritonServer, limit_malloc_arenas
    from voicebot.serving.repository import profile_orchestrator_defaults
    from voicebot.serving.supervisor import Supervisor

    from .app import create_app
    from .server import DrainingServer, uvicorn_config
    from .settings import Settings

    logs.configure(args.log_level)
    limit_malloc_arenas()  # before uvicorn's and the index's threads allocate (docs/runtime-notes.md)
    try:
        overrides = {
            key: value
            for key, value in profile_orchestrator_defaults(args.profile).items()
            if f"VOICEBOT_{key.upper()}" not in os.environ
        }
        overrides.update({k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None})
        settings = Settings(**overrides)
    except ConfigError as exc:
        print(f"invalid profile: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"invalid settings:\n{exc}", file=sys.stderr)
        return 2
    server = None
    stop_watching = threading.Event()
    watcher = None
    try:
        if args.with_triton:
            server = TritonServer(ServerOptions(profile=args.profile, api_token=settings.api_token))
            server.start()
            # Restarts the server if it or a model process dies; the orchestrator reconnects by itself.
            watcher = Supervisor(server).start_thread(stop_watching)
        print(f"[orchestrator] http://{settings.host}:{settings.port}/  (WebSocket /v1/voice)", file=sys.stderr)
        DrainingServer(uvicorn_config(create_app(settings), settings)).run()
    except (LaunchError, ConfigError) as exc:
        print(f"[triton] error: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_watching.set()
        if watcher is not None:
            watcher.join(timeout=60)
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
