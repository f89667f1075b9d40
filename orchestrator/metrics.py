"""Prometheus metrics of the orchestrator (one registry per app, served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0)
STAGES = (
    "stt",
    "retrieval",
    "llm_first_token",
    "tts_first_audio",
    "first_audio",
    "total",
    "partial_stt",
    "prefill",
    "queue",
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "voicebot_stage_seconds",
            "Latency of each stage of a turn",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.turns = Counter(
            "voicebot_turns_total", "Turns by kind and outcome", ["kind", "outcome"], registry=self.registry
        )
        self.errors = Counter(
            "voicebot_errors_total", "Errors sent to clients, by code", ["code"], registry=self.registry
        )
        self.speculation = Counter(
            "voicebot_speculation_total",
            "Spoken turns by how much of the prompt a prefill during speech had ready (hit, partial, miss, none)",
            ["outcome"],
            registry=self.registry,
        )
        self.transcript_reused = Counter(
            "voicebot_transcript_reused_total",
            "Spoken turns whose final transcript was the last partial (only silence came after it)",
            registry=self.registry,
        )
        self.turns_running = Gauge("voicebot_turns_running", "Turns holding a slot", registry=self.registry)
        self.turn_queue = Gauge("voicebot_turn_queue_length", "Turns waiting for a slot", registry=self.registry)
        self.turns_queued = Counter(
            "voicebot_turns_queued_total", "Turns that waited for a slot (told busy)", registry=self.registry
        )
        self.turns_rejected = Counter(
            "voicebot_turns_rejected_total", "Turns refused as overloaded (queue full)", registry=self.registry
        )
        self.openai_requests = Counter(
            "voicebot_openai_requests_total",
            "OpenAI-compatible requests by endpoint and outcome",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.active_sessions = Gauge("voicebot_active_sessions", "Open voice sessions", registry=self.registry)
        self.index_documents = Gauge("voicebot_index_documents", "Documents in the index", registry=self.registry)
        self.index_chunks = Gauge("voicebot_index_chunks", "Chunks in the index", registry=self.registry)
        self.model_ready = Gauge(
            "voicebot_model_ready",
            "1 when Triton reports the model ready to this orchestrator, else 0 (unreachable counts as 0)",
            ["model"],
            registry=self.registry,
        )

    def set_model_readiness(self, states: dict[str, bool]) -> None:
        for model, ready in states.items():
            self.model_ready.labels(model).set(1 if ready else 0)

    def observe_timings(self, timings: dict[str, float]) -> None:
        for key, ms in timings.items():
            stage = key.removesuffix("_ms")
            if stage in STAGES:
                self.stage_seconds.labels(stage).observe(ms / 1000.0)
