"""Custom Triton metrics (``pb_utils.MetricFamily``), served on Triton's :8002 endpoint.

Buckets are fine enough for the latency SLOs (10 ms ... 5 s), unlike Triton's defaults.
"""

from __future__ import annotations

from typing import Any

import triton_python_backend_utils as pb_utils

from .triton_io import BACKEND_CALLS

LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0]
RTF_BUCKETS = [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0]


def _labels(args: dict[str, Any]) -> dict[str, str]:
    return {"model": str(args["model_name"]), "version": str(args["model_version"])}


class Metric:
    """One labelled metric; holds its family, which Triton needs alive as long as the metric."""

    def __init__(
        self, name: str, description: str, kind: Any, args: dict[str, Any], buckets: list[float] | None = None
    ):
        self._family = pb_utils.MetricFamily(name=name, description=description, kind=kind)
        if buckets is None:
            self._metric = self._family.Metric(labels=_labels(args))
        else:
            self._metric = self._family.Metric(labels=_labels(args), buckets=buckets)

    def observe(self, value: float) -> None:
        with BACKEND_CALLS:
            self._metric.observe(value)

    def increment(self, value: float) -> None:
        with BACKEND_CALLS:
            self._metric.increment(value)


def histogram(name: str, description: str, args: dict[str, Any], buckets: list[float]) -> Metric:
    return Metric(name, description, pb_utils.MetricFamily.HISTOGRAM, args, buckets)


def counter(name: str, description: str, args: dict[str, Any]) -> Metric:
    return Metric(name, description, pb_utils.MetricFamily.COUNTER, args)


class LabelledCounters:
    """One counter family with a metric per value of one extra label (``outcome="..."``)."""

    def __init__(self, name: str, description: str, args: dict[str, Any], label: str, values: list[str]):
        self._family = pb_utils.MetricFamily(name=name, description=description, kind=pb_utils.MetricFamily.COUNTER)
        self._metrics = {v: self._family.Metric(labels={**_labels(args), label: v}) for v in values}

    def increment(self, value: str) -> None:
        with BACKEND_CALLS:
            self._metrics[value].increment(1)


# Metric names, one place.
STT_RTF = "voicebot_stt_real_time_factor"
LLM_TTFT = "voicebot_llm_time_to_first_token_seconds"
LLM_OUTPUT_TOKENS = "voicebot_llm_output_tokens_total"
TTS_FIRST_AUDIO = "voicebot_tts_time_to_first_audio_seconds"
VOICE_FIRST_AUDIO = "voicebot_voice_answer_time_to_first_audio_seconds"
ANSWER_GROUNDING = "voicebot_answer_grounding_total"
