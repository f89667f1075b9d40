"""Percentiles, targets and plots for the benchmark report (Markdown + PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

AVX512 = "avx512f"


def machine(cpuinfo: str | None = None) -> str:
    """The CPU a latency figure was measured on, e.g. "AMD EPYC (family 23 model 1), 2 cores, AVX2":
    the same command runs several times slower on some of these VMs than on others."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return "unknown CPU"
    first: dict[str, str] = {}
    cores = 0
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            cores += 1
        first.setdefault(key, value.strip())
    flags = set(first.get("flags", "").split())
    vector = "AVX-512" if AVX512 in flags else "AVX2" if "avx2" in flags else "no AVX2"
    name = first.get("model name", "unknown CPU")
    family = f"family {first.get('cpu family', '?')} model {first.get('model', '?')}"
    return f"{name} ({family}), {cores} core{'' if cores == 1 else 's'}, {vector}"


STAGES = [
    ("stt_ms", "speech to text"),
    ("retrieval_ms", "retrieval"),
    ("llm_first_token_ms", "LLM first token"),
    ("tts_first_audio_ms", "TTS first audio (from answer start)"),
    ("first_audio_ms", "first audio (server)"),
]


def pct(values: Sequence[float], q: float) -> float:
    vals = [v for v in values if v is not None and v >= 0]
    return float(np.percentile(vals, q)) if vals else float("nan")


def fmt_s(ms: float) -> str:
    return "—" if ms != ms else f"{ms / 1000:.2f} s"


def stage_values(rows: list[dict], key: str) -> list[float]:
    if key == "voice_to_first_audio_ms":
        return [r["voice_to_first_audio_s"] * 1000 for r in rows if r["ok"] and r["voice_to_first_audio_s"] >= 0]
    if key == "total_ms_client":
        return [r["total_s"] * 1000 for r in rows if r["ok"]]
    return [r["server"][key] for r in rows if r["ok"] and r["server"].get(key, -1) >= 0]


def latency_table(by_level: dict[int, list[dict]]) -> str:
    keys = [
        *STAGES,
        ("voice_to_first_audio_ms", "**voice → first audio** (client)"),
        ("total_ms_client", "total (client)"),
    ]
    lines = ["| stage | concurrency | P50 | P90 | P99 | n |", "|---|---|---|---|---|---|"]
    for key, label in keys:
        for level, rows in sorted(by_level.items()):
            vals = stage_values(rows, key)
            p50, p90, p99 = (fmt_s(pct(vals, q)) for q in (50, 90, 99))
            lines.append(f"| {label} | {level} | {p50} | {p90} | {p99} | {len(vals)} |")
    return "\n".join(lines)


def overhead_table(served: list[dict], floor: list[dict]) -> str:
    lines = ["| stage | floor P50 (in-process) | Triton P50 (c=1) | ratio |", "|---|---|---|---|"]
    for key, label in STAGES:
        f = pct([t.get(key, -1) for t in floor], 50)
        s = pct(stage_values(served, key), 50)
        ratio = s / f if f == f and f > 0 else float("nan")
        lines.append(f"| {label} | {fmt_s(f)} | {fmt_s(s)} | {'—' if ratio != ratio else f'{ratio:.2f}×'} |")
    return "\n".join(lines)


