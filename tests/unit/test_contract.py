"""The checked-in configs agree with the one contract module, as Triton parses them."""

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from voicebot import contract
from voicebot import contract as c

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
    steps = load(c.TRANSCRIBE.name).ensemble_scheduling.step
    assert [s.model_name for s in steps] == [contract.AUDIO_DECODE.name, contract.WHISPER_STT.name]
    assert steps[0].output_map[contract.AUDIO] == steps[1].input_map[contract.AUDIO]


def test_llm_matches_triton_vllm_backend_io():
    # The names and types Triton's vLLM backend documents; clients of it must work unchanged.
    config = load(c.LLM.name)
    assert {(t.name, dtype_name(t.data_type)) for t in config.input} == {
        ("text_input", "TYPE_STRING"),
        ("stream", "TYPE_BOOL"),
        ("sampling_parameters", "TYPE_STRING"),
        ("exclude_input_in_output", "TYPE_BOOL"),
        ("return_finish_reason", "TYPE_BOOL"),
        ("return_num_input_tokens", "TYPE_BOOL"),
        ("return_num_output_tokens", "TYPE_BOOL"),
    }
    assert [(t.name, dtype_name(t.data_type), list(t.dims)) for t in config.output] == [
        ("text_output", "TYPE_STRING", [-1]),
        ("finish_reason", "TYPE_STRING", [-1]),
        ("num_input_tokens", "TYPE_UINT32", [1]),
        ("num_output_tokens", "TYPE_UINT32", [-1]),
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


def test_no_wire_name_or_dtype_is_spelled_outside_the_contract():
    import re
    import subprocess
    from pathlib import Path

    from voicebot import contract as c

    root = Path(__file__).resolve().parents[2]
    files = subprocess.run(["git", "ls-files", "*.py"], cwd=root, capture_output=True, text=True, check=True)
    # Names that are only ever wire names (the short ones, "text" or "audio", are also event fields).
    # Also a field of the WebSocket's start and audio events; of OpenAI's chat completions.
    shared = {c.SAMPLE_RATE, c.FINISH_REASON}
    distinctive = {
        t.name for m in c.MODELS for t in (*m.inputs, *m.outputs) if ("_" in t.name or t.name.endswith("s"))
    } - shared
    quoted = "|".join(
        sorted({*distinctive, *c.MODEL_NAMES, "BYTES", "FP32", "FP16", "INT16", "INT32", "UINT32", "BOOL"})
    )
    literal = re.compile(rf"""(?<![\w{{=])(["'])({quoted})\1(?!\s*:\s*\{{)|InferInput\(""")
    offenders = []
    for name in files.stdout.split():
        # The contract; this file, which checks the configs against it; a repro with models of its own.
        if name in ("voicebot/contract.py", "tests/unit/test_contract.py") or name.startswith("triton/bls_repro/"):
            continue
        for n, line in enumerate((root / name).read_text().splitlines(), start=1):
            if literal.search(line) and "test_no_wire_name" not in line:
                offenders.append(f"{name}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
