import numpy as np
import pytest
from audio_files import FORMATS, encode, tone

from voicebot import contract as c
from voicebot.engines.audio import AudioError, decode_audio_bytes, validate_pcm


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_container_decodes_to_16k_mono(fmt):
    data = encode(tone(1.0, 16000), 16000, fmt)
    audio = decode_audio_bytes(data, max_seconds=60)
    assert audio.dtype == np.float32
    assert 0.9 * 16000 <= audio.size <= 1.15 * 16000  # codecs pad a little
    assert np.abs(audio).max() <= 1.0
    assert np.abs(audio).max() > 0.2  # the tone survived, not silence


def test_decoding_stops_at_the_limit():
    data = encode(tone(3.0), 16000, "wav")
    with pytest.raises(AudioError, match="longer than the 2 s limit"):
        decode_audio_bytes(data, max_seconds=2)


@pytest.mark.parametrize("data", [b"", b"\x00" * 10, np.random.default_rng(0).bytes(5000), b"RIFF\x00\x00garbage"])
def test_garbage_is_a_clear_error(data):
    with pytest.raises(AudioError):
        decode_audio_bytes(data, max_seconds=60)


def test_validate_pcm():
    good = tone(0.5)
    assert validate_pcm(good, 60) is not None
    assert validate_pcm(good.reshape(1, -1), 60).ndim == 1
    overshoot = np.array([0.5, 1.04, -1.02], np.float32)  # resampler ringing: clipped, not refused
    assert np.abs(validate_pcm(overshoot, 60)).max() == 1.0
    for bad, message in [
        (np.zeros(0, np.float32), "empty"),
        (np.array([0.1, np.nan], np.float32), "NaN"),
        (np.array([0.1, np.inf], np.float32), "NaN or infinite"),
        (np.full(10, 3000.0, np.float32), "in \\[-1, 1\\]"),
        (np.zeros(16000 * 3, np.float32), "over the 2 s limit"),
        (np.zeros((4, 4), np.float32), "one-dimensional"),
        (np.zeros(10, np.float64), f"must be {c.WHISPER_STT.input(c.AUDIO).dtype}"),
    ]:
        with pytest.raises(AudioError, match=message):
            validate_pcm(bad, 2)
