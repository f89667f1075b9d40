"""A small typed stand-in for ``triton_python_backend_utils``, for adapter unit tests.

It implements only what the project's models use, with the real signatures, so a
misspelled attribute fails here as it would in the stub (unlike a MagicMock).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1


class TritonModelException(Exception):
    pass


class TritonError:
    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, message: str, code: int = 1) -> None:
        self._message = message
        self._code = code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name = name
        self._array = np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor] | None = None, error: TritonError | None = None) -> None:
        self.output_tensors = list(output_tensors or [])
        self._error = error

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


class ResponseSender:
    """Records what a decoupled model sends; ``cancel()`` simulates a client cancel."""

    def __init__(self) -> None:
        self.responses: list[InferenceResponse] = []
        self.finals = 0
        self.done = threading.Event()
        self._cancelled = False

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        if self.finals:
            raise RuntimeError("response sent after the final flag")
        if response is not None:
            self.responses.append(response)
        if flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL:
            self.finals += 1
            self.done.set()

    def is_cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        self._cancelled = True


@dataclass
class InferenceRequest:
    inputs: list[Tensor] = field(default_factory=list)
    request_id_: str = ""
    sender: ResponseSender = field(default_factory=ResponseSender)
    parameters_: str = "{}"  # the request's own parameters, as JSON (Triton's request.parameters())
    requested_output_names_: tuple[str, ...] = ()  # the outputs the client asked for

    def get_response_sender(self) -> ResponseSender:
        return self.sender

    def request_id(self) -> str:
        return self.request_id_

    def parameters(self) -> str:
        return self.parameters_

    def requested_output_names(self) -> list[str]:
        return list(self.requested_output_names_)


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return next((t for t in request.inputs if t.name() == name), None)


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in response.output_tensors if t.name() == name), None)


def using_decoupled_model_transaction_policy(model_config: dict[str, Any]) -> bool:
    return bool(model_config.get("model_transaction_policy", {}).get("decoupled", False))


class Logger:
    messages: list[str] = []  # noqa: RUF012 - shared on purpose, like the real logger

    @classmethod
    def log_error(cls, message: str) -> None:
        cls.messages.append(message)

    log_info = log_warn = log_verbose = log_error


class _Metric:
    def __init__(self, labels: dict[str, str], buckets: list[float] | None = None) -> None:
        self.labels = labels
        self.buckets = buckets
        self.observed: list[float] = []
        self.value = 0.0

    def observe(self, value: float) -> None:
        self.observed.append(value)

    def increment(self, value: float) -> None:
        self.value += value


class MetricFamily:
    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2

    def __init__(self, name: str, description: str, kind: int) -> None:
        self.name, self.description, self.kind = name, description, kind

    def Metric(self, labels: dict[str, str], buckets: list[float] | None = None) -> _Metric:
        if self.kind == self.HISTOGRAM and not buckets:
            raise TritonModelException("histogram metrics need buckets")
        return _Metric(labels, buckets)
