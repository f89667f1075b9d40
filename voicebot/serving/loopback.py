"""Streaming calls from one model to another through the server's own gRPC endpoint.

``voice_answer`` chains ``llm`` and ``tts`` this way instead of with BLS
(``InferenceRequest.exec(decoupled=True)``). In Triton 2.51 — the pytriton wheel's server
and NVIDIA's 24.10 container alike — the Python stub's decoupled-BLS path is unsafe as
soon as two threads use it: it frees response tensors without holding the GIL (heap
corruption: the ``voice_answer`` stub segfaulted after ~6.5 minutes of the soak), and a
thread creating a BLS stream can deadlock against one woken inside ``__next__``.
``triton/bls_repro/`` reproduces both in seconds. A gRPC stream to 127.0.0.1 costs well
under a millisecond per message and brings real request cancellation with it.

Runs inside a stub; the launcher tells it where the server listens (``LOOPBACK_ENV``).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..access import authorize, env_token
from . import cancel

LOOPBACK_ENV = "VOICEBOT_LOOPBACK_GRPC"
DEFAULT_URL = "127.0.0.1:8001"  # the port Triton uses when nobody chose one
POLL_S = 0.05
DRAIN_S = 5.0  # how long a stopped call may take to reach its final response


class LoopbackError(Exception):
    """A called model failed, went silent or could not be reached."""

    def __init__(self, message: str, code: str = "UNAVAILABLE") -> None:
        super().__init__(message)
        self.code = code


def loopback_url() -> str:
    return os.environ.get(LOOPBACK_ENV) or DEFAULT_URL


def _error_code(error: Any) -> str:
    status = str(getattr(error, "status", lambda: "")() or "")
    return "INVALID_ARG" if "INVALID_ARG" in status else "UNAVAILABLE"


class ModelStream:
    """One gRPC stream to this server; calls on it run one after another.

    ``call`` yields each response's outputs as numpy arrays until the model's final
    response. Once ``stop`` is set it yields nothing more: it flags the request cancelled
    (``cancel.py``) and reads on to the final response, or cancels the stream after
    ``DRAIN_S``. It raises :class:`LoopbackError` when the model fails or sends nothing for
    ``stall_timeout_s``.
    """

    def __init__(self, url: str | None = None, stall_timeout_s: float = 120.0) -> None:
        import tritonclient.grpc as grpcclient  # the stub imports it only when a model chains others

        self._grpc = grpcclient
        self.stall_timeout_s = stall_timeout_s
        self._responses: queue.Queue[tuple[Any, Any]] = queue.Queue()
        self._client = authorize(grpcclient.InferenceServerClient(url or loopback_url()), env_token(), "grpc")
        self._client.start_stream(callback=lambda result, error: self._responses.put((result, error)))
        self._open = True
        self._in_flight = False

    def _inputs(self, inputs: dict[str, np.ndarray]) -> list[Any]:
        from tritonclient.utils import np_to_triton_dtype

        out = []
        for name, array in inputs.items():
            infer_input = self._grpc.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            infer_input.set_data_from_numpy(array)
            out.append(infer_input)
        return out

    def call(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        outputs: list[str],
        request_id: str,
        stop: threading.Event,
    ) -> Iterator[dict[str, np.ndarray]]:
        if not self._open:
            raise LoopbackError(f"{model}: the stream was already cancelled")
        self._in_flight = True
        self._client.async_stream_infer(
            model,
            self._inputs(inputs),
            request_id=request_id,
            outputs=[self._grpc.InferRequestedOutput(name) for name in outputs],
            enable_empty_final_response=True,
        )
        last = time.monotonic()
        drain_until: float | None = None
        while True:
            if stop.is_set() and drain_until is None:
                # Ask the model to stop (it checks the flag between tokens and clauses) and read
                # to its final response, so the stream ends cleanly; cancel it outright only if
                # that takes longer than DRAIN_S.
                cancel.request_cancel(request_id)
                drain_until = time.monotonic() + DRAIN_S
            try:
                result, error = self._responses.get(timeout=POLL_S)
            except queue.Empty:
                if drain_until is not None and time.monotonic() > drain_until:
                    self.cancel()
                    return
                if drain_until is None and time.monotonic() - last > self.stall_timeout_s:
                    self.cancel()
                    raise LoopbackError(f"{model} sent nothing for {self.stall_timeout_s:g} s") from None
                continue
            last = time.monotonic()
            if error is not None:
                if drain_until is not None:
                    self.cancel()
                    return
                message = error.message() if hasattr(error, "message") else str(error)
                raise LoopbackError(f"{model}: {message}", _error_code(error))
            final = result.get_response().parameters.get("triton_final_response")
            is_final = final is not None and final.bool_param
            if is_final:
                self._in_flight = False
            if drain_until is None:
                arrays = {}
                for name in outputs:
                    array = result.as_numpy(name)
                    if array is not None:
                        arrays[name] = array
                if arrays:
                    yield arrays
            if is_final:
                return

    def cancel(self) -> None:
        """Close the stream, cancelling a request still in flight (the server sees it cancelled)."""
        if self._open:
            self._open = False
            # Only when needed: tritonclient 2.73 leaks ~45 KB per stream closed with
            # cancel_requests=True (measured: 600 streams, +27 MiB), none without. So a
            # stopped call drains to its final response first (see ``call``).
            self._client.stop_stream(cancel_requests=self._in_flight)

    def close(self) -> None:
        self.cancel()
        self._client.close()

    def __enter__(self) -> ModelStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