def targets_table(by_level: dict[int, list[dict]], floor: list[dict], decode_tok_s: float | None) -> str:
    c1 = by_level.get(1, [])
    v2fa = stage_values(c1, "voice_to_first_audio_ms")
    checks = []

    def row(name: str, figure: str, met: bool | None) -> None:
        verdict = "—" if met is None else ("met" if met else "**not met**")
        checks.append(f"| {name} | {figure} | {verdict} |")

    row("voice → first audio P50 ≤ 1.0 s (c=1)", fmt_s(pct(v2fa, 50)), pct(v2fa, 50) <= 1000)
    row("voice → first audio P99 ≤ 1.8 s (c=1)", fmt_s(pct(v2fa, 99)), pct(v2fa, 99) <= 1800)
    stt = pct(stage_values(c1, "stt_ms"), 50)
    row("STT ≤ 0.6 s for a 3–8 s question (P50)", fmt_s(stt), stt <= 600)
    ttft = pct(stage_values(c1, "llm_first_token_ms"), 50)
    row("LLM TTFT ≤ 0.3 s (P50)", fmt_s(ttft), ttft <= 300)
    if decode_tok_s is None:
        row("decode ≥ 55 tokens/s through Triton", "not measured in this run", None)
    else:
        row("decode ≥ 55 tokens/s through Triton", f"{decode_tok_s:.0f} tok/s", decode_tok_s >= 55)
    tts = pct(stage_values(c1, "tts_first_audio_ms"), 50) - ttft
    row("TTS first audio ≤ 0.25 s (first clause → audio, P50)", fmt_s(tts), None)
    ratios = []
    for key, _ in STAGES:
        f = pct([t.get(key, -1) for t in floor], 50)
        s = pct(stage_values(c1, key), 50)
        if f == f and f > 0 and s == s:
            ratios.append(s / f)
    worst = max(ratios) if ratios else float("nan")
    row("serving overhead ≤ 1.10× the floor (worst stage)", f"{worst:.2f}×", worst <= 1.10)
    errors8 = sum(1 for r in by_level.get(8, []) if not r["ok"])
    row(
        "8 concurrent sessions with zero errors",
        f"{errors8} errors of {len(by_level.get(8, []))} turns",
        errors8 == 0 if by_level.get(8) else None,
    )
    return "\n".join(["| target | measured | verdict |", "|---|---|---|", *checks])


def _verdict_row(checks: list[str], name: str, figure: str, met: bool | None) -> None:
    verdict = "—" if met is None else ("met" if met else "**not met**")
    checks.append(f"| {name} | {figure} | {verdict} |")


def many_voices(by_level: dict[int, list[dict]], walls: dict[int, float]) -> str:
    """Issue 15's targets (ratios to the single-session P50 of the same run) and, per level,
    playback underruns, busy answers and throughput."""
    p50 = {lvl: pct(stage_values(rows, "voice_to_first_audio_ms"), 50) for lvl, rows in by_level.items()}
    single = p50.get(1, float("nan"))
    checks: list[str] = []
    for level, bound in ((2, 1.4), (4, 2.0)):
        if level in p50 and single == single:
            ratio = p50[level] / single
            _verdict_row(
                checks, f"first audio P50 at {level} sessions ≤ {bound}× single", f"{ratio:.2f}×", ratio <= bound
            )
    if 4 in by_level and single == single:
        p90 = pct(stage_values(by_level[4], "voice_to_first_audio_ms"), 90)
        _verdict_row(checks, "first audio P90 at 4 sessions ≤ 3× single P50", f"{p90 / single:.2f}×", p90 <= 3 * single)
    low = [r for lvl, rows in by_level.items() if lvl <= 4 for r in rows if r["ok"]]
    if low:
        under = sum(r.get("underruns", 0) for r in low)
        _verdict_row(checks, "0 underruns at ≤ 4 sessions", f"{under} in {len(low)} answers", under == 0)
    if 8 in by_level:
        rows8 = by_level[8]
        errors = sum(1 for r in rows8 if not r["ok"])
        _verdict_row(checks, "0 errors at 8 sessions", f"{errors} of {len(rows8)} turns", errors == 0)
        told = [r["busy_s"] for r in rows8 if r.get("busy_s", -1) >= 0]
        late = sum(1 for s in told if s > 0.5)
        figure = f"{len(told)} turns waited; slowest `busy` {max(told):.2f} s" if told else "no turn waited"
        _verdict_row(checks, "`busy` within 0.5 s for every turn over capacity", figure, late == 0)
    lines = [
        "| sessions | turns | errors | underruns | gap (s) | told busy | turns/min |",
        "|---|---|---|---|---|---|---|",
    ]
    for level, rows in sorted(by_level.items()):
        ok = [r for r in rows if r["ok"]]
        per_min = len(ok) / walls[level] * 60 if walls.get(level) else float("nan")
        lines.append(
            f"| {level} | {len(rows)} | {len(rows) - len(ok)} | {sum(r.get('underruns', 0) for r in ok)} "
            f"| {sum(r.get('gap_s', 0.0) for r in ok):.2f} | {sum(1 for r in rows if r.get('busy_s', -1) >= 0)} "
            f"| {per_min:.1f} |"
        )
    return "\n".join(["| target | measured | verdict |", "|---|---|---|", *checks]) + "\n\n" + "\n".join(lines)


