"""Small synchronous helpers over stock tritonclient, for the integration tests."""

from __future__ import annotations

import json
import queue
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from voicebot import contract as c
from voicebot.access import authorize
from voicebot.serving.launcher import ServerOptions, TritonServer, free_port


def own_server(runtime_dir: Path, models: list[str] | None = None, **options: Any) -> TritonServer:
    """A started tritonserver of a test's own (a subset of ``models``, other ``ServerOptions``),
    on free ports so it never collides with `make run` or another run on this machine."""
    ports = [free_port() for _ in range(3)]
    server = TritonServer(
        ServerOptions(
            http_port=ports[0],
            grpc_port=ports[1],
            metrics_port=ports[2],
            runtime_dir=runtime_dir,
            models=models,
            **options,
        )
    )
    try:
        return server.start(timeout=240, progress=None)
    except BaseException:
        server.stop()
        raise


def tensor(module: Any, model: c.ModelContract, name: str, value: Any) -> Any:
    """One ``InferInput`` of ``model``'s input ``name``, its dtype and shape from the contract."""
    return model.infer_inputs(module, {name: value})[0]


@dataclass
class Received:
    at: float
    result: Any

    def text(self) -> str | None:
        out = self.result.as_numpy(c.TEXT_OUTPUT)
        return None if out is None else "".join(x.decode() for x in out.reshape(-1))

    def audio(self) -> np.ndarray | None:
        return self.result.as_numpy(c.AUDIO)


class GrpcStream:
    """One bidirectional gRPC stream; ``collect`` gathers a request's responses to the final one."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.client = authorize(grpcclient.InferenceServerClient(url), token, "grpc")
        self.responses: queue.Queue[tuple[Any, Any]] = queue.Queue()
        self.client.start_stream(callback=self._on_response)

    def _on_response(self, result: Any, error: Any) -> None:
        self.responses.put((result, error))

    def send(
        self,
        model: str,
        inputs: list[Any],
        outputs: list[str],
        request_id: str = "",
        parameters: dict[str, Any] | None = None,
    ) -> None:
        """``parameters``: the request's own (Triton request parameters beside the tensors)."""
        self.client.async_stream_infer(
            model,
            inputs,
            outputs=[grpcclient.InferRequestedOutput(name) for name in outputs],
            request_id=request_id,
            enable_empty_final_response=True,
            parameters=parameters,
        )

    def next(self, timeout: float = 60) -> tuple[Any, Any]:
        return self.responses.get(timeout=timeout)

    def collect(
        self,
        model: str,
        inputs: list[Any],
        outputs: list[str],
        timeout: float = 120,
        parameters: dict[str, Any] | None = None,
    ) -> list[Received]:
        self.send(model, inputs, outputs, parameters=parameters)
        got: list[Received] = []
        deadline = time.monotonic() + timeout
        while True:
            result, error = self.next(max(deadline - time.monotonic(), 0.1))
            if error is not None:
                raise error
            params = result.get_response().parameters
            final = params["triton_final_response"].bool_param if "triton_final_response" in params else False
            if result.get_response().outputs:
                got.append(Received(time.monotonic(), result))
            if final:
                return got

    def close(self, cancel: bool = False) -> None:
        self.client.stop_stream(cancel_requests=cancel)
        self.client.close()


def http_client(url: str) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(url, network_timeout=120, connection_timeout=10)


def metric_value(metrics_url: str, name: str, labels: str = "") -> float:
    """Sum of a Prometheus sample's values on Triton's metrics endpoint."""
    with urllib.request.urlopen(f"http://{metrics_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and labels in line and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metric_after_change(metrics_url: str, name: str, before: float, timeout: float = 30) -> float:
    """The metric's value once it has moved from ``before`` (an event: e.g. a generation ended)."""
    deadline = time.monotonic() + timeout
    while True:
        value = metric_value(metrics_url, name)
        if value != before or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def generate_stream_sse(http_url: str, model: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Triton's HTTP ``generate_stream`` endpoint (the only HTTP route to a decoupled model)."""
    req = urllib.request.Request(
        f"http://{http_url}/v2/models/{model}/generate_stream",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    events = []
    with urllib.request.urlopen(req, timeout=60) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    return events


__all__ = [
    "GrpcStream",
    "InferenceServerException",
    "http_client",
    "metric_after_change",
    "metric_value",
    "own_server",
    "tensor",
]
