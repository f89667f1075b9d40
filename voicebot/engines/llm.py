"""Language-model engines behind one interface: llama.cpp on CPU, vLLM on GPU.

The ``llm`` Triton model picks one from its JSON sidecar (``model.json``):
``{"engine": "llama_cpp", ...}`` or ``{"engine": "vllm", "engine_args": {...}}``.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import queue
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..contract import READING_PACE_CPS
from ..llms import DEFAULT_LLM
from ..sampling import SamplingParams
from ..serving.config import to_dataclass
from ..text import NO_ANSWER
from .schedule import QUANTUM, Clock, StepScheduler, Ticket

Cancelled = Callable[[], bool]


@dataclass
class Generation:
    """What an engine tells about one stream while it runs (vllm_backend's additional outputs):
    the prompt's tokens once known, the tokens generated so far (updated before each delta is
    yielded; an end-of-sequence token counts, as in vLLM), and, once the engine itself ended
    the stream, ``"stop"`` (end of sequence or a stop string) or ``"length"`` (``max_tokens``
    or the context). A stream its caller cancelled or closed has no finish reason."""

    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None


class LanguageModel(Protocol):
    """Streams text deltas for a prompt; stops early when ``cancelled()`` turns true.

    ``cache_key`` names whose prompt this is (a voice session): the engine may keep the KV
    state of that key's last :meth:`prefill` so that its next prompt with the same prefix
    evaluates only what is new, even when other keys' requests ran in between."""

    def stream(
        self,
        prompt: str,
        params: SamplingParams,
        cancelled: Cancelled,
        cache_key: str | None = None,
        pace_cps: float | None = None,
        generation: Generation | None = None,
    ) -> Iterator[str]:
        """``pace_cps``: how fast the caller consumes the text (characters per second); an engine
        with several requests in flight may serve first whoever runs out first. ``generation``,
        when given, is kept up to date as the stream goes."""
        ...

    def prefill(self, prompt: str, cancelled: Cancelled, cache_key: str | None = None) -> int:
        """Evaluate ``prompt`` into the cache without generating; the number of tokens it evaluated."""
        ...

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
    # Speculative prefill (voicebot/pipeline.py): evaluated in chunks that give way to a waiting
    # answer; one saved prefix per cache key, least recently used dropped past either bound.
    prefill_chunk: int = 64
    prefix_cache_entries: int = 8
    prefix_cache_mb: int = 256
    # Answers in flight at once, each in its own context (the weights are shared, memory-mapped);
    # their steps take turns by the listeners' deadlines (voicebot/engines/schedule.py).
    parallel: int = 4
    default_pace_cps: float = READING_PACE_CPS  # for a request that does not say its listener's pace
    # Abstain when unsure (issue 13): for a prompt that itself tells the model to reply
    # ``abstain_text`` when it cannot answer, an answer whose first token would be that text's first
    # token with at least this probability (softmax of the raw logits) is that text. Greedy
    # decoding abstains only when it is the single likeliest token; a small model that invents a
    # number often gives it a fair share all the same (benchmarks/abstention_sweep.py). 0: off.
    abstain_min_p: float = 0.0
    abstain_text: str = NO_ANSWER


MIN_REUSED_TOKENS = 8  # a shorter shared prefix is evaluated again


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two sequences share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass(frozen=True)
class SavedPrefix:
    tokens: tuple[int, ...]
    state: bytes  # llama.cpp's sequence state: the KV cells of ``tokens``


