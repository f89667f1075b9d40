"""The one place that names models, tensors, dtypes and wire events.

Triton models, the orchestrator, benchmarks and tests import these names; a renamed
tensor is one edit here (and the matching ``config.pbtxt``, which a test compares
against this module).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

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
        return next(t for t in self.inputs if t.name == name)

    def output(self, name: str) -> Tensor:
        return next(t for t in self.outputs if t.name == name)


# Tensor names, used as constants by code on both sides of the wire.
AUDIO_BYTES = "audio_bytes"
AUDIO = "audio"
LANGUAGE = "language"
TRANSCRIPT = "transcript"
SEGMENTS = "segments"
TEXT_INPUT = "text_input"
STREAM = "stream"
SAMPLING_PARAMETERS = "sampling_parameters"
EXCLUDE_INPUT_IN_OUTPUT = "exclude_input_in_output"
TEXT_OUTPUT = "text_output"
TEXT = "text"
SPEAKER = "speaker"
LENGTH_SCALE = "length_scale"
SAMPLE_RATE = "sample_rate"
EMBEDDING = "embedding"
QUESTION = "question"
PASSAGES = "passages"
HISTORY = "history"

AUDIO_DECODE = ModelContract(
    name="audio_decode",
    inputs=(Tensor(AUDIO_BYTES, "BYTES", (1,)),),
    outputs=(Tensor(AUDIO, "FP32", (-1,)),),
)
WHISPER_STT = ModelContract(
    name="whisper_stt",
    inputs=(Tensor(AUDIO, "FP32", (-1,)), Tensor(LANGUAGE, "BYTES", (1,), optional=True)),
    outputs=(Tensor(TRANSCRIPT, "BYTES", (1,)), Tensor(SEGMENTS, "BYTES", (1,))),
)
TRANSCRIBE = ModelContract(
    name="transcribe",
    inputs=(Tensor(AUDIO_BYTES, "BYTES", (1,)),),
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
    ),
    outputs=(Tensor(TEXT_OUTPUT, "BYTES", (-1,)),),
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
    ),
    outputs=(
        Tensor(TEXT_OUTPUT, "BYTES", (-1,)),
        Tensor(AUDIO, "INT16", (-1,)),
        Tensor(SAMPLE_RATE, "INT32", (1,)),
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
    DOCUMENT_TOO_COMPLEX = "document_too_complex"  # parsing ran out of its time or memory
    INDEX_FULL = "index_full"
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    CROSS_ORIGIN = "cross_origin"
    BAD_HOST = "bad_host"
    TOO_MANY_SESSIONS = "too_many_sessions"
    # The service's fault or state
    NO_ANSWER = "no_answer"  # the model produced no text for the question
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
