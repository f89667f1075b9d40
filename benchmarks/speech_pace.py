"""How fast the packaged Piper voice speaks, in characters per second of text.

    .venv/bin/python benchmarks/speech_pace.py

The ``llm`` scheduler (voicebot/engines/schedule.py) estimates how much speech a listener has
queued from the characters written; ``voicebot.contract.SPEECH_PACE_CPS`` is this figure, rounded.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402

from voicebot.engines.tts import PiperEngine, PiperSettings  # noqa: E402
from voicebot.weights import piper_voice  # noqa: E402

ANSWERS = [
    "The Lumen lamp charges in about three hours over USB-C.",
    "Guests use the network called Harbour, and the password is on the card at reception.",
    "I could not find that in your documents.",
    "Hold the button for five seconds until the light blinks twice, then release it.",
]


def main() -> int:
    piper = PiperEngine(*piper_voice(), PiperSettings())
    texts = ANSWERS + [q.text for q in corpus.QUESTIONS]
    chars = seconds = 0.0
    for text in texts:
        samples = sum(chunk.size for chunk in piper.synthesize(text))
        chars += len(text)
        seconds += samples / piper.sample_rate
    print(f"{len(texts)} texts, {chars:.0f} characters, {seconds:.1f} s of speech: {chars / seconds:.1f} characters/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