def plots(by_level: dict[int, list[dict]], folder: Path, stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in [*STAGES, ("voice_to_first_audio_ms", "voice → first audio")]:
        vals = sorted(stage_values(by_level.get(1, []), key))
        if vals:
            ax.step([v / 1000 for v in vals], np.arange(1, len(vals) + 1) / len(vals), where="post", label=label)
    _label(ax, "seconds", "fraction of turns", "Latency CDF per stage, concurrency 1", legend=7)
    out.append(_save(plt, fig, folder / f"{stem}-cdf.png"))

    levels = sorted(by_level)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    for key, label in [("voice_to_first_audio_ms", "voice → first audio"), ("total_ms_client", "total")]:
        a1.plot(levels, [pct(stage_values(by_level[c], key), 99) / 1000 for c in levels], marker="o", label=label)
    _label(a1, "concurrent sessions", "P99 seconds", "P99 vs concurrency", legend=8)
    throughput = []
    for c in levels:
        rows = [r for r in by_level[c] if r["ok"]]
        span = max((r["total_s"] for r in rows), default=0)
        throughput.append(len(rows) / max(sum(r["total_s"] for r in rows) / max(c, 1), span, 1e-9))
    a2.plot(levels, throughput, marker="o")
    _label(a2, "concurrent sessions", "answered turns / s (answer phase)", "Throughput vs concurrency")
    out.append(_save(plt, fig, folder / f"{stem}-concurrency.png"))
    return out


def _label(ax: Any, xlabel: str, ylabel: str, title: str, legend: int = 0) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend:
        ax.legend(fontsize=legend)
    ax.grid(alpha=0.3)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def speculation_summary(rows: list[dict]) -> str:
    """How often the prefill done during speech matched the final passages (done.speculation)."""
    seen = [r.get("speculation", "") for r in rows if r["ok"] and r.get("speculation")]
    if not seen:
        return "not reported (speculation off, or an older server)"
    counts = {o: seen.count(o) for o in ("hit", "partial", "miss", "none")}
    spoken = len(seen) - counts["none"]
    rate = counts["hit"] / spoken if spoken else float("nan")
    finished = sum(1 for r in rows if r["ok"] and r.get("speculation") == "hit" and r.get("prefill_finished"))
    return (
        ", ".join(f"{o} {n}" for o, n in counts.items())
        + f" — hit rate {rate:.0%} of {spoken} speculated turns; in {finished} of the hits the prefill had"
        " finished before the answer began"
    )


# Issue 14's targets per profile: voice → first audio P50 (and P99 where set), in ms.
FIRST_AUDIO_TARGETS = {"cpu": (1000, 1500), "cpu-quality": (1500, None)}


def speculation_targets(rows: list[dict], floor: list[dict], profile: str) -> str:
    """The latency targets of speculative retrieval and prefill, at concurrency 1."""
    v2fa = stage_values(rows, "voice_to_first_audio_ms")
    p50, p99 = pct(v2fa, 50), pct(v2fa, 99)
    lines = ["| target | measured | verdict |", "|---|---|---|"]

    def row(name: str, figure: str, met: bool | None) -> None:
        lines.append(f"| {name} | {figure} | {'—' if met is None else ('met' if met else '**not met**')} |")

    goal50, goal99 = FIRST_AUDIO_TARGETS.get(profile, (None, None))
    if goal50 is not None:
        row(f"voice → first audio P50 ≤ {goal50 / 1000:g} s ({profile})", fmt_s(p50), p50 <= goal50)
    if goal99 is not None:
        row(f"voice → first audio P99 ≤ {goal99 / 1000:g} s ({profile})", fmt_s(p99), p99 <= goal99)
    floor50 = pct([t.get("first_audio_ms", -1) for t in floor], 50)
    ratio = p50 / floor50 if floor50 == floor50 and floor50 > 0 else float("nan")
    row(
        "ratio to the serial in-process floor ≤ 0.6 (P50)",
        f"{ratio:.2f} ({fmt_s(p50)} / {fmt_s(floor50)})",
        ratio <= 0.6,
    )
    stt = pct(stage_values(rows, "stt_ms"), 50)
    row("STT after release P50 ≤ 0.2 s", fmt_s(stt), stt <= 200)
    return "\n".join(lines)


def timeline_plot(rows: list[dict], path: Path) -> Path | None:
    """What ran when in the turn of median voice → first audio (done.timeline), as bars."""
    turns = sorted((r for r in rows if r["ok"] and r.get("timeline")), key=lambda r: r["voice_to_first_audio_s"])
    if not turns:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    turn = turns[len(turns) // 2]
    order = ["partial_stt", "speculative_retrieval", "prefill", "stt", "retrieval", "first_audio"]
    stages = [s for s in order if any(sp["stage"] == s for sp in turn["timeline"])]
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(stages)))
    for n, stage in enumerate(stages):
        spans = [(sp["start_ms"] / 1000, (sp["end_ms"] - sp["start_ms"]) / 1000) for sp in turn["timeline"]]
        mine = [s for s, sp in zip(spans, turn["timeline"], strict=True) if sp["stage"] == stage]
        ax.broken_barh(mine, (n - 0.35, 0.7), color=f"C{n}")
    release = next((sp["start_ms"] / 1000 for sp in turn["timeline"] if sp["stage"] == "stt"), None)
    if release is not None:
        ax.axvline(release, color="black", linestyle="--", linewidth=1)
        ax.text(release, len(stages) - 0.4, " release", fontsize=8)
    ax.set_yticks(range(len(stages)), stages)
    ax.invert_yaxis()
    title = f"One turn (median first audio {turn['voice_to_first_audio_s']:.2f} s, {turn.get('speculation', '')})"
    _label(ax, "seconds from the start of the recording", "", title)
    return _save(plt, fig, path)