class PrefixStore:
    """One saved prefix per key, bounded in count and bytes; the least recently used goes first.
    Safe to share between request threads."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[str, SavedPrefix] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        with self._lock:
            return self._bytes()

    def _bytes(self) -> int:
        return sum(len(e.state) for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> SavedPrefix | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: str, entry: SavedPrefix) -> None:
        with self._lock:
            self._entries.pop(key, None)
            if len(entry.state) > self.max_bytes or self.max_entries <= 0:
                return
            self._entries[key] = entry
            while len(self._entries) > self.max_entries or self._bytes() > self.max_bytes:
                self._entries.popitem(last=False)


def token_counter(generation: Generation, prompt_tokens: int) -> Callable[[Any, Any], bool]:
    """A llama.cpp stopping criterion that never stops: it sees the evaluated tokens each time
    a token is sampled (the new one is not among them yet), so it counts the generated ones."""

    def count(input_ids: Any, scores: Any) -> bool:
        generation.output_tokens = max(generation.output_tokens, len(input_ids) - prompt_tokens + 1)
        return False

    return count


def eos_holder(eos: int, prompt_tokens: int, min_tokens: int) -> Callable[[Any, Any], Any]:
    """A llama.cpp logits processor: EOS impossible until ``min_tokens`` have been generated."""

    def hold(input_ids: Any, scores: Any) -> Any:
        if len(input_ids) - prompt_tokens < min_tokens:
            scores[eos] = float("-inf")
        return scores

    return hold


def abstention_gate(token: int, min_p: float, prompt_tokens: int, fired: list[float]) -> Callable[[Any, Any], Any]:
    """A llama.cpp logits processor: at an answer's first token, when ``token`` has probability
    ``min_p`` or more, nothing else may be sampled (its probability is put in ``fired``)."""
    import numpy as np

    def gate(input_ids: Any, scores: Any) -> Any:
        if len(input_ids) != prompt_tokens:
            return scores
        weights = np.exp(scores - scores.max(), dtype=np.float64)
        p = float(weights[token] / weights.sum())
        if p >= min_p:
            fired.append(p)
            chosen = scores[token]
            scores[:] = float("-inf")
            scores[token] = chosen
        return scores

    return gate


@dataclass(eq=False)
class _Slot:
    """One llama.cpp context (its own KV cache) over the shared, memory-mapped weights."""

    llama: Any
    busy: bool = False
    used: int = 0  # when it was last taken (a counter): ties go to the least recently used

    def live_tokens(self) -> list[int]:
        return self.llama.input_ids[: self.llama.n_tokens].tolist()


class LlamaCppEngine:
    """llama-cpp-python over a GGUF file, with ``parallel`` contexts so that several answers are
    in flight at once. Their steps (prompt chunks, tokens) take turns on the cores by the
    listeners' deadlines (:mod:`voicebot.engines.schedule`). A prompt reuses the KV cache of the
    longest prefix a free context holds, or its cache key's saved prefill when that shares more."""

    def __init__(self, model_path: Path, settings: LlamaCppSettings, clock: Clock = time.perf_counter) -> None:
        from llama_cpp import Llama

        if not Path(model_path).is_file():
            raise FileNotFoundError(f"GGUF model not found: {model_path}")
        if not 1 <= settings.parallel <= 16:
            raise ValueError(f"llama_cpp.parallel must be 1 to 16, got {settings.parallel}")
        if not settings.default_pace_cps > 0:
            raise ValueError(f"llama_cpp.default_pace_cps must be positive, got {settings.default_pace_cps}")
        if not 0.0 <= settings.abstain_min_p <= 1.0:
            raise ValueError(f"llama_cpp.abstain_min_p must be 0 (off) to 1, got {settings.abstain_min_p}")
        if settings.abstain_min_p > 0 and not settings.abstain_text.strip():
            raise ValueError("llama_cpp.abstain_text must not be empty when abstain_min_p is set")
        self._slots = [
            _Slot(
                Llama(
                    model_path=str(model_path),
                    n_ctx=settings.n_ctx,
                    n_threads=settings.n_threads,
                    n_threads_batch=settings.n_threads_batch or settings.n_threads,
                    n_batch=settings.n_batch,
                    verbose=False,
                )
            )
            for _ in range(settings.parallel)
        ]
        self._llama = self._slots[0].llama  # for the tokenizer and the model's metadata
        self._slots_cond = threading.Condition()
        self._queue: deque[Ticket] = deque()  # answers waiting for a free context, first come first
        self._keys_waiting: Counter[str] = Counter()  # their cache keys
        self._prefilling: Counter[str] = Counter()  # cache keys whose prefill holds a context (a new one
        # may start before the one it replaces has seen its cancel)
        self._taken = itertools.count(1)
        self.clock = clock
        self.scheduler = StepScheduler(clock)
        self.default_pace_cps = settings.default_pace_cps
        self.n_ctx = settings.n_ctx
        self.prefill_chunk = max(1, settings.prefill_chunk)
        self.store = PrefixStore(settings.prefix_cache_entries, settings.prefix_cache_mb * 2**20)
        self.last_reused = 0  # prompt tokens the last answer found in the cache (for tests and benchmarks)
        self.abstain_min_p = settings.abstain_min_p
        self.abstain_text = settings.abstain_text
        self.abstentions = 0  # answers the gate turned into abstain_text (for tests and benchmarks)

    def _tokens(self, text: str) -> list[int]:
        # As create_completion tokenizes a prompt: the model's BOS if it wants one, and
        # special tokens (ChatML's <|im_start|>) as themselves.
        return self._llama.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def count_tokens(self, text: str) -> int:
        return len(self._tokens(text))

    def _checked_tokens(self, prompt: str) -> list[int]:
        tokens = self._tokens(prompt)
        if len(tokens) + 1 > self.n_ctx:
            raise ValueError(f"prompt is {len(tokens)} tokens; the context holds {self.n_ctx}")
        return tokens

    def _abstain_token(self, prompt: str, tokens: list[int]) -> int | None:
        """The first token of the abstention after ``prompt``, when the gate applies to it: it is
        on, and the prompt names the abstention (a prompt that does not is no grounded question)."""
        if self.abstain_min_p <= 0 or self.abstain_text not in prompt:
            return None
        both = self._tokens(prompt + self.abstain_text)
        return both[len(tokens)] if len(both) > len(tokens) and both[: len(tokens)] == tokens else None

    # ------------------------------------------------------------------ contexts

    def _free(self) -> list[_Slot]:
        return [s for s in self._slots if not s.busy]

    def _take(self, slot: _Slot) -> _Slot:
        slot.busy, slot.used = True, next(self._taken)
        return slot

    def _best(self, free: list[_Slot], tokens: list[int]) -> _Slot:
        return max(free, key=lambda s: (common_prefix(s.live_tokens(), tokens), -s.used))

    def _slot_for_answer(self, ticket: Ticket, tokens: list[int], cache_key: str | None, cancelled: Cancelled):
        """A free context for an answer, in order of arrival; None when cancelled while waiting.
        An answer whose own prefill is running waits for that context (the prefill stops for it)."""
        with self._slots_cond:
            self._queue.append(ticket)
            if cache_key:
                self._keys_waiting[cache_key] += 1
            try:
                while True:
                    free = self._free()
                    own_prefill = cache_key is not None and cache_key in self._prefilling
                    if free and self._queue[0] is ticket and not own_prefill:
                        return self._take(self._best(free, tokens))
                    if cancelled():
                        return None
                    self._slots_cond.wait(0.05)
            finally:
                self._queue.remove(ticket)
                if cache_key:
                    self._keys_waiting[cache_key] -= 1
                    if not self._keys_waiting[cache_key]:
                        del self._keys_waiting[cache_key]
                self._slots_cond.notify_all()

    def _slot_for_prefill(self, tokens: list[int], cache_key: str | None) -> _Slot | None:
        """A free context for speculation, or None: a prefill never queues behind answers."""
        with self._slots_cond:
            free = self._free()
            if not free or self._queue:
                return None
            if cache_key:
                self._prefilling[cache_key] += 1
            return self._take(self._best(free, tokens))

    def _release(self, slot: _Slot, prefill_key: str | None = None) -> None:
        with self._slots_cond:
            slot.busy = False
            if prefill_key:
                self._prefilling[prefill_key] -= 1
                if self._prefilling[prefill_key] <= 0:
                    del self._prefilling[prefill_key]
            self._slots_cond.notify_all()

    def _answer_wants(self, cache_key: str | None) -> bool:
        """Whether a prefill should give its context up: its own answer came, or answers wait
        with every context taken."""
        with self._slots_cond:
            own = cache_key is not None and cache_key in self._keys_waiting
            return own or (bool(self._queue) and not self._free())

    def _restore_if_longer(self, slot: _Slot, tokens: list[int], cache_key: str | None) -> bool:
        """Load the key's saved prefix when it shares more of ``tokens`` than the context does."""
        import llama_cpp

        saved = self.store.get(cache_key) if cache_key else None
        if saved is None or common_prefix(saved.tokens, tokens) <= common_prefix(slot.live_tokens(), tokens):
            return False
        llama, ctx = slot.llama, slot.llama._ctx
        ctx.kv_cache_seq_rm(-1, 0, -1)
        buffer = (ctypes.c_uint8 * len(saved.state)).from_buffer_copy(saved.state)
        if llama_cpp.llama_state_seq_set_data(ctx.ctx, buffer, len(saved.state), 0) != len(saved.state):
            llama.reset()  # nothing usable was restored: evaluate from scratch
            return False
        llama.input_ids[: len(saved.tokens)] = saved.tokens
        llama.n_tokens = len(saved.tokens)
        llama._requires_eval = True  # restored logits are not live: the next decode refreshes them
        return True

    def _save(self, slot: _Slot, cache_key: str) -> None:
        import llama_cpp

        ctx = slot.llama._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0)
        # string_at copies the bytes at once (slicing a ctypes array makes a list of ints first).
        self.store.put(cache_key, SavedPrefix(tuple(slot.live_tokens()), ctypes.string_at(buffer, written)))

    def _evaluate(self, slot: _Slot, tokens: list[int], ticket: Ticket, stop: Cancelled) -> int:
        """Evaluate what ``tokens`` adds to the context's common prefix, a chunk per scheduler
        step, until done or ``stop()``; the number of tokens evaluated."""
        llama = slot.llama
        start = common_prefix(slot.live_tokens(), tokens)
        if start < MIN_REUSED_TOKENS:
            # Keeping a BOS or a word saves nothing, and decoding after a removed tail is not
            # bit-identical to a fresh context (Gemma's sliding-window cache): start clean.
            start = 0
        llama.n_tokens = start
        llama._ctx.kv_cache_seq_rm(-1, start, -1)
        done = start
        while done < len(tokens) and not stop():
            with self.scheduler.step(ticket, stop) as granted:
                if not granted:
                    break
                chunk = tokens[done : done + self.prefill_chunk]
                llama.eval(chunk)
                done += len(chunk)
        return done - start

    # ------------------------------------------------------------------ requests

    def prefill(self, prompt: str, cancelled: Cancelled, cache_key: str | None = None) -> int:
        tokens = self._checked_tokens(prompt)
        slot = self._slot_for_prefill(tokens, cache_key)
        if slot is None:
            return 0
        try:
            self._restore_if_longer(slot, tokens, cache_key)
            ticket = Ticket(arrival=self.clock(), speculative=True)
            # What was evaluated stays in the context and, saved, for the key's answer.
            done = self._evaluate(slot, tokens, ticket, lambda: cancelled() or self._answer_wants(cache_key))
            with self._slots_cond:
                own_answer_waits = cache_key in self._keys_waiting
            # Saved for the key's answer, unless that answer is here already: it gets this very
            # context (the longest shared prefix) and should not wait for the copy.
            if cache_key and not own_answer_waits:
                self._save(slot, cache_key)
            return done
        finally:
            self._release(slot, cache_key)

    def stream(
        self,
        prompt: str,
        params: SamplingParams,
        cancelled: Cancelled,
        cache_key: str | None = None,
        pace_cps: float | None = None,
        generation: Generation | None = None,
    ) -> Iterator[str]:
        from llama_cpp import LogitsProcessorList, StoppingCriteriaList

        tokens = self._checked_tokens(prompt)
        prompt_tokens = len(tokens)
        generation = generation if generation is not None else Generation()
        generation.prompt_tokens = prompt_tokens
        max_tokens = min(params.max_tokens, self.n_ctx - prompt_tokens)
        eos = self._llama.token_eos()
        logit_bias = {eos: float("-inf")} if params.ignore_eos else None
        processors = LogitsProcessorList()
        if params.min_tokens > 0 and not params.ignore_eos:
            processors.append(eos_holder(eos, prompt_tokens, params.min_tokens))
        abstained: list[float] = []
        if (abstain_token := self._abstain_token(prompt, tokens)) is not None:
            processors.append(abstention_gate(abstain_token, self.abstain_min_p, prompt_tokens, abstained))
        ticket = Ticket(arrival=self.clock(), pace_cps=pace_cps or self.default_pace_cps)
        slot = self._slot_for_answer(ticket, tokens, cache_key, cancelled)
        if slot is None:
            return
        try:
            self._restore_if_longer(slot, tokens, cache_key)
            self.last_reused = common_prefix(slot.live_tokens(), tokens)
            # The prompt but its last token in chunks that take turns with other answers;
            # create_completion then evaluates the last one and samples.
            self._evaluate(slot, tokens[:-1], ticket, cancelled)
            if cancelled():
                return
            chunks: Any = slot.llama.create_completion(
                tokens,  # the token list: exactly what prefill evaluated for the same text
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
                logits_processor=processors or None,
                stopping_criteria=StoppingCriteriaList([token_counter(generation, prompt_tokens)]),
                stream=True,
            )
            try:
                finished = False
                while not finished:
                    texts: list[str] = []
                    with self.scheduler.step(ticket, cancelled) as granted:
                        if not granted:
                            return
                        # One token, or a few in a row while others wait without being due yet.
                        for _ in range(QUANTUM):
                            chunk = next(chunks, None)
                            if chunk is None or cancelled():
                                finished = True
                                break
                            if abstained:  # the first token was gated: the answer is the abstention
                                texts = [self.abstain_text]
                                ticket.wrote(self.abstain_text, self.clock())
                                generation.output_tokens = len(self._tokens(prompt + self.abstain_text)) - prompt_tokens
                                generation.finish_reason = "stop"
                                self.abstentions += 1
                                finished = True
                                break
                            if reason := chunk["choices"][0]["finish_reason"]:
                                generation.finish_reason = reason
                            if text := chunk["choices"][0]["text"]:
                                ticket.wrote(text, self.clock())
                                texts.append(text)
                            if not self.scheduler.batch_more():
                                break
                    if cancelled():
                        return
                    yield from texts  # outside the step: sending them does not hold up the others
            finally:
                chunks.close()
        finally:
            self._release(slot)

    def close(self) -> None:
        for slot in self._slots:
            slot.llama.close()


