"""Language-model engines behind one interface: llama.cpp on CPU, vLLM on GPU.

The ``llm`` Triton model picks one from its JSON sidecar (``model.json``):
``{"engine": "llama_cpp", ...}`` or ``{"engine": "vllm", "engine_args": {...}}``.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..llms import DEFAULT_LLM
from ..sampling import SamplingParams
from ..serving.config import to_dataclass

Cancelled = Callable[[], bool]


class LanguageModel(Protocol):
    """Streams text deltas for a prompt; stops early when ``cancelled()`` turns true."""

    def stream(self, prompt: str, params: SamplingParams, cancelled: Cancelled) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class LlamaCppSettings:
    model: str = DEFAULT_LLM  # a voicebot.llms id: its packaged weights and prompt format
    model_path: str = ""  # a GGUF file instead of the catalogued model's (then say its prompt_format)
    n_ctx: int = 2048
    n_threads: int = 2  # decoding
    n_threads_batch: int = 0  # prompt prefill; 0 = same as n_threads
    n_batch: int = 512


def eos_holder(eos: int, prompt_tokens: int, min_tokens: int) -> Callable[[Any, Any], Any]:
    """A llama.cpp logits processor: EOS impossible until ``min_tokens`` have been generated."""

    def hold(input_ids: Any, scores: Any) -> Any:
        if len(input_ids) - prompt_tokens < min_tokens:
            scores[eos] = float("-inf")
        return scores

    return hold


class LlamaCppEngine:
    """llama-cpp-python over a GGUF file. One generation at a time (the context is shared);
    consecutive prompts with the same prefix reuse its KV cache automatically."""

    def __init__(self, model_path: Path, settings: LlamaCppSettings) -> None:
        from llama_cpp import Llama

        if not Path(model_path).is_file():
            raise FileNotFoundError(f"GGUF model not found: {model_path}")
        self._llama = Llama(
            model_path=str(model_path),
            n_ctx=settings.n_ctx,
            n_threads=settings.n_threads,
            n_threads_batch=settings.n_threads_batch or settings.n_threads,
            n_batch=settings.n_batch,
            verbose=False,
        )
        self._lock = threading.Lock()
        self.n_ctx = settings.n_ctx

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=True))

    def stream(self, prompt: str, params: SamplingParams, cancelled: Cancelled) -> Iterator[str]:
        prompt_tokens = self.count_tokens(prompt)
        if prompt_tokens + 1 > self.n_ctx:
            raise ValueError(f"prompt is {prompt_tokens} tokens; the context holds {self.n_ctx}")
        max_tokens = min(params.max_tokens, self.n_ctx - prompt_tokens)
        eos = self._llama.token_eos()
        logit_bias = {eos: float("-inf")} if params.ignore_eos else None
        processors = None
        if params.min_tokens > 0 and not params.ignore_eos:
            from llama_cpp import LogitsProcessorList

            processors = LogitsProcessorList([eos_holder(eos, prompt_tokens, params.min_tokens)])
        with self._lock:
            chunks: Any = self._llama.create_completion(
                prompt,
                max_tokens=max_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                # llama.cpp: 0 disables top-k (vLLM says -1); greedy decoding needs only the best token.
                top_k=1 if params.temperature == 0 else max(params.top_k, 0),
                min_p=params.min_p,
                stop=list(params.stop) or None,
                seed=params.seed,
                repeat_penalty=params.repetition_penalty,
                presence_penalty=params.presence_penalty,
                frequency_penalty=params.frequency_penalty,
                logit_bias=logit_bias,
                logits_processor=processors,
                stream=True,
            )
            try:
                for chunk in chunks:
                    if cancelled():
                        return
                    text = chunk["choices"][0]["text"]
                    if text:
                        yield text
            finally:
                chunks.close()  # frees the context for the next request at once

    def close(self) -> None:
        self._llama.close()


@dataclass(frozen=True)
class VllmSettings:
    """Passed to ``AsyncEngineArgs(**engine_args)``, as Triton's vLLM backend does."""

    engine_args: dict[str, Any] = field(default_factory=dict)


class VllmEngine:
    """vLLM's AsyncLLMEngine on a private event loop thread, bridged to a sync iterator."""

    def __init__(self, settings: VllmSettings) -> None:
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        if "model" not in settings.engine_args:
            raise ValueError("vllm engine_args must name a local 'model' directory")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-loop", daemon=True)
        self._thread.start()
        args = AsyncEngineArgs(**settings.engine_args)
        self._engine = AsyncLLMEngine.from_engine_args(args)
        self._ids = itertools.count()
        self._tokenizer: Any = None

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is None:
            fut = asyncio.run_coroutine_threadsafe(self._engine.get_tokenizer(), self._loop)
            self._tokenizer = fut.result()
        return len(self._tokenizer.encode(text))

    def _sampling(self, params: SamplingParams) -> Any:
        from vllm import SamplingParams as VllmParams

        return VllmParams(
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            min_p=params.min_p,
            max_tokens=params.max_tokens,
            min_tokens=params.min_tokens,
            stop=list(params.stop) or None,
            seed=params.seed,
            repetition_penalty=params.repetition_penalty,
            presence_penalty=params.presence_penalty,
            frequency_penalty=params.frequency_penalty,
            ignore_eos=params.ignore_eos,
        )

    def stream(self, prompt: str, params: SamplingParams, cancelled: Cancelled) -> Iterator[str]:
        request_id = f"voicebot-{next(self._ids)}"
        deltas: queue.Queue[str | BaseException | None] = queue.Queue()

        async def produce() -> None:
            sent = 0
            try:
                async for out in self._engine.generate(prompt, self._sampling(params), request_id):
                    text = out.outputs[0].text
                    if len(text) > sent:
                        deltas.put(text[sent:])
                        sent = len(text)
            except BaseException as exc:  # surfaced to the consumer thread
                deltas.put(exc)
            finally:
                deltas.put(None)

        producer = asyncio.run_coroutine_threadsafe(produce(), self._loop)
        finished = False
        try:
            while True:
                if cancelled():
                    return
                try:
                    item = deltas.get(timeout=0.05)
                except queue.Empty:
                    continue
                if item is None:
                    finished = True
                    return
                if isinstance(item, BaseException):
                    finished = True
                    raise RuntimeError(f"vLLM generation failed: {item}") from item
                yield item
        finally:
            if not finished:
                asyncio.run_coroutine_threadsafe(self._engine.abort(request_id), self._loop)
                producer.cancel()

    def close(self) -> None:
        shutdown = getattr(self._engine, "shutdown", None)
        if callable(shutdown):
            shutdown()
        self._loop.call_soon_threadsafe(self._loop.stop)


def load_language_model(sidecar: dict[str, Any]) -> LanguageModel:
    """Build the engine that the ``llm`` model's sidecar names (its ``prompt_format`` is for
    ``voice_answer``, see ``voicebot.llms.prompt_format_of``)."""
    engine = sidecar.get("engine", "llama_cpp")
    if engine == "llama_cpp":
        from ..weights import llm_gguf

        cfg = to_dataclass(LlamaCppSettings, sidecar.get("llama_cpp", {}), "llm sidecar llama_cpp")
        path = Path(cfg.model_path) if cfg.model_path else llm_gguf(cfg.model)
        return LlamaCppEngine(path, cfg)
    if engine == "vllm":
        return VllmEngine(VllmSettings(engine_args=dict(sidecar.get("engine_args", {}))))
    raise ValueError(f"unknown llm engine {engine!r}; choose 'llama_cpp' or 'vllm'")
