"""Static checks of triton_models/: every config (CPU and GPU) matches the contract.

The GPU repository cannot run here (no GPU, no TensorRT), so its configs and
the engine build script are checked by reading them: names, tensors, dtypes,
dims, labels, batch and sequence bounds.  Fast; needs only tritonclient (for
the model_config protobuf) and the artefacts' model.json for rendering.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import types
from pathlib import Path

import pytest

from inference.serve.artifacts import load_artifact
from inference.serve.contract import (
    ATTENTION_MASK,
    INPUT_IDS,
    LABELS,
    MAX_LENGTH,
    OUTPUTS,
    TASKS,
    TRUNCATION_HEAD,
)
from inference.serve.triton_client import CONTRACT_FILE, load_contract
from inference.serve.triton_server import REPOSITORY_ROOT, render_repository

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
    assert set(CONTRACT["tasks"]) == set(TASKS)
    for task, c in CONTRACT["tasks"].items():
        assert tuple(c["labels"]) == LABELS[task]
        assert c["output"] == OUTPUTS[task]
        for part in ("entry", "encoder"):
            assert CONTRACT[part]["outputs"][c["output"]] == {
                "data_type": "TYPE_FP32",
                "dims": [len(LABELS[task])],
            }
    assert list(CONTRACT["entry"]["outputs"]) == list(CONTRACT["encoder"]["outputs"])
    assert set(CONTRACT["encoder"]["outputs"]) == {c["output"] for c in CONTRACT["tasks"].values()}
    assert CONTRACT["max_length"] == MAX_LENGTH
    assert list(CONTRACT["encoder"]["inputs"]) == [INPUT_IDS, ATTENTION_MASK]
    # The tokenizer's outputs feed the encoder's inputs by name.
    assert CONTRACT["tokenizer"]["outputs"] == CONTRACT["encoder"]["inputs"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_repository_has_exactly_the_contract_models(variant):
    models = {p.name for p in (REPOSITORY_ROOT / variant).iterdir() if p.is_dir()}
    assert models == {CONTRACT["entry_model"], CONTRACT["tokenizer"]["model"], CONTRACT["encoder"]["model"]}
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
    assert params(tok)["artifact_version"] == "@ARTIFACT_VERSION@"


@pytest.mark.parametrize("variant", VARIANTS)
def test_encoder_config_matches_contract(variant):
    io = CONTRACT["encoder"]
    config = parse(REPOSITORY_ROOT / variant / io["model"] / "config.pbtxt")
    assert config.max_batch_size == CONTRACT["max_batch_size"]
    assert tensors(config.input) == spec(io["inputs"])
    assert tensors(config.output) == spec(io["outputs"])
    for task, c in CONTRACT["tasks"].items():
        assert params(config)[f"{task}_labels"].split(",") == c["labels"]
    assert params(config)["artifact_version"] == "@ARTIFACT_VERSION@"
    if variant == "gpu":
        assert config.platform == "tensorrt_plan"
        assert all(g.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU for g in config.instance_group)
    else:
        assert config.backend == "python"
        assert params(config)["artifact_dir"] == "@ARTIFACT_DIR@"
        assert (REPOSITORY_ROOT / variant / io["model"] / "1" / "model.py").is_file()
        # One instance whose single-threaded sessions run the rows side by side.
        assert [g.count for g in config.instance_group] == [1]
        assert int(params(config)["workers"]) >= 0


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
    config = parse(REPOSITORY_ROOT / "gpu" / CONTRACT["encoder"]["model"] / "config.pbtxt")
    assert config.max_batch_size == v["MAX_BATCH"], "engine max batch != config max_batch_size"
    assert max(config.dynamic_batching.preferred_batch_size) <= v["MAX_BATCH"]
    text = BUILD_SCRIPT.read_text(encoding="utf-8")
    names = list(CONTRACT["encoder"]["inputs"])
    shape_fn = re.search(r'shape\(\) \{ echo "(.*)"; \}', text)
    assert shape_fn is not None
    assert [s.split(":")[0] for s in shape_fn.group(1).split(",")] == names
    for flag in (
        "--fp16",
        "--minShapes",
        "--optShapes",
        "--maxShapes",
        "/encoder/1/model.plan",
        "model.fp32.onnx",
    ):
        assert flag in text
    assert "for task in" not in text, "one engine for both tasks, not one per task"


def test_render_fills_every_placeholder(tmp_path):
    out = render_repository(REPOSITORY_ROOT / "cpu", tmp_path / "repo", ARTIFACTS)
    assert json.loads((out / "contract.json").read_text()) == CONTRACT
    artifact = load_artifact(ARTIFACTS)
    for config_file in out.glob("*/config.pbtxt"):
        assert "@" not in config_file.read_text(), config_file
        config = parse(config_file)
        if "artifact_dir" in params(config):
            # each language's models read their own artefact (tests/test_triton_languages.py)
            name = "moodwire-zh" if config_file.parent.name.endswith("_zh") else "moodwire"
            own = load_artifact(ARTIFACTS, name)
            assert Path(params(config)["artifact_dir"]) == own.directory
            assert params(config)["artifact_version"] == own.version
    encoder = parse(out / CONTRACT["encoder"]["model"] / "config.pbtxt")
    assert artifact.onnx_file(params(encoder)["precision"]).is_file()
    for code in out.glob("*/1/model.py"):
        assert code.is_file() and not code.is_symlink()


def test_client_refuses_a_contract_that_disagrees_with_inference_contract(tmp_path):
    from inference.serve.triton_client import TritonContractError

    stale = json.loads(CONTRACT_FILE.read_text(encoding="utf-8"))
    stale["entry"]["outputs"]["topic_probabilities"]["dims"] = [5]  # the old five-topic model
    path = tmp_path / "contract.json"
    path.write_text(json.dumps(stale), encoding="utf-8")
    with pytest.raises(TritonContractError, match=r"entry output topic_probabilities dims \[5\] != \[6\]"):
        load_contract(path)


def load_python_model(variant: str, name: str, monkeypatch) -> types.ModuleType:
    """A python-backend model file, imported with a stand-in for the backend's utils."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("pb_utils"))
    path = REPOSITORY_ROOT / variant / name / "1" / "model.py"
    spec = importlib.util.spec_from_file_location(f"triton_{variant}_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_triton_tokenizer_cuts_texts_as_the_local_tokenizer(monkeypatch):
    # The model directory cannot import our package, so it carries its own
    # copies of head_tail and clip_text; they must keep the same tokens.
    from inference.serve import tokenization

    model = load_python_model("cpu", CONTRACT["tokenizer"]["model"], monkeypatch)
    for n in (0, 1, 255, 256, 257, 600):
        ids = list(range(n))
        for head in (TRUNCATION_HEAD, 0, MAX_LENGTH):
            assert model.head_tail(ids, MAX_LENGTH, head) == tokenization.head_tail(ids, MAX_LENGTH, head)
        ours = model.head_tail(ids, MAX_LENGTH, TRUNCATION_HEAD)
        assert ours == (
            ids if n <= MAX_LENGTH else ids[:TRUNCATION_HEAD] + ids[-(MAX_LENGTH - TRUNCATION_HEAD) :]
        )
    for text in ("short", "x" * (2 * MAX_LENGTH * 100), "y" * (2 * MAX_LENGTH * 100 + 1), "ab " * 100_000):
        assert model.clip_text(text, MAX_LENGTH) == tokenization.clip_text(text, MAX_LENGTH)
    ids, mask = model.pad([[5, 6, 7], [8]], 0)
    assert (ids.tolist(), mask.tolist()) == ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]])
