import json

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from voicebot import contract as c
from voicebot.engines.stt import WhisperSettings
from voicebot.serving.config import ConfigError, param, read_sidecar, to_dataclass
from voicebot.serving.repository import MODEL_REPOSITORY, ModelDeploy, load_profile, parse_instance_override, render


def parse(path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_gpu_profile_renders_gpu_instances_and_vllm_sidecar(tmp_path):
    names = render(tmp_path / "repo", load_profile("gpu"))
    assert c.VOICE_ANSWER.name in names and c.TRANSCRIBE.name in names
    whisper = parse(tmp_path / "repo" / c.WHISPER_STT.name / "config.pbtxt")
    assert [(g.count, model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind)) for g in whisper.instance_group] == [
        (1, "KIND_GPU")
    ]
    sidecar = json.loads((tmp_path / "repo" / c.LLM.name / "1" / "model.json").read_text())
    assert sidecar["engine"] == "vllm" and sidecar["engine_args"]["enable_prefix_caching"] is True
    # The source repository is untouched: deployment never edits code or configs.
    assert "KIND_GPU" not in (MODEL_REPOSITORY / c.WHISPER_STT.name / "config.pbtxt").read_text()


def test_cpu_profile_keeps_configs_parseable(tmp_path):
    render(tmp_path / "repo", load_profile("cpu"))
    for config in (tmp_path / "repo").glob("*/config.pbtxt"):
        parse(config)


def test_override_counts(tmp_path):
    render(tmp_path / "repo", {c.TTS.name: ModelDeploy(kind="KIND_CPU", count=3)})
    assert parse(tmp_path / "repo" / c.TTS.name / "config.pbtxt").instance_group[0].count == 3


def test_bad_profiles_are_named(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_profile("nope")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"models": {c.TTS.name: {"kind": "KIND_TPU"}}}))
    with pytest.raises(ConfigError, match="kind must be"):
        load_profile(str(bad))
    with pytest.raises(ConfigError, match="no such models: nomodel"):
        render(tmp_path / "r", {"nomodel": ModelDeploy()})


def test_instance_override_parsing():
    assert parse_instance_override(f"{c.WHISPER_STT.name}=KIND_GPU:2") == (c.WHISPER_STT.name, "KIND_GPU", 2)
    assert parse_instance_override(f"{c.TTS.name}=3") == (c.TTS.name, None, 3)
    with pytest.raises(ConfigError):
        parse_instance_override(c.TTS.name)
    with pytest.raises(ConfigError):
        parse_instance_override(f"{c.TTS.name}=fast")


def test_typed_config_helpers(tmp_path):
    config = {"name": "m", "parameters": {"max_seconds": {"string_value": "30"}, "flag": {"string_value": "yes"}}}
    assert param(config, "max_seconds", 60.0) == 30.0
    assert param(config, "missing", 7) == 7
    with pytest.raises(ConfigError, match="'flag'"):
        param(config, "flag", True)
    (tmp_path / "model.json").write_text('{"beam_size": 5, "bogus": 1}')
    with pytest.raises(ConfigError, match="bogus"):
        to_dataclass(WhisperSettings, read_sidecar(tmp_path), "whisper")
    (tmp_path / "model.json").write_text("{oops")
    with pytest.raises(ConfigError, match="invalid JSON"):
        read_sidecar(tmp_path)


def test_a_profile_chooses_retrieval_settings_and_names_bad_ones(tmp_path):
    from voicebot.serving.repository import profile_orchestrator_defaults

    assert profile_orchestrator_defaults("cpu") == {}
    assert profile_orchestrator_defaults("cpu-quality") == {"top_k": 4, "passage_words": 90}
    for body, message in [
        ({"orchestrator": {"top_k": "4"}}, "top_k must be int"),
        ({"orchestrator": {"api_token": "x"}}, "not a profile setting"),
        ({"orchestra": {}}, "unknown keys"),
    ]:
        path = tmp_path / "p.json"
        path.write_text(json.dumps(body))
        with pytest.raises(ConfigError, match=message):
            profile_orchestrator_defaults(str(path))
