"""Encode PCM into real container formats with PyAV (FFmpeg), as browsers and users send them."""

from __future__ import annotations

import io

import av
import numpy as np

# container format -> (codec, sample format, rate)
FORMATS = {
    "wav": ("pcm_s16le", "s16", 16000),
    "flac": ("flac", "s16", 16000),
    "ogg": ("libopus", "flt", 48000),
    "webm": ("libopus", "flt", 48000),
    "mp3": ("libmp3lame", "fltp", 44100),
}


def encode(pcm: np.ndarray, rate: int, fmt: str) -> bytes:
    """Encode mono float32 PCM at ``rate`` into a file of format ``fmt``."""
    codec, sample_fmt, out_rate = FORMATS[fmt]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=out_rate, layout="mono")
        resampler = av.AudioResampler(format=sample_fmt, layout="mono", rate=out_rate)
        frame_size = 960
        samples = (np.clip(pcm, -1, 1) * 32767).astype(np.int16)
        for start in range(0, samples.size, frame_size):
            chunk = samples[start : start + frame_size].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
            frame.sample_rate = rate
            for resampled in resampler.resample(frame):
                for packet in stream.encode(resampled):
                    container.mux(packet)
        for resampled in resampler.resample(None):
            for packet in stream.encode(resampled):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def tone(seconds: float, rate: int = 16000, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
