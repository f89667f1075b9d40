"""The one place that names models, tensors, dtypes and wire events.

Triton models, the orchestrator, benchmarks and tests import these names; a renamed
tensor is one edit here (and the matching ``config.pbtxt``, which a test compares
against this module).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

# Audio formats that cross model boundaries.
STT_SAMPLE_RATE = 16_000
EMBEDDING_DIM = 384


@dataclass(frozen=True)
class Tensor:
    """One input or output of a Triton model: name, Triton dtype, dims, optional."""

    name: str
    dtype: str  # Triton wire dtype, as tritonclient spells it ("BYTES", "FP32", ...)
    dims: tuple[int, ...]
    optional: bool = False

    @property
    def config_dtype(self) -> str:
        """The spelling used in ``config.pbtxt`` (TYPE_STRING for BYTES)."""
        return "TYPE_STRING" if self.dtype == "BYTES" else f"TYPE_{self.dtype}"

    @property
    def numpy_dtype(self) -> Any:
        import numpy as np  # here, not at the top: the document parser's child process never needs it

        return {
            "BYTES": np.object_,
            "FP32": np.float32,
            "INT16": np.int16,
            "INT32": np.int32,
            "UINT32": np.uint32,
            "BOOL": np.bool_,
        }[self.dtype]

    def array(self, value: Any) -> np.ndarray:
        """``value`` as this tensor's array: a str/bytes/number/bool is one element, a list or
        tuple that many, an ndarray itself; text is UTF-8."""
        import numpy as np

        if isinstance(value, np.ndarray):
            return value.astype(self.numpy_dtype, copy=False) if self.dtype != "BYTES" else value
        items = list(value) if isinstance(value, list | tuple) else [value]
        if self.dtype == "BYTES":
            return np.array([v.encode("utf-8") if isinstance(v, str) else v for v in items], dtype=np.object_)
        return np.array(items, dtype=self.numpy_dtype)


@dataclass(frozen=True)
class ModelContract:
    """A model's name, tensors and whether it streams (decoupled).

    Tensor dims are ``config.pbtxt`` dims. Where ``max_batch_size`` > 0 the wire shape has
    one more leading dimension, the request's batch (1 from our clients): the dynamic
    batcher then hands concurrent requests to one ``execute``.
    """

    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    decoupled: bool = False
    platform: str = "python"
    max_batch_size: int = 0

    def input(self, name: str) -> Tensor:
        for tensor in self.inputs:
            if tensor.name == name:
                return tensor
        raise KeyError(f"{self.name} has no input {name!r} (inputs: {', '.join(t.name for t in self.inputs)})")

    def arrays(self, values: dict[str, Any]) -> dict[str, np.ndarray]:
        """Each named input as the array the wire carries (with the batch dimension where the
        model batches; the request is a batch of one)."""
        import numpy as np

        arrays = {}
        for name, value in values.items():
            array = self.input(name).array(value)
            arrays[name] = array[np.newaxis, ...] if self.max_batch_size > 0 else array
        return arrays

    def infer_inputs(self, client_module: Any, values: dict[str, Any]) -> list[Any]:
        """tritonclient ``InferInput`` objects for ``values`` (input name → value, see
        :meth:`Tensor.array`); ``client_module`` is ``tritonclient.grpc`` or ``tritonclient.http``
        (the contract itself needs neither)."""
        inputs = []
        for name, array in self.arrays(values).items():
            tensor = client_module.InferInput(name, list(array.shape), self.input(name).dtype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        return inputs

    def requested_outputs(self, client_module: Any, names: Sequence[str] | None = None) -> list[Any]:
        """``InferRequestedOutput`` for ``names`` (default: every output)."""
        known = {t.name for t in self.outputs}
        wanted = list(names) if names is not None else [t.name for t in self.outputs]
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise KeyError(f"{self.name} has no output {unknown[0]!r}")
        return [client_module.InferRequestedOutput(n) for n in wanted]


# Tensor names, used as constants by code on both sides of the wire.
AUDIO_BYTES = "audio_bytes"
AUDIO = "audio"
LANGUAGE = "language"
# What the audio is about, as Whisper's initial prompt (OpenAI's transcription `prompt`): the
# orchestrator sends the titles of the library's documents, so names and terms in them are heard.
PROMPT = "prompt"
MAX_STT_PROMPT_CHARS = 1000
TRANSCRIPT = "transcript"
SEGMENTS = "segments"
TEXT_INPUT = "text_input"
STREAM = "stream"
SAMPLING_PARAMETERS = "sampling_parameters"
EXCLUDE_INPUT_IN_OUTPUT = "exclude_input_in_output"
TEXT_OUTPUT = "text_output"
# vllm_backend's additional outputs (docs/additional_outputs.md there): off unless a request's
# return_* input is true, then set on every response. finish_reason is "None" until the last
# one ("stop" or "length"); num_output_tokens counts the tokens of that response's text.
RETURN_FINISH_REASON = "return_finish_reason"
RETURN_NUM_INPUT_TOKENS = "return_num_input_tokens"
RETURN_NUM_OUTPUT_TOKENS = "return_num_output_tokens"
FINISH_REASON = "finish_reason"
NUM_INPUT_TOKENS = "num_input_tokens"
NUM_OUTPUT_TOKENS = "num_output_tokens"
UNFINISHED = "None"  # vLLM's str(None): the finish_reason of a response that is not the last
TEXT = "text"
SPEAKER = "speaker"
LENGTH_SCALE = "length_scale"
SAMPLE_RATE = "sample_rate"
EMBEDDING = "embedding"
QUESTION = "question"
PASSAGES = "passages"
HISTORY = "history"
SPEAK = "speak"
CACHE_KEY = "cache_key"
PREFILL = "prefill"

# Request parameters of ``llm`` (Triton's per-request ``parameters``, beside the tensors, so its
# tensors stay vllm_backend's): whose prompt this is (a session keeps its prefilled prefix in the
# engine), evaluate-only (speculative prefill: no text comes back), and how fast the answer is
# consumed, in characters per second (the engine serves first whoever will run out first).
LLM_CACHE_KEY = "cache_key"
LLM_PREFILL_ONLY = "prefill_only"
LLM_PACE_CPS = "pace_cps"
MAX_CACHE_KEY_CHARS = 128
MAX_PACE_CPS = 10000.0
SPEECH_PACE_CPS = 17.0  # the packaged Piper voice: 17.4 characters per second (benchmarks/speech_pace.py)
READING_PACE_CPS = 20.0  # a reader: about 240 words a minute

AUDIO_DECODE = ModelContract(
    name="audio_decode",
    inputs=(Tensor(AUDIO_BYTES, "BYTES", (1,)),),
    outputs=(Tensor(AUDIO, "FP32", (-1,)),),
)
WHISPER_STT = ModelContract(
    name="whisper_stt",
    inputs=(
        Tensor(AUDIO, "FP32", (-1,)),
        Tensor(LANGUAGE, "BYTES", (1,), optional=True),
        Tensor(PROMPT, "BYTES", (1,), optional=True),
    ),
    outputs=(Tensor(TRANSCRIPT, "BYTES", (1,)), Tensor(SEGMENTS, "BYTES", (1,))),
)
TRANSCRIBE = ModelContract(
    name="transcribe",
    inputs=(Tensor(AUDIO_BYTES, "BYTES", (1,)), Tensor(PROMPT, "BYTES", (1,), optional=True)),
    outputs=(Tensor(TRANSCRIPT, "BYTES", (1,)), Tensor(SEGMENTS, "BYTES", (1,))),
    platform="ensemble",
)
# Identical to Triton's vLLM backend, so clients written for it work unchanged.
LLM = ModelContract(
    name="llm",
    inputs=(
        Tensor(TEXT_INPUT, "BYTES", (1,)),
        Tensor(STREAM, "BOOL", (1,), optional=True),
        Tensor(SAMPLING_PARAMETERS, "BYTES", (1,), optional=True),
        Tensor(EXCLUDE_INPUT_IN_OUTPUT, "BOOL", (1,), optional=True),
        Tensor(RETURN_FINISH_REASON, "BOOL", (1,), optional=True),
        Tensor(RETURN_NUM_INPUT_TOKENS, "BOOL", (1,), optional=True),
        Tensor(RETURN_NUM_OUTPUT_TOKENS, "BOOL", (1,), optional=True),
    ),
    outputs=(
        Tensor(TEXT_OUTPUT, "BYTES", (-1,)),
        Tensor(FINISH_REASON, "BYTES", (-1,)),
        Tensor(NUM_INPUT_TOKENS, "UINT32", (1,)),
        Tensor(NUM_OUTPUT_TOKENS, "UINT32", (-1,)),
    ),
    decoupled=True,
)
TTS = ModelContract(
    name="tts",
    inputs=(
        Tensor(TEXT, "BYTES", (1,)),
        Tensor(SPEAKER, "INT32", (1,), optional=True),
        Tensor(LENGTH_SCALE, "FP32", (1,), optional=True),
    ),
    outputs=(Tensor(AUDIO, "INT16", (-1,)), Tensor(SAMPLE_RATE, "INT32", (1,))),
    decoupled=True,
)
EMBEDDER = ModelContract(
    name="embedder",
    inputs=(Tensor(TEXT, "BYTES", (-1,)),),  # wire shape [1, N]
    outputs=(Tensor(EMBEDDING, "FP32", (-1, EMBEDDING_DIM)),),  # wire shape [1, N, 384]
    max_batch_size=16,
)
VOICE_ANSWER = ModelContract(
    name="voice_answer",
    inputs=(
        Tensor(QUESTION, "BYTES", (1,)),
        Tensor(PASSAGES, "BYTES", (1,)),
        Tensor(SAMPLING_PARAMETERS, "BYTES", (1,), optional=True),
        # JSON list of earlier questions in the session, oldest first (follow-ups).
        Tensor(HISTORY, "BYTES", (1,), optional=True),
        # False: text only, no speech (typed turns); the same prompt and pipeline either way.
        Tensor(SPEAK, "BOOL", (1,), optional=True),
        # The session: its speculative prefill is kept for its answer (see voicebot/pipeline.py).
        Tensor(CACHE_KEY, "BYTES", (1,), optional=True),
        # True: only prefill the prompt up to the question (passages, history); no output.
        Tensor(PREFILL, "BOOL", (1,), optional=True),
    ),
    outputs=(
        Tensor(TEXT_OUTPUT, "BYTES", (-1,)),
        Tensor(AUDIO, "INT16", (-1,)),
        Tensor(SAMPLE_RATE, "INT32", (1,)),
        # Asked for (as requested outputs), they come in one response of their own after the
        # answer's text: the llm's counts for the answer and why it ended ("stop" also when the
        # grounding check ended it).
        Tensor(FINISH_REASON, "BYTES", (1,)),
        Tensor(NUM_INPUT_TOKENS, "UINT32", (1,)),
        Tensor(NUM_OUTPUT_TOKENS, "UINT32", (1,)),
    ),
    decoupled=True,
)

MODELS: tuple[ModelContract, ...] = (
    AUDIO_DECODE,
    WHISPER_STT,
    TRANSCRIBE,
    LLM,
    TTS,
    EMBEDDER,
    VOICE_ANSWER,
)
MODEL_NAMES: tuple[str, ...] = tuple(m.name for m in MODELS)
MODELS_BY_NAME: dict[str, ModelContract] = {m.name: m for m in MODELS}


class EventType(StrEnum):
    """WebSocket / SSE event types of ``/v1/voice`` and ``/v1/chat``."""

    # client -> server
    START = "start"
    STOP = "stop"
    CANCEL = "cancel"
    TEXT = "text"
    # server -> client
    TRANSCRIPT = "transcript"
    CITATIONS = "citations"
    TOKEN = "token"
    AUDIO = "audio"
    DONE = "done"
    CANCELLED = "cancelled"
    BUSY = "busy"  # the turn waits for capacity: its place in the queue and an estimate
    ERROR = "error"


class ErrorCode(StrEnum):
    """Every ``code`` a client can see: WebSocket/SSE ``error`` events and REST error bodies.

    The alert rules, the metrics' ``code`` label and the README's table use these values;
    a test checks that they agree.
    """

    # The client's own input (never counted against the service's error budget)
    BAD_JSON = "bad_json"  # not JSON
    BAD_EVENT = "bad_event"  # JSON of the wrong shape: missing or unknown fields, wrong types
    UNKNOWN_EVENT = "unknown_event"
    TOO_LARGE = "too_large"  # a body, frame or document over its limit
    TOO_DEEP = "too_deep"  # JSON or markup nested past its limit
    TOO_SLOW = "too_slow"  # a request body that did not arrive within its deadline
    BAD_NUMBER = "bad_number"  # a number literal past any sane magnitude (a 5,000-digit integer)
    BAD_TEXT = "bad_text"  # not valid UTF-8 text: lone surrogates, control characters
    EMPTY_TEXT = "empty_text"
    TEXT_TOO_LONG = "text_too_long"
    BAD_ENCODING = "bad_encoding"
    BAD_SAMPLE_RATE = "bad_sample_rate"
    BAD_FRAME = "bad_frame"
    FRAME_TOO_LARGE = "frame_too_large"
    EVENT_TOO_LARGE = "event_too_large"
    TOO_MANY_QUEUED_FRAMES = "too_many_queued_frames"
    NO_RECORDING = "no_recording"
    EMPTY_AUDIO = "empty_audio"
    AUDIO_TOO_LONG = "audio_too_long"
    NO_SPEECH = "no_speech"
    INVALID_INPUT = "invalid_input"  # a model refused the input (Triton INVALID_ARG)
    BAD_REQUEST = "bad_request"  # a REST request of the wrong shape
    UNSUPPORTED_DOCUMENT = "unsupported_document"
    DOCUMENT_TOO_COMPLEX = "document_too_complex"  # parsing ran out of its time, or crashed on the file
    INDEX_FULL = "index_full"
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    CROSS_ORIGIN = "cross_origin"
    BAD_HOST = "bad_host"
    TOO_MANY_SESSIONS = "too_many_sessions"
    # The service's fault or state
    NO_ANSWER = "no_answer"  # the model produced no text for the question
    OVERLOADED = "overloaded"  # every turn slot and queue place taken: retry after retry_after_s
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    UPSTREAM_STALLED = "upstream_stalled"
    TURN_TIMEOUT = "turn_timeout"
    INTERNAL = "internal"


# Codes that mean the service failed the client (alerts fire on their rate); every other
# code is the client's own input or a normal outcome.
SERVER_ERROR_CODES: tuple[ErrorCode, ...] = (
    ErrorCode.INTERNAL,
    ErrorCode.UPSTREAM_UNAVAILABLE,
    ErrorCode.UPSTREAM_STALLED,
    ErrorCode.TURN_TIMEOUT,
)
