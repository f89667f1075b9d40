"""Text to speech with Piper, one audio chunk per clause as soon as it is synthesized."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..text import split_clauses


@dataclass(frozen=True)
class PiperSettings:
    """Engine settings; the JSON sidecar next to ``tts`` maps onto this."""

    threads: int = 1
    min_length_scale: float = 0.5
    max_length_scale: float = 2.0


class PiperEngine:
    """A Piper voice on onnxruntime with a bounded thread count (it shares 2 cores with the LLM)."""

    def __init__(self, model_path: Path, config_path: Path, settings: PiperSettings) -> None:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = settings.threads
        options.inter_op_num_threads = 1
        config = PiperConfig.from_dict(json.loads(Path(config_path).read_text(encoding="utf-8")))
        session = onnxruntime.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._voice = PiperVoice(session=session, config=config)
        self.settings = settings
        self.sample_rate = int(config.sample_rate)
        self.num_speakers = int(config.num_speakers)

    def check(self, speaker: int | None, length_scale: float | None) -> None:
        if speaker is not None and not 0 <= speaker < max(self.num_speakers, 1):
            raise ValueError(f"speaker must be in [0, {max(self.num_speakers, 1) - 1}], got {speaker}")
        if length_scale is not None and not (
            self.settings.min_length_scale <= length_scale <= self.settings.max_length_scale
        ):
            raise ValueError(
                f"length_scale must be in [{self.settings.min_length_scale}, {self.settings.max_length_scale}]"
            )

    def synthesize(
        self, text: str, speaker: int | None = None, length_scale: float | None = None
    ) -> Iterator[np.ndarray]:
        """Yield int16 mono chunks at ``sample_rate``, one per clause (or sentence within it)."""
        from piper.config import SynthesisConfig

        self.check(speaker, length_scale)
        config = SynthesisConfig(speaker_id=speaker if self.num_speakers > 1 else None, length_scale=length_scale)
        for clause in split_clauses(text):
            for chunk in self._voice.synthesize(clause, config):
                samples = chunk.audio_int16_array
                if samples.size:
                    yield samples
