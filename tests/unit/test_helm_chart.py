"""The Helm chart (deploy/helm/voicebot), rendered by a real helm and every manifest validated
against the Kubernetes schemas (kubernetes-validate, offline); then what the chart promises:
who reaches Triton and the database, probes, GPU scheduling, autoscaling on a real metric,
drain time, secrets, hardened containers, settings the orchestrator really has."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from orchestrator.metrics import Metrics
from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "voicebot"
KUBERNETES = "1.31.0"  # the oldest minor the chart is checked against (kubectl from the same package)
REQUIRED = {"apiToken.value": "chart-test-token", "postgresql.bundled.password": "a pass/word@"}


def helm() -> str:
    found = ROOT / ".tools" / "helm"
    if found.is_file():
        return str(found)
    on_path = shutil.which("helm")
    if on_path is None:
        pytest.fail("helm is not installed; `make test` fetches it (make .tools/helm)")
    return on_path


def render(**values: Any) -> list[dict[str, Any]]:
    settings = {**REQUIRED, **values}
    args = [arg for key, value in settings.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")]
    done = subprocess.run(
        [helm(), "template", "rel", str(CHART), "--namespace", "voice", *args], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def refused(**values: Any) -> str:
    args = [arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")]
    done = subprocess.run([helm(), "template", "rel", str(CHART), *args], capture_output=True, text=True)
    assert done.returncode != 0
    return done.stderr


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


VARIANTS = {
    "defaults": {},
    "external database, CPU autoscaling, no ingress": {
        "postgresql.external.url": "postgresql://vb:pw@db.example:5432/vb",
        "orchestrator.autoscaling.metric": "cpu",
        "ingress.enabled": False,
    },
    "CPU Triton, fixed replicas, existing secrets": {
        "triton.profile": "cpu",
        "triton.gpus": 0,
        "triton.replicas": 2,
        "orchestrator.autoscaling.enabled": False,
        "apiToken.existingSecret": "my-token",
        "postgresql.external.existingSecret": "my-store",
    },
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_manifest_is_valid_kubernetes(variant):
    docs = render(**VARIANTS[variant])
    assert len(docs) >= 8
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)  # raises on any schema error


def test_helm_lint_passes():
    args = [arg for key, value in REQUIRED.items() for arg in ("--set", f"{key}={value}")]
    done = subprocess.run([helm(), "lint", "--strict", str(CHART), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_missing_or_bad_values_are_clear_errors():
    assert "set apiToken.value" in refused()
    assert "at least 8 characters" in refused(**{"apiToken.value": "short"})
    assert "set postgresql.bundled.password" in refused(**{"apiToken.value": "long-enough"})
    bad_metric = refused(**REQUIRED, **{"orchestrator.autoscaling.metric": "vibes"})
    assert "sessions or cpu" in bad_metric


def test_only_the_orchestrators_reach_triton_and_the_database():
    docs = render()
    policies = by_kind(docs, "NetworkPolicy")
    orchestrator = {"app.kubernetes.io/instance": "rel", "app.kubernetes.io/name": "voicebot"}
    orchestrator["app.kubernetes.io/component"] = "orchestrator"
    triton = policies["rel-voicebot-triton"]["spec"]
    assert triton["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "triton"
    inference, metrics = triton["ingress"]
    assert inference["from"] == [{"podSelector": {"matchLabels": orchestrator}}]
    assert {p["port"] for p in inference["ports"]} == {8000, 8001}
    assert {p["port"] for p in metrics["ports"]} == {8002} and "namespaceSelector" in metrics["from"][0]
    (database,) = policies["rel-voicebot-postgres"]["spec"]["ingress"]
    assert database["from"] == [{"podSelector": {"matchLabels": orchestrator}}] and database["ports"][0]["port"] == 5432
    # The orchestrator pods carry the labels the policies select.
    pod = by_kind(docs, "Deployment")["rel-voicebot-orchestrator"]["spec"]["template"]["metadata"]["labels"]
    assert orchestrator.items() <= pod.items()


def test_triton_runs_on_a_gpu_node_with_health_probes_and_a_scrape():
    triton = by_kind(render(), "Deployment")["rel-voicebot-triton"]["spec"]["template"]
    (container,) = triton["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert triton["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 600
    assert triton["metadata"]["annotations"]["prometheus.io/port"] == "8002"
    assert container["args"][:2] == ["--profile", "gpu"]
    # Not root: whatever it writes (the rendered repository, assembled weights) goes to its volumes.
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert container["args"][-1] in mounts and env_of(container)["VOICEBOT_CACHE_DIR"].startswith(container["args"][-1])
    shm = next(v for v in triton["spec"]["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["medium"] == "Memory"
    cpu = by_kind(render(**{"triton.profile": "cpu", "triton.gpus": 0}), "Deployment")["rel-voicebot-triton"]
    assert "nvidia.com/gpu" not in cpu["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_the_orchestrator_scales_on_open_sessions_and_drains_in_its_grace_period():
    docs = render()
    hpa = by_kind(docs, "HorizontalPodAutoscaler")["rel-voicebot-orchestrator"]["spec"]
    (metric,) = hpa["metrics"]
    exported = {m.name for m in Metrics().registry.collect()}
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] in exported
    assert int(metric["pods"]["target"]["averageValue"]) < Settings(_env_file=None).max_sessions
    deployment = by_kind(docs, "Deployment")["rel-voicebot-orchestrator"]
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
    pod = deployment["spec"]["template"]["spec"]
    env = env_of(pod["containers"][0])
    assert pod["terminationGracePeriodSeconds"] > int(env["VOICEBOT_DRAIN_TIMEOUT_S"])
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = by_kind(docs, "PodDisruptionBudget")["rel-voicebot-orchestrator"]["spec"]
    assert pdb["minAvailable"] >= 1
    cpu = by_kind(render(**{"orchestrator.autoscaling.metric": "cpu"}), "HorizontalPodAutoscaler")
    assert cpu["rel-voicebot-orchestrator"]["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_every_orchestrator_setting_the_chart_sets_exists():
    container = by_kind(render(), "Deployment")["rel-voicebot-orchestrator"]["spec"]["template"]["spec"]
    env = env_of(container["containers"][0])
    fields = {f"VOICEBOT_{name.upper()}" for name in Settings.model_fields}
    assert {k for k in env if k.startswith("VOICEBOT_")} <= fields
    # Every Triton pod by DNS (a headless Service): answers spread over all of them.
    assert env["VOICEBOT_TRITON_GRPC_URL"] == "dns:///rel-voicebot-triton-pods:8001"
    assert by_kind(render(), "Service")["rel-voicebot-triton-pods"]["spec"]["clusterIP"] == "None"
    assert env["VOICEBOT_STORE"] == {"secretKeyRef": {"name": "rel-voicebot-store", "key": "url"}}
    assert env["VOICEBOT_API_TOKEN"] == {"secretKeyRef": {"name": "rel-voicebot-token", "key": "token"}}
    hosts = json.loads(env["VOICEBOT_ALLOWED_HOSTS"])
    assert "voicebot.example.org" in hosts and "*" not in hosts
    probe = container["containers"][0]["readinessProbe"]["exec"]["command"]
    assert "/readyz" in probe[-1] and "VOICEBOT_API_TOKEN" in probe[-1]


def test_secrets_hold_the_token_and_a_store_url_without_the_password():
    secrets = by_kind(render(), "Secret")
    assert secrets["rel-voicebot-token"]["stringData"]["token"] == "chart-test-token"
    store = secrets["rel-voicebot-store"]["stringData"]
    assert store["url"] == "postgresql://voicebot@rel-voicebot-postgres:5432/voicebot"
    assert store["password"] == "a pass/word@"  # reaches libpq as PGPASSWORD: nothing to escape
    external = by_kind(render(**{"postgresql.external.url": "postgresql://u:p@db:5432/x"}), "Secret")
    assert external["rel-voicebot-store"]["stringData"] == {"url": "postgresql://u:p@db:5432/x"}
    assert not by_kind(render(**{"postgresql.external.url": "postgresql://u:p@db/x"}), "StatefulSet")
    mine = render(**{"apiToken.existingSecret": "mine", "postgresql.external.existingSecret": "db"})
    assert not by_kind(mine, "Secret")


def test_every_container_is_hardened_and_bounded():
    docs = render()
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    assert len(workloads) == 3
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]
            assert ":" in container["image"] and not container["image"].endswith(":latest")


def test_the_ingress_has_tls_and_websocket_timeouts():
    (ingress,) = by_kind(render(), "Ingress").values()
    assert ingress["spec"]["tls"][0]["hosts"] == ["voicebot.example.org"]
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "rel-voicebot-orchestrator"


def test_the_readme_names_only_values_the_chart_has():
    import re

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    section = (ROOT / "README.md").read_text().split("## Scale out", 1)[1].split("\n## ", 1)[0]
    named = [
        key
        for row in section.splitlines()
        if row.startswith("| `")
        for key in re.findall(r"`([a-zA-Z.*]+)`", row.split("|")[1])
    ]
    assert len(named) >= 10

    def resolve(key: str) -> Any:
        node: Any = values
        for part in key.removesuffix(".*").split("."):
            assert isinstance(node, dict) and part in node, f"README names {key}, which values.yaml does not have"
            node = node[part]
        return node

    prefix = ""
    for key in named:  # "`postgresql.external.url` / `.existingSecret`": the second is relative to the first
        full = prefix + key if key.startswith(".") else key
        resolve(full)
        prefix = full.rsplit(".", 1)[0]
