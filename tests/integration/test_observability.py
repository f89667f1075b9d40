"""Every metric the Grafana dashboard and the alert rules use exists on the live endpoints."""

import json
import re
import urllib.request
from pathlib import Path

import pytest
import yaml
from orchestrator_helpers import LiveServer, make_settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = {"up"}  # Prometheus's own
FUNCTIONS = {"sum", "rate", "by", "le", "histogram_quantile", "clamp_min", "stage", "code", "model", "outcome"}


def referenced_metrics() -> set[str]:
    exprs = [
        t["expr"]
        for p in json.loads((ROOT / "deploy/grafana/dashboards/voicebot.json").read_text())["panels"]
        for t in p["targets"]
    ]
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    names = set()
    for expr in exprs:
        expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
        expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
        names |= {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if "_" in w and w not in FUNCTIONS}
    return names - BUILTIN


def scrape(url: str, token: str | None = None) -> str:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read().decode()


def family(name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_dashboard_and_alerts_only_use_metrics_that_exist(triton, tmp_path):
    live = LiveServer(make_settings(triton, tmp_path / "index")).start()
    try:
        text = scrape(f"http://{triton.options.host}:{triton.options.metrics_port}/metrics")
        text += scrape(f"{live.base}/metrics")
    finally:
        live.stop()
    exposed = set(re.findall(r"^# TYPE (\S+)", text, re.MULTILINE))
    exposed |= {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    names = referenced_metrics()
    assert {"voicebot_stage_seconds_bucket", "nv_inference_queue_duration_us"} <= names  # the parser works
    missing = sorted(n for n in names if n not in exposed and family(n) not in exposed)
    assert not missing, f"referenced but not exported: {missing}"
