"""Calling Triton models over gRPC (asyncio), the one way every caller here does it.

The orchestrator calls the models, and ``voice_answer`` calls ``llm`` and ``tts`` on its own
server, through these two functions: :func:`infer` for a unary call, :func:`stream` for a
decoupled model's responses up to its final one. Every wait is bounded (a model process
that died never answers: Triton 2.51 does not fail its request). Leaving :func:`stream`
early — a consumer that stops reading, a cancelled task — cancels the gRPC call, and Triton
marks the request cancelled for the model (``is_cancelled()``). Measured here
(``benchmarks/cancel_leak.py``): 600 such cancellations grew the calling process by about
1 MiB, where tritonclient's threaded ``stop_stream(cancel_requests=True)`` leaked ~45 KB each.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from .contract import ErrorCode, ModelContract

# A restarted tritonserver must be found again within seconds: gRPC's default reconnect
# backoff grows to two minutes while the server is away.
RECONNECT_CHANNEL_ARGS = [
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


class CallError(RuntimeError):
    """A Triton call failed; ``code`` says how (the client's input, a stall, the server away)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


# ``url`` may be any gRPC target: ``host:port``; ``dns:///name:port``, every address the name
# resolves to (a headless Kubernetes Service: all Triton pods); ``ipv4:a:port,b:port``. Calls are
# spread over the reachable ones, one stream at a time; one that goes away takes no calls.
BALANCING_CHANNEL_ARGS = [("grpc.lb_policy_name", "round_robin")]


def grpc_client(url: str, token: str | None = None) -> Any:
    """An asyncio gRPC client that reconnects fast, spreads its calls over every address of
    ``url`` and sends ``token`` (see ``voicebot.access``)."""
    import tritonclient.grpc.aio as grpcaio
    from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE

    from .access import authorize

    args = [
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
        *RECONNECT_CHANNEL_ARGS,
        *BALANCING_CHANNEL_ARGS,
    ]
    return authorize(grpcaio.InferenceServerClient(url, channel_args=args), token, "grpc")


def call_error(exc: Any, what: str) -> CallError:
    """An ``InferenceServerException`` as a :class:`CallError` with the fitting code."""
    status = str(exc.status() or "").upper()
    message = exc.message() if hasattr(exc, "message") else str(exc)
    if "INVALID_ARG" in status or "400" in status:
        return CallError(ErrorCode.INVALID_INPUT, f"{what}: {message}")
    if "DEADLINE_EXCEEDED" in status:
        return CallError(ErrorCode.UPSTREAM_STALLED, f"{what} did not answer in time")
    return CallError(ErrorCode.UPSTREAM_UNAVAILABLE, f"{what} failed: {message}")


async def infer(
    client: Any,
    model: ModelContract,
    values: dict[str, Any],
    outputs: Sequence[str],
    request_id: str,
    timeout_s: float,
) -> Any:
    """One unary inference; the result's arrays by ``as_numpy``."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    try:
        return await client.infer(
            model.name,
            model.infer_inputs(grpcclient, values),
            outputs=model.requested_outputs(grpcclient, outputs),
            request_id=request_id,
            client_timeout=timeout_s,
        )
    except InferenceServerException as exc:
        raise call_error(exc, model.name) from None


async def stream(
    client: Any,
    model: ModelContract,
    values: dict[str, Any],
    outputs: Sequence[str],
    request_id: str,
    first_timeout_s: float,
    stall_timeout_s: float,
    parameters: dict[str, Any] | None = None,
) -> AsyncGenerator[Any, None]:
    """Each response of one request to a decoupled model, until its last.

    The first may take ``first_timeout_s`` (it can queue behind other work), each later one
    ``stall_timeout_s``; past either, :class:`CallError` ``upstream_stalled``. ``parameters``
    are the request's own (Triton request parameters, beside its tensors)."""
    import grpc
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    inputs = model.infer_inputs(grpcclient, values)
    requested = model.requested_outputs(grpcclient, outputs)

    async def requests() -> AsyncIterator[dict[str, Any]]:
        yield {
            "model_name": model.name,
            "inputs": inputs,
            "outputs": requested,
            "request_id": request_id,
            "parameters": parameters,
        }

    responses = client.stream_infer(requests())
    pieces = aiter(responses)
    bound = first_timeout_s
    try:
        while True:
            try:
                result, error = await asyncio.wait_for(anext(pieces), bound)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise CallError(ErrorCode.UPSTREAM_STALLED, f"{model.name} sent nothing for {bound:g} s") from None
            bound = stall_timeout_s
            if error is not None:
                raise call_error(error, model.name)
            yield result
    except InferenceServerException as exc:
        raise call_error(exc, model.name) from None
    except grpc.aio.AioRpcError as exc:  # the stream itself broke: the server went away mid-answer
        raise CallError(ErrorCode.UPSTREAM_UNAVAILABLE, f"{model.name} stream broke: {exc.code().name}") from None
    finally:
        # Ends the gRPC call; a request still running is cancelled in Triton (barge-in, a closed turn).
        responses.cancel()