@dataclass(frozen=True)
class VllmSettings:
    """``engine_args`` go to ``AsyncEngineArgs(**engine_args)``, as in Triton's vLLM backend.

    Their ``model`` is an HF-format directory; or ``packaged_model`` names one that
    ``voicebot.hf_weights`` converted from a packaged GGUF, found in the cache when the engine
    starts (so that no profile holds one machine's path)."""

    engine_args: dict[str, Any] = field(default_factory=dict)
    packaged_model: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.engine_args, dict):
            raise TypeError(f"engine_args must be an object, got {self.engine_args!r}")
        if not isinstance(self.packaged_model, str):
            raise TypeError(f"packaged_model must be a model id (a string), got {self.packaged_model!r}")

    def resolved_engine_args(self) -> dict[str, Any]:
        args = dict(self.engine_args)
        if self.packaged_model:
            if "model" in args:
                raise ValueError("vllm: give engine_args.model or packaged_model, not both")
            from ..hf_weights import hf_model_dir

            args["model"] = str(hf_model_dir(self.packaged_model))
        if "model" not in args:
            raise ValueError("vllm engine_args must name a local 'model' directory (or the sidecar a packaged_model)")
        return args


def _is_request_error(exc: BaseException) -> bool:
    # vLLM (0.32) rejects a bad request (an empty or too long prompt) with VLLMClientError, which is
    # not a ValueError; matched by name so that this module needs no vLLM to import.
    return isinstance(exc, ValueError) or any(k.__name__ == "VLLMClientError" for k in type(exc).__mro__)


