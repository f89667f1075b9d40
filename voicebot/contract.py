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
