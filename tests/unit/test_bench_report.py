"""The benchmark report's arithmetic: percentiles, overhead ratios and target verdicts."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import report


def row(stt, ttft, v2fa, ok=True):
    server = {
        "stt_ms": stt,
        "retrieval_ms": 20,
        "llm_first_token_ms": ttft,
        "tts_first_audio_ms": ttft + 200,
        "first_audio_ms": stt + ttft + 220,
    }
    return {"ok": ok, "server": server, "voice_to_first_audio_s": v2fa, "total_s": v2fa + 1}


def test_stage_values_skip_failed_and_missing():
    rows = [row(400, 300, 0.9), row(500, 350, 1.1, ok=False), row(450, -1, -1)]
    assert report.stage_values(rows, "stt_ms") == [400, 450]
    assert report.stage_values(rows, "llm_first_token_ms") == [300]
    assert report.stage_values(rows, "voice_to_first_audio_ms") == [900]


def test_targets_and_overhead():
    by_level = {1: [row(400, 250, 0.8), row(500, 280, 0.9)], 8: [row(400, 250, 3.0)] * 8}
    floor = [
        {"stt_ms": 400, "retrieval_ms": 20, "llm_first_token_ms": 250, "tts_first_audio_ms": 450, "first_audio_ms": 670}
    ] * 2
    table = report.targets_table(by_level, floor, decode_tok_s=60)
    assert "| voice → first audio P50 ≤ 1.0 s (c=1) | 0.85 s | met |" in table
    assert "| decode ≥ 55 tokens/s through Triton | 60 tok/s | met |" in table
    assert "| 8 concurrent sessions with zero errors | 0 errors of 8 turns | met |" in table
    overhead = report.overhead_table(by_level[1], floor)
    assert "| speech to text | 0.40 s | 0.45 s | 1.12× |" in overhead


def test_speculation_targets_hit_rate_and_the_regression_check(tmp_path):
    rows = [row(100, 200, 0.8), row(150, 250, 0.9), row(300, 600, 1.6)]
    for r, outcome in zip(rows, ["hit", "hit", "miss"], strict=True):
        r["speculation"] = outcome
    floor = [{"first_audio_ms": 2000}] * 3
    table = report.speculation_targets(rows, floor, "cpu")
    assert "| voice → first audio P50 ≤ 1 s (cpu) | 0.90 s | met |" in table
    assert "| voice → first audio P99 ≤ 1.5 s (cpu) | 1.59 s | **not met** |" in table
    assert "| ratio to the serial in-process floor ≤ 0.6 (P50) | 0.45 (0.90 s / 2.00 s) | met |" in table
    assert "| STT after release P50 ≤ 0.2 s | 0.15 s | met |" in table
    rows[0]["prefill_finished"] = True
    assert report.speculation_summary(rows).endswith(
        "hit rate 67% of 3 speculated turns; in 1 of the hits the prefill had finished before the answer began"
    )
    before = report.latency_table({1: [row(400, 250, 1.8), row(400, 250, 1.8)]})
    moved = report.regression_table({1: rows}, before, "old.md")
    assert "| speech to text | 0.40 s | 0.15 s | -62% **faster** |" in moved
    assert "| retrieval | 0.02 s | 0.02 s | +0% |" in moved
    assert report.timeline_plot(rows, tmp_path / "t.png") is None  # no turn reported a timeline


def test_playback_counts_a_chunk_that_comes_after_the_audio_before_it_ran_out():
    from voice_e2e import Playback

    play = Playback()
    play.chunk(arrived=10.0, seconds=1.0)  # plays 10.0-11.0
    play.chunk(arrived=10.5, seconds=1.0)  # queued: 11.0-12.0
    assert play.underruns == 0
    play.chunk(arrived=12.3, seconds=0.5)  # 0.3 s of silence before it
    assert play.underruns == 1 and abs(play.gap_s - 0.3) < 1e-9
    play.chunk(arrived=12.4, seconds=0.5)
    assert play.underruns == 1 and abs(play.ends_at - 13.3) < 1e-9


def test_many_voices_ratios_underruns_and_busy():
    def turn(v2fa, underruns=0, busy_s=-1.0, ok=True):
        return {**row(0, 300, v2fa, ok=ok), "underruns": underruns, "gap_s": 0.1 * underruns, "busy_s": busy_s}

    by_level = {
        1: [turn(1.0), turn(1.0)],
        2: [turn(1.3), turn(1.5)],
        4: [turn(2.5, underruns=1)] * 4,
        8: [turn(2.0, busy_s=0.05)] * 4 + [turn(1.0)] * 3 + [turn(1.0, ok=False)],
    }
    text = report.many_voices(by_level, {1: 60.0, 2: 30.0, 4: 30.0, 8: 60.0})
    assert "| first audio P50 at 2 sessions ≤ 1.4× single | 1.40× | met |" in text
    assert "| first audio P50 at 4 sessions ≤ 2.0× single | 2.50× | **not met** |" in text
    assert "| 0 underruns at ≤ 4 sessions | 4 in 8 answers | **not met** |" in text
    assert "| 0 errors at 8 sessions | 1 of 8 turns | **not met** |" in text
    assert "4 turns waited; slowest `busy` 0.05 s | met |" in text
    assert "| 8 | 8 | 1 | 0 | 0.00 | 4 | 7.0 |" in text


def test_the_machine_line_names_the_cpu_and_its_vector_width():
    def cpuinfo(flags, cores=2):
        block = "model name\t: AMD EPYC\ncpu family\t: 23\nmodel\t\t: 1\nflags\t\t: " + flags + "\n"
        return "".join(f"processor\t: {n}\n{block}\n" for n in range(cores))

    assert report.machine(cpuinfo("fma avx avx2")) == "AMD EPYC (family 23 model 1), 2 cores, AVX2"
    assert report.machine(cpuinfo("avx2 avx512f", 4)).endswith("4 cores, AVX-512")
    assert report.machine(cpuinfo("sse4_2", 1)).endswith("1 core, no AVX2")
    assert report.machine("") == "unknown CPU (family ? model ?), 0 cores, no AVX2"