class VllmEngine:
    """vLLM's AsyncLLMEngine (``AsyncLLM`` in vLLM 0.32) on a private event loop thread, bridged to
    a sync iterator. Several requests stream at once: vLLM batches them in every step."""

    def __init__(self, settings: VllmSettings) -> None:
        import locale
        import os  # (imported here: this module's head belongs to the llama.cpp engine's rewrite)

        args = settings.resolved_engine_args()
        if locale.getpreferredencoding(False).lower().replace("-", "") != "utf8":
            # Triton's Python stub embeds an interpreter that never sets the C locale (nor honours
            # PYTHONUTF8), so open() reads ASCII and importing vLLM fails in torch's inductor
            # templates ("'ascii' codec can't decode byte 0xe2"). This stub runs only this model.
            locale.setlocale(locale.LC_CTYPE, "C.UTF-8")
        # Nothing may leave the machine: no hub look-ups, no usage report.
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "VLLM_NO_USAGE_STATS"):
            os.environ.setdefault(name, "1")
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-loop", daemon=True)
        self._thread.start()

        async def build() -> Any:
            # Built on the loop that will drive it: its output handler and sockets belong there.
            return AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**args))

        try:
            self._engine = asyncio.run_coroutine_threadsafe(build(), self._loop).result()
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            raise
        self._ids = itertools.count()
        self._tokenizer: Any = None

    def _run(self, value: Any) -> Any:
        """``value`` itself, or its result when it is a coroutine (vLLM's API moved between the two)."""
        import inspect

        if inspect.isawaitable(value):
            return asyncio.run_coroutine_threadsafe(value, self._loop).result()  # type: ignore[arg-type]
        return value

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is None:
            self._tokenizer = self._run(self._engine.get_tokenizer())
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

    def prefill(self, prompt: str, cancelled: Cancelled, cache_key: str | None = None) -> int:
        # vLLM's automatic prefix caching keeps the blocks of any prompt it has seen (keyed by
        # content, so cache_key is not needed): one generated token puts the prompt there.
        for _ in self.stream(prompt, SamplingParams(temperature=0.0, max_tokens=1), cancelled):
            pass
        return self.count_tokens(prompt)

    def stream(
        self,
        prompt: str,
        params: SamplingParams,
        cancelled: Cancelled,
        cache_key: str | None = None,
        pace_cps: float | None = None,  # vLLM batches every request each step: no pace needed
        generation: Generation | None = None,
    ) -> Iterator[str]:
        request_id = f"voicebot-{next(self._ids)}"
        generation = generation if generation is not None else Generation()
        # (text, prompt tokens, generated tokens, finish reason), from the engine's loop to this thread
        deltas: queue.Queue[tuple[str, int, int, str | None] | BaseException | None] = queue.Queue()

        async def produce() -> None:
            sent = 0
            try:
                async for out in self._engine.generate(prompt, self._sampling(params), request_id):
                    first = out.outputs[0]
                    text = first.text
                    prompt_tokens = len(out.prompt_token_ids or ())
                    reason = str(first.finish_reason) if first.finish_reason else None
                    if len(text) > sent or reason:
                        deltas.put((text[sent:], prompt_tokens, len(first.token_ids), reason))
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
                    if _is_request_error(item):
                        raise ValueError(str(item)) from item  # the client's fault: INVALID_ARG
                    raise RuntimeError(f"vLLM generation failed: {item!r}") from item
                text, generation.prompt_tokens, generation.output_tokens, reason = item
                generation.finish_reason = reason or generation.finish_reason
                if text:
                    yield text
        finally:
            if not finished:
                # The consumer stopped early (cancelled, or the caller closed the iterator).
                asyncio.run_coroutine_threadsafe(self._engine.abort(request_id), self._loop)
                producer.cancel()

    def close(self) -> None:
        shutdown = getattr(self._engine, "shutdown", None)
        if callable(shutdown):
            shutdown()  # stops vLLM's engine-core and worker processes
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


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
        values: dict[str, Any] = {key: sidecar[key] for key in ("engine_args", "packaged_model") if key in sidecar}
        return VllmEngine(to_dataclass(VllmSettings, values, "llm sidecar (vllm)"))
    raise ValueError(f"unknown llm engine {engine!r}; choose 'llama_cpp' or 'vllm'")
