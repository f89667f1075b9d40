"""The GPU deployment, checked where no Docker engine runs: compose structure, Dockerfiles, Prometheus."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
PROM = ROOT / "deploy" / "prometheus"


def test_every_service_has_a_pinned_image_and_a_health_check():
    assert {"triton-gpu", "triton-cpu", "orchestrator", "prometheus", "grafana", "proxy"} <= set(SERVICES)
    for name, service in SERVICES.items():
        assert "healthcheck" in service, name
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: unpinned image {image}"


def test_only_the_proxy_is_published_and_nothing_uses_host_networking():
    for name, service in SERVICES.items():
        assert service.get("network_mode") != "host", name
        assert ("ports" in service) == (name == "proxy"), name


def test_triton_gets_shared_memory_and_the_gpu():
    for name in ("triton-gpu", "triton-cpu"):
        shm = SERVICES[name]["shm_size"]
        assert int(shm.rstrip("g")) >= 2, shm
    devices = SERVICES["triton-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert SERVICES["triton-gpu"]["command"] == ["--profile", "gpu"]
    for name in ("triton-gpu", "triton-cpu"):  # the models behind the orchestrator want its token too
        assert SERVICES[name]["environment"]["VOICEBOT_API_TOKEN"].startswith("${VOICEBOT_API_TOKEN:?")


def test_the_orchestrator_answers_to_the_names_it_is_reached_by():
    import json

    env = SERVICES["orchestrator"]["environment"]
    hosts = json.loads(env["VOICEBOT_ALLOWED_HOSTS"])
    assert "${VOICEBOT_DOMAIN:-localhost}" in hosts  # the proxy passes the public Host through
    scraped = yaml.safe_load((PROM / "prometheus.yml").read_text())
    targets = [t for job in scraped["scrape_configs"] for c in job.get("static_configs", []) for t in c["targets"]]
    for target in targets:
        if target.startswith("orchestrator:"):
            assert "orchestrator" in hosts
    assert SERVICES["triton-cpu"]["command"] == ["--profile", "cpu"]


def test_secrets_come_from_the_environment():
    text = (ROOT / "docker-compose.yml").read_text()
    for secret in ("VOICEBOT_API_TOKEN", "GRAFANA_ADMIN_PASSWORD"):
        assert re.search(rf"\$\{{{secret}:\?", text), f"{secret} must be required from the environment"


def test_every_referenced_file_exists():
    for name, service in SERVICES.items():
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith("./") and not host.startswith("./deploy/secrets/"):  # secrets: made by the operator
                assert (ROOT / host).exists(), f"{name}: {host}"


@pytest.mark.parametrize("dockerfile", ["triton/Dockerfile", "orchestrator/Dockerfile"])
def test_dockerfiles_pin_bases_copy_real_paths_and_check_health(dockerfile):
    text = (ROOT / dockerfile).read_text()
    for base in re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE):
        assert ":" in base and not base.endswith(":latest"), base
    for src in re.findall(r"^COPY\s+(?!--from)(\S+)", text, re.MULTILINE):
        assert (ROOT / src).exists(), src
    assert "HEALTHCHECK" in text
    joined = text.replace("\\\n", " ")
    for command in re.findall(r"pip install ([^&\n]+)", joined):
        for token in command.split():
            if token.startswith("-") or token in (".", "-e"):
                continue
            assert "==" in token, f"{dockerfile}: unpinned package {token}"


def promtool():
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing; `make test` installs Debian's prometheus package")
    return path


def test_prometheus_config_and_rules_pass_promtool(tmp_path):
    config = (PROM / "prometheus.yml").read_text()
    (tmp_path / "api_token").write_text("token-for-the-check")
    shutil.copy(PROM / "alerts.yml", tmp_path / "alerts.yml")
    config = config.replace("/etc/prometheus/alerts.yml", "alerts.yml").replace(
        "/etc/prometheus/api_token", str(tmp_path / "api_token")
    )
    (tmp_path / "prometheus.yml").write_text(config)
    subprocess.run([promtool(), "check", "config", str(tmp_path / "prometheus.yml")], check=True, cwd=tmp_path)
    subprocess.run([promtool(), "check", "rules", str(PROM / "alerts.yml")], check=True)


def test_alert_rules_fire_as_their_unit_tests_say():
    done = subprocess.run([promtool(), "test", "rules", "alerts_test.yml"], cwd=PROM, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_server_error_alert_counts_exactly_the_contracts_server_error_codes():
    import re as regex

    from voicebot.contract import SERVER_ERROR_CODES, ErrorCode

    rules = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"][0]["rules"]
    expr = next(r["expr"] for r in rules if r["alert"] == "VoicebotServerErrors")
    alerted = set(regex.search(r'code=~"([^"]+)"', expr).group(1).split("|"))
    assert alerted == {c.value for c in SERVER_ERROR_CODES}
    assert alerted <= {c.value for c in ErrorCode}
