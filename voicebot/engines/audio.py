"""Decode encoded audio to 16 kHz mono float32 and validate PCM before STT."""

from __future__ import annotations

import io

import numpy as np

from ..contract import STT_SAMPLE_RATE

# Peaks up to this are clipped; beyond it the caller almost surely sent int16-scale floats.
PEAK_TOLERANCE = 1.5


class AudioError(ValueError):
    """Audio that cannot be used; the message is safe to return to a client."""


def decode_audio_bytes(data: bytes, max_seconds: float, sample_rate: int = STT_SAMPLE_RATE) -> np.ndarray:
    """Decode a wav/flac/ogg/webm/mp3 file to mono float32 in [-1, 1] at ``sample_rate``.

    Decoding stops as soon as the audio passes ``max_seconds``, so a long upload costs
    no more than the limit.
    """
    import av  # PyAV, a faster-whisper dependency; its wheel bundles FFmpeg

    if not data:
        raise AudioError("audio_bytes is empty")
    limit = int(max_seconds * sample_rate)
    chunks: list[np.ndarray] = []
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError("no audio stream found in audio_bytes")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    pcm = out.to_ndarray().reshape(-1)
                    chunks.append(pcm)
                    total += pcm.size
                if total > limit:
                    raise AudioError(f"audio is longer than the {max_seconds:g} s limit")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        raise AudioError(f"audio_bytes is not a decodable audio file ({type(exc).__name__})") from None
    if not chunks:
        raise AudioError("audio_bytes holds no audio samples")
    samples = np.concatenate(chunks).astype(np.float32) / 32768.0
    if samples.size == 0:
        raise AudioError("audio_bytes holds no audio samples")
    if samples.size > limit:
        raise AudioError(f"audio is longer than the {max_seconds:g} s limit")
    return samples


def validate_pcm(audio: np.ndarray, max_seconds: float, sample_rate: int = STT_SAMPLE_RATE) -> np.ndarray:
    """Check float PCM for STT: 1-D, non-empty, finite, in [-1, 1], within the limit."""
    samples = np.asarray(audio)
    if samples.dtype != np.float32:
        raise AudioError(f"audio must be FP32, got {samples.dtype}")
    samples = samples.reshape(-1) if samples.ndim == 2 and 1 in samples.shape else samples
    if samples.ndim != 1:
        raise AudioError(f"audio must be one-dimensional, got shape {list(audio.shape)}")
    if samples.size == 0:
        raise AudioError("audio is empty")
    if samples.size > max_seconds * sample_rate:
        raise AudioError(f"audio is {samples.size / sample_rate:.1f} s, over the {max_seconds:g} s limit")
    if not np.isfinite(samples).all():
        raise AudioError("audio contains NaN or infinite samples")
    peak = float(np.abs(samples).max())
    if peak > PEAK_TOLERANCE:
        raise AudioError(f"audio samples must lie in [-1, 1] (peak {peak:.3g}); scale int16 PCM by 1/32768")
    # Resampling overshoots full scale a little; that is clipping, not a wrong scale.
    return np.clip(samples, -1.0, 1.0) if peak > 1.0 else samples
