"""Render the project's ``model_repository/`` for one deployment profile.

The checked-in configs are valid as they are (CPU, one instance each). A profile
(``triton/profiles/<name>.json``) changes the instance kind and count of a model and
merges settings into its JSON sidecar; the result is written to a runtime directory
that tritonserver then serves. Deploying on a GPU is a profile, never a code edit.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import SIDECAR, ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODEL_REPOSITORY = PROJECT_ROOT / "model_repository"
PROFILES_DIR = PROJECT_ROOT / "triton" / "profiles"
KINDS = ("KIND_CPU", "KIND_GPU", "KIND_MODEL", "KIND_AUTO")
_INSTANCE_GROUP = re.compile(r"^instance_group\s*\[.*?\]\s*$", re.MULTILINE | re.DOTALL)


@dataclass
class ModelDeploy:
    kind: str = "KIND_CPU"
    count: int = 1
    sidecar: dict[str, Any] = field(default_factory=dict)

    def validate(self, model: str) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"profile: {model}.kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not isinstance(self.count, int) or not 1 <= self.count <= 16:
            raise ConfigError(f"profile: {model}.count must be an integer in [1, 16], got {self.count!r}")


# Orchestrator settings a profile may set (its defaults; VOICEBOT_* variables still win).
PROFILE_ORCHESTRATOR_KEYS = {"top_k": int, "passage_words": int}


def _profile_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES_DIR / f"{name_or_path}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.json")))
        raise ConfigError(f"profile {name_or_path!r} not found (known: {known})")
    return path


def _read_profile(name_or_path: str) -> tuple[Path, dict[str, Any]]:
    path = _profile_path(name_or_path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc})") from None
    unknown_top = set(raw) - {"description", "extras", "orchestrator", "models"}
    if unknown_top:
        raise ConfigError(
            f"{path}: unknown keys {sorted(unknown_top)} (a profile has description, extras, orchestrator, models)"
        )
    return path, raw


def profile_orchestrator_defaults(name_or_path: str) -> dict[str, Any]:
    """The orchestrator settings a profile chooses (``"orchestrator": {"top_k": 4}``)."""
    path, raw = _read_profile(name_or_path)
    values = raw.get("orchestrator", {})
    for key, value in values.items():
        kind = PROFILE_ORCHESTRATOR_KEYS.get(key)
        if kind is None:
            raise ConfigError(
                f"{path}: orchestrator.{key} is not a profile setting ({', '.join(PROFILE_ORCHESTRATOR_KEYS)})"
            )
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(f"{path}: orchestrator.{key} must be {kind.__name__}, got {value!r}")
    return dict(values)


def load_profile(name_or_path: str) -> dict[str, ModelDeploy]:
    """A profile by name (``cpu``, ``gpu``) or path, as per-model deploy settings."""
    path, raw = _read_profile(name_or_path)
    extras = raw.get("extras", [])
    if not isinstance(extras, list) or not all(isinstance(e, str) for e in extras):
        raise ConfigError(f"{path}: extras must be a list of pyproject extra names")
    models = raw.get("models", {})
    deploys: dict[str, ModelDeploy] = {}
    for model, spec in models.items():
        unknown = set(spec) - {"kind", "count", "sidecar"}
        if unknown:
            raise ConfigError(f"{path}: {model} has unknown keys {sorted(unknown)}")
        deploy = ModelDeploy(**spec)
        deploy.validate(model)
        deploys[model] = deploy
    return deploys


def parse_instance_override(text: str) -> tuple[str, str | None, int | None]:
    """``MODEL=KIND_GPU:2``, ``MODEL=2`` or ``MODEL=KIND_CPU`` from the command line."""
    model, _, spec = text.partition("=")
    if not model or not spec:
        raise ConfigError(f"--instances wants MODEL=KIND:COUNT, got {text!r}")
    kind: str | None = None
    count: int | None = None
    for part in spec.split(":"):
        if part.upper().startswith("KIND_"):
            kind = part.upper()
        elif part.isdigit():
            count = int(part)
        else:
            raise ConfigError(f"--instances: cannot read {part!r} in {text!r}")
    return model, kind, count


def instance_group(deploy: ModelDeploy) -> str:
    return f"instance_group [ {{ count: {deploy.count}, kind: {deploy.kind} }} ]"


def render(
    target: Path, deploys: dict[str, ModelDeploy], source: Path = MODEL_REPOSITORY, only: list[str] | None = None
) -> list[str]:
    """Write the repository for ``deploys`` into ``target`` (replaced whole); return model names.

    ``only`` keeps a subset of the models (a quick server for tests or a single-model host).
    """
    available = {p.name for p in source.iterdir() if (p / "config.pbtxt").is_file()}
    unknown = (set(deploys) | set(only or ())) - available
    if unknown:
        raise ConfigError(f"no such models: {', '.join(sorted(unknown))} (have: {', '.join(sorted(available))})")
    staging = target.with_name(target.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    skipped = available - set(only) if only else set()
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", *skipped))
    names = []
    for model_dir in sorted(p for p in staging.iterdir() if (p / "config.pbtxt").is_file()):
        names.append(model_dir.name)
        deploy = deploys.get(model_dir.name)
        if deploy is None:
            continue
        config_path = model_dir / "config.pbtxt"
        text = config_path.read_text(encoding="utf-8")
        if _INSTANCE_GROUP.search(text):
            text = _INSTANCE_GROUP.sub(instance_group(deploy), text, count=1)
        else:
            text = text.rstrip("\n") + "\n" + instance_group(deploy) + "\n"
        config_path.write_text(text, encoding="utf-8")
        if deploy.sidecar:
            sidecar_path = model_dir / "1" / SIDECAR
            current = json.loads(sidecar_path.read_text(encoding="utf-8")) if sidecar_path.is_file() else {}
            sidecar_path.write_text(
                json.dumps(merge_sidecar(current, deploy.sidecar), indent=2) + "\n", encoding="utf-8"
            )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return names


def merge_sidecar(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, nested objects merged key by key (a profile's sidecar over the model's)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_sidecar(merged[key], value)
        else:
            merged[key] = value
    return merged
