"""Every metric the Grafana dashboard and the alert rules use exists on the live endpoints, and a
real Prometheus with the shipped config scrapes the live stack."""

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from orchestrator_helpers import LiveServer, VoiceClient, free_port, make_settings

from voicebot import contract as c
from voicebot.contract import MODEL_NAMES

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


def prometheus_api(base: str, path: str, **params: str) -> dict:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{base}/api/v1/{path}{'?' + query if query else ''}", timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]


def test_a_real_prometheus_scrapes_the_stack(triton, tmp_path):
    """The shipped Prometheus config (jobs, bearer auth, alert rules), pointed at the live stack."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("prometheus is not installed; `make test` installs it (apt-get install prometheus)")
    token = "prometheus-test-token"
    live = LiveServer(make_settings(triton, tmp_path / "index", api_token=token)).start()
    (tmp_path / "api_token").write_text(token)
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    config["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(ROOT / "deploy/prometheus/alerts.yml")]
    targets = {
        "triton": f"{triton.options.host}:{triton.options.metrics_port}",
        "orchestrator": f"127.0.0.1:{live.settings.port}",
    }
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(tmp_path / "api_token")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "prometheus.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    try:

        async def one_turn() -> list[str]:
            client = await VoiceClient.connect(f"{live.ws_url}?token={token}")
            try:
                await client.send({"type": "text", "text": "What is the user ID of root?", "speak": True})
                return (await client.until("done", "error")).types()
            finally:
                await client.close()

        assert asyncio.run(one_turn())[-1] == "done"

        def eventually(what: str, check: Callable[[], bool], bound_s: float = 60) -> None:
            deadline = time.monotonic() + bound_s
            while time.monotonic() < deadline:
                assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
                with contextlib.suppress(OSError):
                    if check():
                        return
                time.sleep(0.5)
            raise AssertionError(
                f"{what} not seen within {bound_s:g} s:\n{(tmp_path / 'prometheus.log').read_text()[-2000:]}"
            )

        def targets_up() -> bool:
            active = prometheus_api(base, "targets")["activeTargets"]
            return sorted((t["labels"]["job"], t["health"]) for t in active) == [
                ("orchestrator", "up"),
                ("triton", "up"),
            ]

        def samples(query: str) -> list[dict]:
            return prometheus_api(base, "query", query=query)["result"]

        eventually("both targets up", targets_up)
        for stage in ("retrieval", "llm_first_token", "tts_first_audio", "total"):
            eventually(
                f"a {stage} sample",
                lambda s=stage: any(
                    float(r["value"][1]) >= 1 for r in samples(f'voicebot_stage_seconds_count{{stage="{s}"}}')
                ),
            )
        eventually(
            "Triton's llm success counter",
            lambda: bool(samples(f'nv_inference_request_success{{model="{c.LLM.name}"}} > 0')),
        )
        ready = samples("voicebot_model_ready")
        assert {r["metric"]["model"] for r in ready if r["value"][1] == "1"} == set(MODEL_NAMES)
        groups = prometheus_api(base, "rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) >= 5 and all(r["health"] == "ok" for r in rules), rules
    finally:
        proc.terminate()
        proc.wait(10)
        live.stop()
