"""Static checks of triton_models/: every config (CPU and GPU) matches the contract.

The GPU repository cannot run here (no GPU, no TensorRT), so its configs and
the engine build script are checked by reading them: names, tensors, dtypes,
dims, labels, batch and sequence bounds.  Fast; needs only tritonclient (for
the model_config protobuf) and the artefacts' model.json for rendering.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from inference.contract import ATTENTION_MASK, INPUT_IDS, LABELS, MAX_LENGTH, PROBABILITIES, TASKS
from inference.triton_client import load_contract
from inference.triton_server import REPOSITORY_ROOT, render_repository

model_config_pb2 = pytest.importorskip(
    "tritonclient.grpc.model_config_pb2", reason="tritonclient not installed"
)
text_format = pytest.importorskip("google.protobuf.text_format")

CONTRACT = load_contract()
BUILD_SCRIPT = REPOSITORY_ROOT.parent / "deploy" / "triton" / "build_engines.sh"
VARIANTS = ("cpu", "gpu")
ARTIFACTS = os.environ.get("MOODWIRE_TEST_ARTIFACTS")  # unset: the committed artefacts


def parse(path: Path):
    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


def dtype(config_tensor) -> str:
    return model_config_pb2.DataType.Name(config_tensor.data_type)


def tensors(items) -> dict[str, tuple[str, list[int]]]:
    return {t.name: (dtype(t), list(t.dims)) for t in items}


def spec(d: dict) -> dict[str, tuple[str, list[int]]]:
    return {name: (s["data_type"], s["dims"]) for name, s in d.items()}


def params(config) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


def test_contract_matches_inference_contract():
    assert set(CONTRACT["classifiers"]) == set(TASKS)
    for task, c in CONTRACT["classifiers"].items():
        assert tuple(c["labels"]) == LABELS[task]
        assert CONTRACT["entry"]["outputs"][c["output"]]["dims"] == [len(LABELS[task])]
        assert CONTRACT["max_length"] == MAX_LENGTH[task]
    assert list(CONTRACT["classifier_tensors"]["inputs"]) == [INPUT_IDS, ATTENTION_MASK]
    assert CONTRACT["classifier_tensors"]["output"]["name"] == PROBABILITIES


@pytest.mark.parametrize("variant", VARIANTS)
def test_repository_has_exactly_the_contract_models(variant):
    models = {p.name for p in (REPOSITORY_ROOT / variant).iterdir() if p.is_dir()}
    wanted = {CONTRACT["entry_model"], CONTRACT["tokenizer"]["model"]}
    wanted |= {c["model"] for c in CONTRACT["classifiers"].values()}
    assert models == wanted
    for name in models:
        assert parse(REPOSITORY_ROOT / variant / name / "config.pbtxt").name == name


@pytest.mark.parametrize("variant", VARIANTS)
def test_entry_and_tokenizer_configs_match_contract(variant):
    entry = parse(REPOSITORY_ROOT / variant / CONTRACT["entry_model"] / "config.pbtxt")
    assert entry.max_batch_size == CONTRACT["max_batch_size"]
    assert tensors(entry.input) == spec(CONTRACT["entry"]["inputs"])
    assert tensors(entry.output) == spec(CONTRACT["entry"]["outputs"])
    batching = entry.dynamic_batching
    assert batching.preferred_batch_size, "entry model must batch dynamically"
    assert max(batching.preferred_batch_size) <= entry.max_batch_size
    assert 0 < batching.max_queue_delay_microseconds <= 10_000
    assert batching.default_queue_policy.max_queue_size > 0, "queue must be bounded"
    assert (REPOSITORY_ROOT / variant / entry.name / "1" / "model.py").is_file()

    tok = parse(REPOSITORY_ROOT / variant / CONTRACT["tokenizer"]["model"] / "config.pbtxt")
    assert tok.max_batch_size == CONTRACT["max_batch_size"]
    assert tensors(tok.input) == spec(CONTRACT["tokenizer"]["inputs"])
    assert tensors(tok.output) == spec(CONTRACT["tokenizer"]["outputs"])
    for task in TASKS:
        for name in CONTRACT["classifier_tensors"]["inputs"]:
            assert f"{task}_{name}" in CONTRACT["tokenizer"]["outputs"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_classifier_configs_match_contract(variant):
    io = CONTRACT["classifier_tensors"]
    for task, c in CONTRACT["classifiers"].items():
        config = parse(REPOSITORY_ROOT / variant / c["model"] / "config.pbtxt")
        assert config.max_batch_size == CONTRACT["max_batch_size"]
        assert tensors(config.input) == spec(io["inputs"])
        assert tensors(config.output) == {
            io["output"]["name"]: (io["output"]["data_type"], [len(c["labels"])])
        }
        assert params(config)["labels"].split(",") == c["labels"]
        assert params(config)["artifact_version"] == f"@{task.upper()}_VERSION@"
        if variant == "gpu":
            assert config.platform == "tensorrt_plan"
            assert all(g.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU for g in config.instance_group)
        else:
            assert config.backend == "python"
            assert (REPOSITORY_ROOT / variant / c["model"] / "1" / "model.py").is_file()


def test_shared_models_are_the_same_code_on_cpu_and_gpu():
    for name in (CONTRACT["entry_model"], CONTRACT["tokenizer"]["model"]):
        cpu = parse(REPOSITORY_ROOT / "cpu" / name / "config.pbtxt")
        gpu = parse(REPOSITORY_ROOT / "gpu" / name / "config.pbtxt")
        assert (tensors(cpu.input), tensors(cpu.output)) == (tensors(gpu.input), tensors(gpu.output))
        code = [(REPOSITORY_ROOT / v / name / "1" / "model.py").read_bytes() for v in VARIANTS]
        assert code[0] == code[1]


def build_script_vars() -> dict[str, str]:
    text = BUILD_SCRIPT.read_text(encoding="utf-8")
    return dict(re.findall(r"^([A-Z_]+)=([^\s$\"]+)$", text, flags=re.MULTILINE))


def test_build_script_shapes_agree_with_configs():
    v = {k: int(x) for k, x in build_script_vars().items() if x.isdigit()}
    assert v["MIN_BATCH"] == 1 <= v["OPT_BATCH"] <= v["MAX_BATCH"]
    assert 1 <= v["MIN_SEQ"] <= v["OPT_SEQ"] <= v["MAX_SEQ"] == CONTRACT["max_length"]
    for task, c in CONTRACT["classifiers"].items():
        config = parse(REPOSITORY_ROOT / "gpu" / c["model"] / "config.pbtxt")
        assert config.max_batch_size == v["MAX_BATCH"], f"{task}: engine max batch != config max_batch_size"
        assert max(config.dynamic_batching.preferred_batch_size) <= v["MAX_BATCH"]
    text = BUILD_SCRIPT.read_text(encoding="utf-8")
    names = list(CONTRACT["classifier_tensors"]["inputs"])
    shape_fn = re.search(r'shape\(\) \{ echo "(.*)"; \}', text)
    assert shape_fn is not None
    assert [s.split(":")[0] for s in shape_fn.group(1).split(",")] == names
    for flag in ("--fp16", "--minShapes", "--optShapes", "--maxShapes", "/1/model.plan", "model.fp32.onnx"):
        assert flag in text


def test_render_fills_every_placeholder(tmp_path):
    out = render_repository(REPOSITORY_ROOT / "cpu", tmp_path / "repo", ARTIFACTS)
    assert json.loads((out / "contract.json").read_text()) == CONTRACT
    for config_file in out.glob("*/config.pbtxt"):
        assert "@" not in config_file.read_text(), config_file
        config = parse(config_file)
        if "artifact_dir" in params(config):
            assert (Path(params(config)["artifact_dir"]) / "model.int8.onnx").is_file()
    assert (out / "topic" / "1" / "model.py").is_file() and not (
        out / "topic" / "1" / "model.py"
    ).is_symlink()