def previous_p50s(report_text: str) -> dict[str, float]:
    """Stage → P50 ms at concurrency 1, read from a committed benchmark report's latency table."""
    out = {}
    for line in report_text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[1] == "1" and cells[2].endswith(" s"):
            out[cells[0]] = float(cells[2][:-2]) * 1000
    return out


def regression_table(now: dict[int, list[dict]], before_text: str, before_name: str, noise: float = 0.15) -> str:
    """Each stage's P50 at concurrency 1 against the last committed report: what moved more than
    ``noise`` (unpaired runs on this machine differ by up to ~15%, docs/runtime-notes.md)."""
    before = previous_p50s(before_text)
    if not before:
        return f"no comparable table in {before_name}"
    lines = [f"Against `{before_name}`:", "", "| stage | before P50 | now P50 | change |", "|---|---|---|---|"]
    keys = [*STAGES, ("voice_to_first_audio_ms", "**voice → first audio** (client)")]
    for key, label in keys:
        now50 = pct(stage_values(now.get(1, []), key), 50)
        then = before.get(label, float("nan"))
        if then != then or now50 != now50:
            continue
        change = now50 / then - 1 if then > 0 else float("nan")
        moved = "" if abs(change) <= noise else (" **slower**" if change > 0 else " **faster**")
        lines.append(f"| {label} | {fmt_s(then)} | {fmt_s(now50)} | {change:+.0%}{moved} |")
    return "\n".join(lines)
