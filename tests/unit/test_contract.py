"""The checked-in configs agree with the one contract module, as Triton parses them."""

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from voicebot import contract

REPO = Path(__file__).resolve().parents[2] / "model_repository"


def load(name: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse((REPO / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def dtype_name(value: int) -> str:
    return model_config_pb2.DataType.Name(value)


def test_every_model_directory_is_in_the_contract():
    on_disk = sorted(p.name for p in REPO.iterdir() if (p / "config.pbtxt").is_file())
    assert on_disk == sorted(contract.MODEL_NAMES)


@pytest.mark.parametrize("model", contract.MODELS, ids=lambda m: m.name)
def test_config_matches_contract(model):
    config = load(model.name)
    assert config.name == model.name
    if model.platform == "ensemble":
        assert config.platform == "ensemble"
    else:
        assert config.backend == "python"
        assert (REPO / model.name / "1" / "model.py").is_file()
    assert config.model_transaction_policy.decoupled == model.decoupled
    assert config.max_batch_size == model.max_batch_size
    for declared, tensors in ((config.input, model.inputs), (config.output, model.outputs)):
        got = {t.name: (dtype_name(t.data_type), tuple(t.dims), getattr(t, "optional", False)) for t in declared}
        want = {t.name: (t.config_dtype, t.dims, t.optional) for t in tensors}
        assert got == want


def test_ensemble_wires_decode_into_whisper():
    steps = load("transcribe").ensemble_scheduling.step
    assert [s.model_name for s in steps] == [contract.AUDIO_DECODE.name, contract.WHISPER_STT.name]
    assert steps[0].output_map[contract.AUDIO] == steps[1].input_map[contract.AUDIO]


def test_llm_matches_triton_vllm_backend_io():
    # The names and types Triton's vLLM backend documents; clients of it must work unchanged.
    config = load("llm")
    assert {(t.name, dtype_name(t.data_type)) for t in config.input} == {
        ("text_input", "TYPE_STRING"),
        ("stream", "TYPE_BOOL"),
        ("sampling_parameters", "TYPE_STRING"),
        ("exclude_input_in_output", "TYPE_BOOL"),
    }
    assert [(t.name, dtype_name(t.data_type), list(t.dims)) for t in config.output] == [
        ("text_output", "TYPE_STRING", [-1])
    ]


def test_the_readme_error_table_names_every_error_code_and_no_other():
    import re
    from pathlib import Path

    from voicebot.contract import ErrorCode

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("### Error codes", 1)[1].split("\n## ", 1)[0]
    listed = {
        code
        for row in table.splitlines()
        if row.startswith("| `")
        for code in re.findall(r"`([a-z_]+)`", row.split("|")[1])
    }
    assert listed == {code.value for code in ErrorCode}
