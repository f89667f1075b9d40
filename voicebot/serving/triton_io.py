"""Helpers that every ``model.py`` shares: reading inputs, error responses, streaming.

Imported only inside a Triton Python stub (or a test that installs a fake
``triton_python_backend_utils``), never by the orchestrator.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

# Engines raise ValueError for inputs they cannot use; that is the client's error.
INPUT_ERRORS = (ValueError,)
CANCEL_CHECK_S = 0.05  # how stale a request's cancellation state may be
# Calls from a stub into the Python backend (responses, cancellation checks, custom metrics), one
# at a time per process: custom-metric messages from several request threads at once corrupted
# the backend's shared-memory allocator in tritonserver 2.51 (signal 11 in Metric::~Metric).
BACKEND_CALLS = threading.Lock()


class RequestError(Exception):
    """A request's own fault or fate; becomes that request's error response."""

    def __init__(self, message: str, code: str = "INVALID_ARG") -> None:
        super().__init__(message)
        self.code = code


def error_response(message: str, code: str = "INVALID_ARG") -> Any:
    err_code = getattr(pb_utils.TritonError, code, pb_utils.TritonError.INTERNAL)
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, err_code))


def input_array(request: Any, name: str, required: bool = True) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        if required:
            raise RequestError(f"input '{name}' is required")
        return None
    return tensor.as_numpy()


def input_bytes(request: Any, name: str, required: bool = True) -> bytes | None:
    arr = input_array(request, name, required)
    if arr is None:
        return None
    if arr.size != 1:
        raise RequestError(f"input '{name}' must hold exactly one element, got {arr.size}")
    value = arr.reshape(-1)[0]
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def input_text(request: Any, name: str, max_chars: int, required: bool = True, allow_empty: bool = False) -> str | None:
    raw = input_bytes(request, name, required)
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(f"input '{name}' is not valid UTF-8") from None
    if not allow_empty and not text.strip():
        raise RequestError(f"input '{name}' is empty")
    if len(text) > max_chars:
        raise RequestError(f"input '{name}' is {len(text)} characters, over the limit of {max_chars}")
    return text


def input_scalar(request: Any, name: str, kind: type, default: Any = None) -> Any:
    arr = input_array(request, name, required=False)
    if arr is None:
        return default
    if arr.size != 1:
        raise RequestError(f"input '{name}' must hold exactly one element")
    value = kind(arr.reshape(-1)[0])
    if isinstance(value, float) and not np.isfinite(value):
        raise RequestError(f"input '{name}' must be finite")
    return value


def request_parameter(request: Any, name: str, kind: type, default: Any = None, max_chars: int = 256) -> Any:
    """One of the request's own ``parameters`` (beside its tensors), checked for type and size.
    Parameters a model does not know are ignored, as Triton's backends do."""
    raw = request.parameters()
    try:
        values = json.loads(raw) if raw else {}
    except ValueError:
        raise RequestError("request parameters are not valid JSON") from None
    value = values.get(name, default) if isinstance(values, dict) else default
    if value is default:
        return default
    if kind is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise RequestError(f"request parameter '{name}' must be a {kind.__name__}")
    if isinstance(value, str) and not 0 < len(value) <= max_chars:
        raise RequestError(f"request parameter '{name}' must be 1 to {max_chars} characters")
    return value


def bytes_tensor(name: str, values: Iterable[str | bytes]) -> Any:
    items = [v.encode("utf-8") if isinstance(v, str) else v for v in values]
    return pb_utils.Tensor(name, np.array(items, dtype=np.object_))


def uint32_tensor(name: str, value: int) -> Any:
    """A one-element UINT32 output (vllm_backend's token counts)."""
    return pb_utils.Tensor(name, np.array([value], dtype=np.uint32))


def respond_each(requests: list[Any], handle: Callable[[Any], list[Any]], log: Callable[[str], None]) -> list[Any]:
    """Non-decoupled execute: one response per request; a bad request fails alone."""
    responses = []
    for request in requests:
        try:
            responses.append(pb_utils.InferenceResponse(output_tensors=handle(request)))
        except RequestError as exc:
            responses.append(error_response(str(exc), exc.code))
        except INPUT_ERRORS as exc:
            responses.append(error_response(str(exc), "INVALID_ARG"))
        except Exception as exc:  # the model keeps serving whatever one request did
            log(f"request failed: {exc}\n{traceback.format_exc()}")
            responses.append(error_response(f"internal error: {type(exc).__name__}: {exc}", "INTERNAL"))
    return responses


class StreamWorkers:
    """Runs decoupled requests on threads so ``execute`` returns at once; waits on finalize."""

    def __init__(self, log: Callable[[str], None], max_in_flight: int) -> None:
        self._log = log
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def submit(self, request: Any, produce: Callable[[Any, Callable[[], bool]], Iterator[list[Any]]]) -> None:
        sender = request.get_response_sender()
        if not self._slots.acquire(blocking=False):
            with BACKEND_CALLS:
                sender.send(
                    error_response("model is busy: too many requests in flight", "UNAVAILABLE"),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                )
            return
        thread = threading.Thread(target=self._run, args=(request, sender, produce), daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _run(self, request: Any, sender: Any, produce: Callable[..., Iterator[list[Any]]]) -> None:
        final: Any = None

        checked = [0.0, False]  # when the backend was last asked, and what it said

        def cancelled() -> bool:
            # Engines ask often (every token, every wait): ask the backend at most every
            # CANCEL_CHECK_S, and never again once it said yes.
            now = time.monotonic()
            if not checked[1] and now - checked[0] >= CANCEL_CHECK_S:
                with BACKEND_CALLS:
                    checked[1] = bool(sender.is_cancelled())
                checked[0] = now
            return bool(checked[1])

        try:
            for tensors in produce(request, cancelled):
                if cancelled():
                    break
                with BACKEND_CALLS:
                    sender.send(pb_utils.InferenceResponse(output_tensors=tensors))
        except RequestError as exc:
            final = error_response(str(exc), exc.code)
        except INPUT_ERRORS as exc:
            final = error_response(str(exc), "INVALID_ARG")
        except Exception as exc:
            self._log(f"stream failed: {exc}\n{traceback.format_exc()}")
            final = error_response(f"internal error: {type(exc).__name__}: {exc}", "INTERNAL")
        finally:
            # Exactly one final flag per request, whatever happened above.
            try:
                with BACKEND_CALLS:
                    if final is not None:
                        sender.send(final, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                    else:
                        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            except Exception as exc:  # the client may be gone
                self._log(f"could not send final response: {exc}")
            self._slots.release()
            with self._lock:
                self._threads.discard(threading.current_thread())

    def join(self, timeout: float = 10.0) -> None:
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
