"""Calls from one model to others through the server's own gRPC endpoint, from inside a stub.

``voice_answer`` chains ``llm`` and ``tts`` this way instead of with BLS
(``InferenceRequest.exec(decoupled=True)``). In Triton 2.51 — the pytriton wheel's server
and NVIDIA's 24.10 container alike — the Python stub's decoupled-BLS path is unsafe as
soon as two threads use it: it frees response tensors without holding the GIL (heap
corruption: the ``voice_answer`` stub segfaulted after ~6.5 minutes of a soak), and a
thread creating a BLS stream can deadlock against one woken inside ``__next__``.
``triton/bls_repro/`` reproduces both in seconds; a server whose python_backend takes the
GIL in ``~PbTensor`` (newer sources do) could go back to BLS. A gRPC call to 127.0.0.1
costs well under a millisecond per message and brings real request cancellation with it.

One asyncio loop on a thread per model instance, one gRPC client on it
(:mod:`voicebot.wire`); :meth:`Loopback.iterate` hands an async answer to the model's
synchronous request thread and, when the request is cancelled or fails, cancels the whole
async answer — whose streams cancel their own requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import numpy as np

from .. import contract as c
from .. import wire
from ..access import env_token
from ..engines.llm import Generation
from ..sampling import SamplingParams

LOOPBACK_ENV = "VOICEBOT_LOOPBACK_GRPC"
DEFAULT_URL = "127.0.0.1:8001"  # the port Triton uses when nobody chose one
POLL_S = 0.02
DRAIN_S = 5.0  # how long a cancelled answer may take to cancel its own calls

T = TypeVar("T")


def loopback_url() -> str:
    return os.environ.get(LOOPBACK_ENV) or DEFAULT_URL


def count_generation(result: Any, generation: Generation) -> None:
    """Add one ``llm`` response's additional outputs (vllm_backend's) to ``generation``."""
    prompt, new, reason = (result.as_numpy(n) for n in (c.NUM_INPUT_TOKENS, c.NUM_OUTPUT_TOKENS, c.FINISH_REASON))
    if prompt is not None and prompt.size:
        generation.prompt_tokens = int(prompt.reshape(-1)[0])
    if new is not None:
        generation.output_tokens += int(new.sum())
    if reason is not None and reason.size:
        value = reason.reshape(-1)[0].decode("utf-8", errors="replace")
        if value != c.UNFINISHED:
            generation.finish_reason = value


class Loopback:
    """This server's models, as async streams for :class:`voicebot.pipeline.AnswerPipeline`."""

    def __init__(self, url: str | None = None, stall_timeout_s: float = 120.0) -> None:
        self.stall_timeout_s = stall_timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="loopback", daemon=True)
        self._thread.start()

        async def connect() -> Any:  # a grpc.aio channel belongs to the loop that made it
            return wire.grpc_client(url or loopback_url(), env_token())

        self._client = asyncio.run_coroutine_threadsafe(connect(), self._loop).result(30)

    async def llm_deltas(
        self,
        prompt: str,
        params: SamplingParams,
        request_id: str,
        *,
        cache_key: str | None = None,
        prefill_only: bool = False,
        pace_cps: float | None = None,
        generation: Generation | None = None,
    ) -> AsyncGenerator[str, None]:
        """``llm``'s text deltas; ``generation`` follows its counts and finish reason."""
        generation = generation if generation is not None else Generation()
        options: dict[str, Any] = {}
        if cache_key:
            options[c.LLM_CACHE_KEY] = cache_key
        if prefill_only:
            options[c.LLM_PREFILL_ONLY] = True
        if pace_cps:
            options[c.LLM_PACE_CPS] = pace_cps
        values = {
            c.TEXT_INPUT: prompt,
            c.STREAM: True,
            c.SAMPLING_PARAMETERS: params.to_json(),
            c.EXCLUDE_INPUT_IN_OUTPUT: True,
            c.RETURN_FINISH_REASON: True,
            c.RETURN_NUM_INPUT_TOKENS: True,
            c.RETURN_NUM_OUTPUT_TOKENS: True,
        }
        bound = self.stall_timeout_s
        outputs = [c.TEXT_OUTPUT, c.FINISH_REASON, c.NUM_INPUT_TOKENS, c.NUM_OUTPUT_TOKENS]
        responses = wire.stream(self._client, c.LLM, values, outputs, request_id, bound, bound, options or None)
        async with contextlib.aclosing(responses):  # closing this closes the call at once
            async for result in responses:
                count_generation(result, generation)
                text = result.as_numpy(c.TEXT_OUTPUT)
                for item in [] if text is None else text.reshape(-1):
                    yield item.decode("utf-8", errors="replace")

    async def tts_chunks(self, text: str, request_id: str) -> AsyncGenerator[tuple[np.ndarray, int], None]:
        bound = self.stall_timeout_s
        outputs = [c.AUDIO, c.SAMPLE_RATE]
        async for result in wire.stream(self._client, c.TTS, {c.TEXT: text}, outputs, request_id, bound, bound):
            audio, rate = result.as_numpy(c.AUDIO), result.as_numpy(c.SAMPLE_RATE)
            if audio is not None and rate is not None and audio.size:
                yield audio.astype(np.int16, copy=False), int(rate.reshape(-1)[0])

    def iterate(self, answer: AsyncIterator[T], is_cancelled: Callable[[], bool]) -> Iterator[T]:
        """``answer``'s items on this (synchronous) thread. When the caller stops — the request
        cancelled, the consumer gone, an error — the async answer is cancelled and given
        ``DRAIN_S`` to cancel its calls before this returns."""
        items: queue.Queue[tuple[str, Any]] = queue.Queue()
        started, finished = threading.Event(), threading.Event()

        async def pump() -> None:
            started.set()
            try:
                async with contextlib.aclosing(answer):  # type: ignore[type-var]
                    async for item in answer:
                        items.put(("item", item))
                items.put(("done", None))
            except asyncio.CancelledError:
                # Only this method cancels the pump, and by then nobody reads: any other
                # cancellation cut the answer short, which must not pass for its end.
                items.put(("error", RuntimeError("the answer was cut short inside the server")))
                raise
            except BaseException as exc:  # surfaced on the request's thread
                items.put(("error", exc))
            finally:
                finished.set()

        task = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        try:
            while not is_cancelled():
                try:
                    kind, value = items.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                if kind == "done":
                    return
                if kind == "error":
                    raise value
                yield value
        finally:
            task.cancel()
            if started.is_set():  # a pump cancelled before it ran has no calls to cancel
                finished.wait(DRAIN_S)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
