"""Reproduce Triton 2.51's decoupled-BLS failures under concurrency (why voice_answer does not use BLS).

    .venv/bin/python triton/bls_repro/run.py [--seconds 60] [--clients 4]

Serves ``models/`` (echo_stream + fanout) with the pytriton wheel's tritonserver and keeps
``--clients`` gRPC streams asking fanout. Prints how it ended: the fanout process died (heap
corruption: the stub drops BLS response tensors without the GIL), requests stopped being
answered (a deadlock between the stub's response-iterator locks and the GIL), or it survived.
Measured on the 2-core VM, 2026-11-27: the fanout stub died within 1 s in 3 of 3 runs.
"""

from __future__ import annotations

import argparse
import queue
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from voicebot.serving.launcher import RUNTIME_DIR, free_port, prepare_backend, server_env
from voicebot.serving.supervisor import model_stubs

HERE = Path(__file__).resolve().parent


def ask(url: str, stop: threading.Event, tally: dict[str, int], problems: list[str]) -> None:
    client = grpcclient.InferenceServerClient(url)
    responses: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    n = grpcclient.InferInput("N", [1], "INT32")
    n.set_data_from_numpy(np.array([8], dtype=np.int32))
    while not stop.is_set():
        client.async_stream_infer("fanout", [n], enable_empty_final_response=True)
        while True:
            try:
                result, error = responses.get(timeout=30)
            except queue.Empty:
                problems.append("no response for 30 s")
                stop.set()
                break
            if error is not None:
                problems.append(str(error))
                stop.set()
                break
            if result.get_response().parameters["triton_final_response"].bool_param:
                tally["answered"] += 1
                break
    client.stop_stream(cancel_requests=True)
    client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    runtime = RUNTIME_DIR / "bls_repro"
    runtime.mkdir(parents=True, exist_ok=True)
    paths = prepare_backend(runtime)
    http, grpc, metrics = free_port(), free_port(), free_port()
    command = [
        str(paths.server),
        f"--model-repository={HERE / 'models'}",
        f"--backend-directory={paths.backend_dir}",
        f"--cache-directory={paths.cache_dir}",
        f"--backend-config=python,shm-region-prefix-name=blsrepro{http}_",
        *(f"--{kind}-address=127.0.0.1" for kind in ("http", "grpc", "metrics")),
        f"--http-port={http}",
        f"--grpc-port={grpc}",
        f"--metrics-port={metrics}",
    ]
    with open(runtime / "tritonserver.log", "wb") as log:
        server = subprocess.Popen(
            command, env=server_env(paths, runtime), cwd=runtime, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            for _ in range(240):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=1)
                    break
                except OSError:
                    time.sleep(0.5)
            stubs = model_stubs(server.pid)
            stop, tally, problems = threading.Event(), {"answered": 0}, []
            clients = [
                threading.Thread(target=ask, args=(f"127.0.0.1:{grpc}", stop, tally, problems))
                for _ in range(args.clients)
            ]
            began = time.monotonic()
            for client in clients:
                client.start()
            outcome = f"survived {args.seconds:g} s"
            while time.monotonic() - began < args.seconds and not stop.is_set():
                time.sleep(0.5)
                dead = [stub.model for pid, stub in stubs.items() if pid not in model_stubs(server.pid)]
                if dead:
                    outcome = f"the {', '.join(dead)} process died after {time.monotonic() - began:.1f} s"
                    break
            stop.set()
            for client in clients:
                client.join(40)
            if problems and "died" not in outcome:
                outcome = f"stopped answering after {time.monotonic() - began:.1f} s: {problems[0]}"
            print(f"{outcome}; {tally['answered']} requests answered (server log: {runtime / 'tritonserver.log'})")
            return 0 if outcome.startswith("survived") else 1
        finally:
            server.kill()
            server.wait(20)
            for leftover in Path("/dev/shm").glob(f"blsrepro{http}_*"):  # a killed server leaves its regions
                leftover.unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(main())
