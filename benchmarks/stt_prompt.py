"""Speech recognition alone, with and without the library's titles as Whisper's prompt.

    .venv/bin/python benchmarks/stt_prompt.py [--models tiny.en,base] [--set eval,bench]

Each question is spoken by espeak-ng in the eval's voices (``eval_set.VOICES``; the bench set
also at en-us 130) and transcribed whole, in this process (no Triton), beam 5 as served. The
prompt is built from the titles of that set's own documents, parsed as the store parses them,
by the orchestrator's own :func:`orchestrator.services.library_prompt`. Prints WER per voice.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import wave
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402
import eval_set  # noqa: E402
import numpy as np  # noqa: E402
from eval import check_documents  # noqa: E402

from orchestrator.services import library_prompt  # noqa: E402
from rag_index.documents import parse_document  # noqa: E402
from voicebot.engines.stt import WhisperEngine, WhisperSettings  # noqa: E402
from voicebot.text import word_edits  # noqa: E402
from voicebot.weights import whisper_model_dir  # noqa: E402

Clip = tuple[str, str, np.ndarray]  # reference text, voice, 16 kHz float32


def _clip(text: str, folder: Path, name: str, voice: str, wpm: int) -> np.ndarray:
    path = corpus.speak(text, folder, name, voice, wpm)
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0


def question_sets(folder: Path, names: list[str]) -> dict[str, tuple[str, list[Clip]]]:
    """Each set's prompt and spoken clips."""
    sets: dict[str, tuple[str, list[Clip]]] = {}
    if "eval" in names:
        check_documents()
        titles = [parse_document(d.name, d.path.read_bytes()).title for d in eval_set.DOCUMENTS]
        clips = []
        for n, q in enumerate(eval_set.QUESTIONS):
            voice, wpm = eval_set.VOICES[n % len(eval_set.VOICES)]
            clips.append((q.text, f"{voice} {wpm}", _clip(q.text, folder, q.id, voice, wpm)))
        sets["eval"] = (library_prompt(titles), clips)
    if "bench" in names:
        titles = [parse_document(p.name, p.read_bytes()).title for p in corpus.check_documents()]
        clips = []
        for n, q in enumerate(corpus.QUESTIONS):
            for voice, wpm in [*eval_set.VOICES, ("en-us", 130)]:
                clips.append((q.text, f"{voice} {wpm}", _clip(q.text, folder, f"b{n}-{voice}-{wpm}", voice, wpm)))
        sets["bench"] = (library_prompt(titles), clips)
    return sets


def wer_by_voice(engine: WhisperEngine, clips: list[Clip], prompt: str | None) -> tuple[float, dict[str, float], float]:
    edits: dict[str, list[int]] = {}
    began = time.perf_counter()
    for text, voice, audio in clips:
        e, w = word_edits(text, engine.transcribe(audio, prompt=prompt).text)
        tally = edits.setdefault(voice, [0, 0])
        tally[0] += e
        tally[1] += w
    total = sum(e for e, _ in edits.values()) / sum(w for _, w in edits.values())
    per_clip = (time.perf_counter() - began) / len(clips)
    return total, {v: e / w for v, (e, w) in edits.items()}, per_clip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny.en", help="Whisper models (tiny.en, base)")
    parser.add_argument("--set", default="eval,bench", help="question sets: eval, bench")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        sets = question_sets(Path(tmp), args.set.split(","))
        print("| set | model | prompt | WER | per voice | seconds a clip |")
        print("|---|---|---|---|---|---|")
        for model in args.models.split(","):
            engine = WhisperEngine(whisper_model_dir(model), WhisperSettings(model=model))
            for name, (prompt, clips) in sets.items():
                for label, used in (("none", None), ("titles", prompt)):
                    total, per_voice, seconds = wer_by_voice(engine, clips, used)
                    voices = ", ".join(f"{v} {x:.3f}" for v, x in per_voice.items())
                    print(f"| {name} ({len(clips)}) | {model} | {label} | {total:.3f} | {voices} | {seconds:.2f} |")
        for name, (prompt, _) in sets.items():
            print(f"\n{name} prompt: {prompt}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
