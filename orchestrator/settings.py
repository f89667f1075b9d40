"""All orchestrator settings, from ``VOICEBOT_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag_index import default_index_dir
from voicebot.access import token_problem
from voicebot.text import MAX_HISTORY, MAX_QUESTION_CHARS

from .protocol import WS_MAX_MESSAGE_BYTES


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOICEBOT_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # Any gRPC target: host:port, dns:///name:port (every Triton behind a name, e.g. a headless
    # Service) or ipv4:a:port,b:port; answers are spread over them (voicebot/wire.py).
    triton_grpc_url: str = "127.0.0.1:8001"
    triton_http_url: str = "127.0.0.1:8000"
    index_dir: Path = Field(default_factory=default_index_dir)
    # Where the documents live when not in index_dir: a postgresql:// URL (pgvector), which every
    # replica of a cluster names (rag_index/pgstore.py), or another directory.
    store: str | None = None
    # On SIGTERM: how long running answers may take to finish before the rest is closed (drain.py).
    drain_timeout_s: float = Field(30.0, ge=0, le=600)
    # FAISS on GPU 0 when faiss-gpu (the gpu extra) and a GPU are there; the CPU otherwise.
    index_gpu: bool = False
    webapp_dir: Path = Path(__file__).resolve().parents[1] / "webapp" / "dist"
    api_token: str | None = None
    cors_origins: list[str] = Field(default_factory=list)
    # Host names (besides localhost and the bind address) this server answers to; "*" for any.
    allowed_hosts: list[str] = Field(default_factory=list)

    top_k: int = Field(3, ge=1, le=8)
    # Words of each passage the LLM sees (the sentences nearest the question); 0 keeps whole chunks.
    # Prompt tokens dominate time to first token on a CPU (benchmarks/results).
    passage_words: int = Field(60, ge=0, le=1000)
    # Of the top-k, leave out a chunk whose cosine similarity is more than this below the best
    # one's (0: keep all k): 7-19% fewer prompt words, the answer in context as often, typed and
    # heard (benchmarks/retrieval_sweep.py --margins 0,0.2 [--heard]).
    passage_margin: float = Field(0.2, ge=0, le=2)
    history_turns: int = Field(3, ge=0, le=MAX_HISTORY)  # voice_answer reads at most MAX_HISTORY
    partial_interval_s: float = Field(1.0, gt=0.1, le=10)
    # Work while the user speaks (orchestrator/speculation.py): retrieve on partial transcripts
    # of at least this many words and prefill the LLM with their passages; a partial as soon
    # as this much silence follows speech; and the final transcript taken from the last
    # partial when only silence came after it.
    speculate: bool = True
    speculate_min_words: int = Field(3, ge=1, le=50)
    # ... and, like the periodic partials, only while at most this many turns are being answered
    # (0: when no answer runs; the end-of-speech partial always runs).
    speculate_max_turns: int = Field(0, ge=0, le=1024)
    end_of_speech_s: float = Field(0.25, ge=0.1, le=3)
    reuse_partial: bool = True
    # The end-of-speech partial stops a running prefill (it resumes from what it evaluated).
    end_of_speech_stops_prefill: bool = True
    # A periodic partial stops a running prefill too instead of waiting for it: a prefill longer
    # than the question (cpu-quality's ~5 s) otherwise holds the passages of its first few words.
    partials_stop_prefill: bool = False
    language: str = "en"
    # Tell Whisper what the questions are about: the library's document titles as its prompt
    # (services.library_prompt). On accented espeak questions WER fell from 0.34 to 0.25.
    stt_prompt_titles: bool = True

    # Limits: every one configurable, every one bounded.
    max_audio_seconds: float = Field(60.0, gt=0, le=600)
    max_frame_bytes: int = Field(64 * 1024, ge=640, le=WS_MAX_MESSAGE_BYTES)
    max_upload_mb: float = Field(20.0, gt=0, le=1024)
    max_documents: int = Field(1000, ge=1)
    max_sessions: int = Field(16, ge=1, le=1024)
    max_queued_frames: int = Field(256, ge=8)
    max_text_chars: int = Field(2000, ge=10, le=MAX_QUESTION_CHARS)  # what the answer pipeline accepts
    max_connections: int = Field(128, ge=4, le=10_000)
    # Uploads: a document's words (chunks to embed) and the time and memory its parser may use.
    max_document_words: int = Field(500_000, ge=1000)
    parse_timeout_s: float = Field(60.0, gt=1, le=3600)
    parse_memory_mb: int = Field(1024, ge=256, le=65_536)
    # Slow clients: a request's headers, then its body, must arrive within these.
    header_timeout_s: float = Field(10.0, gt=0.5, le=300)
    body_timeout_s: float = Field(120.0, gt=1, le=3600)
    turn_timeout_s: float = Field(120.0, gt=1)
    # Admission (orchestrator/admission.py): turns that run at once; more wait in a queue of this
    # bound, told `busy`; past it a turn gets `overloaded`. The queue wait counts in turn_timeout_s.
    max_turns: int = Field(4, ge=1, le=1024)
    max_queued_turns: int = Field(8, ge=0, le=10_000)
    # A dead model process never answers, so every wait on Triton is bounded (`upstream_stalled`):
    # the first answer of a call may queue behind other sessions' work (at 8 sessions on 2 cores,
    # up to ~30 s for the LLM's first token); after that, pieces of a stream come back to back.
    first_response_timeout_s: float = Field(90.0, gt=0.5, le=600)
    stall_timeout_s: float = Field(30.0, gt=0.5, le=600)

    @field_validator("api_token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and value.strip() == "":
            return None
        # The token also guards Triton (voicebot/access.py), whose flags take it as text.
        if value is not None and (problem := token_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        if not value.isalpha() or len(value) > 3:
            raise ValueError("VOICEBOT_LANGUAGE must be an ISO code such as 'en'")
        return value.lower()

    @property
    def store_location(self) -> str | Path:
        return self.store or self.index_dir

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
