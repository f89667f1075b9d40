"""The floor: the same models and settings called in one Python process, no Triton, no network.

Same questions, same audio, same sidecar settings as the served models, so the report
can give the serving overhead of each stage as a ratio.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voicebot import contract as c
from voicebot.engines.llm import LlamaCppEngine, LlamaCppSettings
from voicebot.engines.stt import WhisperEngine, WhisperSettings
from voicebot.engines.tts import PiperEngine, PiperSettings
from voicebot.llms import prompt_format_of
from voicebot.serving.config import read_sidecar, to_dataclass
from voicebot.serving.repository import MODEL_REPOSITORY, load_profile, merge_sidecar
from voicebot.text import FIRST_CLAUSE_WORDS, PROMPT_FORMATS, ClauseSplitter, Passage, trim_passage
from voicebot.weights import llm_gguf, piper_voice, whisper_model_dir


@dataclass
class FloorTurn:
    question: str
    timings: dict[str, float] = field(default_factory=dict)  # ms, same keys as the done event


def _sidecar(model: str, profile: str) -> dict:
    """The model's settings as the profile deploys them (its sidecar over the repository's)."""
    deploy = load_profile(profile).get(model)
    return merge_sidecar(read_sidecar(MODEL_REPOSITORY / model / "1"), deploy.sidecar if deploy else {})


def run_floor(
    clips: list[tuple[str, bytes]],
    index_dir: Path,
    documents: list[Path],
    top_k: int = 3,
    passage_words: int = 60,
    profile: str = "cpu",
) -> list[FloorTurn]:
    from rag_index import DocumentIndex
    from rag_index.embedders import LocalEmbedder

    whisper_cfg = to_dataclass(WhisperSettings, _sidecar(c.WHISPER_STT.name, profile), c.WHISPER_STT.name)
    whisper = WhisperEngine(whisper_model_dir(whisper_cfg.model), whisper_cfg)
    llm_sidecar = _sidecar(c.LLM.name, profile)
    llm_cfg = LlamaCppSettings(**{**llm_sidecar.get("llama_cpp", {}), "parallel": 1})  # serial: one context
    llm = LlamaCppEngine(Path(llm_cfg.model_path) if llm_cfg.model_path else llm_gguf(llm_cfg.model), llm_cfg)
    prompt_format = PROMPT_FORMATS[prompt_format_of(llm_sidecar)]
    piper = PiperEngine(*piper_voice(), to_dataclass(PiperSettings, _sidecar(c.TTS.name, profile), c.TTS.name))
    index = DocumentIndex(index_dir, LocalEmbedder(threads=1))
    for doc in documents:
        index.add(doc.name, doc.read_bytes())

    turns = []
    for question, audio in clips:
        t: dict[str, float] = {}
        began = time.perf_counter()
        samples = np.frombuffer(audio, dtype="<i2").astype(np.float32) / 32768.0
        text = whisper.transcribe(samples).text
        t["stt_ms"] = (time.perf_counter() - began) * 1000
        t0 = time.perf_counter()
        hits = index.search(text or question, top_k)
        t["retrieval_ms"] = (time.perf_counter() - t0) * 1000
        asked = text or question
        passages = [Passage(h.title, trim_passage(asked, h.text, passage_words)) for h in hits]
        prompt = prompt_format.render(asked, passages, [])
        t_answer = time.perf_counter()
        splitter = ClauseSplitter(first_max_words=FIRST_CLAUSE_WORDS)
        first_clause = None
        for delta in llm.stream(prompt, prompt_format.defaults, lambda: False):
            t.setdefault("llm_first_token_ms", (time.perf_counter() - t_answer) * 1000)
            done = splitter.feed(delta)
            if done and first_clause is None:
                first_clause = done[0]
                break  # what follows overlaps with speech; the floor stops at first audio
        if first_clause is None:
            rest = splitter.flush()
            first_clause = rest[0] if rest else ""
        if first_clause:
            next(iter(piper.synthesize(first_clause)))
            t["tts_first_audio_ms"] = (time.perf_counter() - t_answer) * 1000
            t["first_audio_ms"] = (time.perf_counter() - began) * 1000
        turns.append(FloorTurn(question, t))
    llm.close()
    index.close()
    return turns
