"""Export: ONNX fp32 matches PyTorch, int8 stays close, the contract holds end to end."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from inference.export.to_onnx import export, quantize_int8
from inference.serve.artifacts import load_artifact
from inference.serve.contract import ATTENTION_MASK, INPUT_IDS, LABELS, OUTPUTS, TASKS
from inference.serve.runner import MultiTaskOnnx

TEXTS = [
    "Shares plunge after profit warning",
    "Chelsea cruise into the cup final",
    "The minister announced a review of rail fares",
    "This phone's battery died after two days, awful",
] * 10


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    _cfg, _, result = tiny_run
    out = tmp_path_factory.mktemp("artifacts")
    return out, export(result.best_dir.parent, TEXTS, out)


def test_fp32_matches_pytorch_and_int8_is_close(exported):
    _, res = exported
    p = res.parity
    assert p["n"] == len(TEXTS)
    for task in TASKS:
        assert p["fp32"][task]["label_agreement"] == 1.0
        assert p["fp32"][task]["max_abs_prob_diff"] < 1e-4
        # a barely trained model sits near its decision boundaries; int8 still tracks it
        assert p["int8"][task]["max_abs_prob_diff"] < 0.1
    assert p["size_bytes"]["int8"] < p["size_bytes"]["fp32"] / 3


def test_graph_has_the_contract_tensors(exported):
    out, _ = exported
    artifact = load_artifact(out)
    assert artifact.labels == LABELS
    for precision in ("fp32", "int8"):
        model = onnx.load(str(artifact.onnx_file(precision)))
        assert [i.name for i in model.graph.input] == [INPUT_IDS, ATTENTION_MASK]
        outputs = {o.name: o.type.tensor_type.shape.dim[1].dim_value for o in model.graph.output}
        assert outputs == {OUTPUTS[t]: len(LABELS[t]) for t in TASKS}
    meta = json.loads((artifact.directory / "model.json").read_text())
    assert meta["version"].startswith("moodwire-") and meta["sha256"]["int8"][:8] in meta["version"]
    assert meta["truncation_head"] < meta["max_length"]
    assert meta["base_model_licence"] == "apache-2.0"


def test_weight_only_ffn_outputs_keep_float_activations(exported, tiny_run, tmp_path):
    """The Chinese export's scheme: each layer's FFN output projection becomes a block-quantized
    MatMulNBits (float activations); everything else stays dynamic int8; scores stay close."""
    out, _ = exported
    layers = json.loads((tiny_run[2].best_dir / "config.json").read_text())["num_hidden_layers"]
    fp32 = load_artifact(out).onnx_file("fp32")
    mixed = tmp_path / "model.int8.onnx"
    quant = quantize_int8(fp32, mixed, num_heads=12, hidden_size=384, weight_only_ffn_output=True)
    assert f"{layers} FFN output projections weight-only" in quant["method"]
    ops = [n.op_type for n in onnx.load(str(mixed)).graph.node]
    assert ops.count("MatMulNBits") == layers and "MatMul" not in ops  # the rest is int8 too

    import onnxruntime as ort

    ids = np.array([[101, 2000, 3000, 4000, 5000, 102]], dtype=np.int64)
    feed = {INPUT_IDS: ids, ATTENTION_MASK: np.ones_like(ids)}
    ref = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, feed)
    got = ort.InferenceSession(str(mixed), providers=["CPUExecutionProvider"]).run(None, feed)
    for r, g in zip(ref, got, strict=True):
        assert np.abs(r - g).max() < 0.05


def test_weight_only_needs_a_gelu(tmp_path):
    """A graph with no GELU has no FFN output projection to keep in float: a clear error."""
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], [0.1] * 16)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [w],
    )
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ValueError, match="no MatMul reads a GELU output"):
        quantize_int8(path, tmp_path / "q.onnx", num_heads=1, hidden_size=4, weight_only_ffn_output=True)


@pytest.mark.parametrize(("batch", "seq"), [(1, 5), (3, 17), (9, 64)])
def test_dynamic_batch_and_sequence_axes(exported, batch, seq):
    out, _ = exported
    model = MultiTaskOnnx(load_artifact(out), "fp32", threads=1)
    ids = np.full((batch, seq), 1000, dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    outs = model.session.run(None, {INPUT_IDS: ids, ATTENTION_MASK: np.ones_like(ids)})
    assert [o.shape for o in outs] == [(batch, len(LABELS[t])) for t in TASKS]
    assert all(np.allclose(o.sum(-1), 1.0, atol=1e-5) for o in outs)


def test_committed_card_and_report_describe_the_committed_model():
    artifact = load_artifact()
    card = (artifact.directory / "MODEL_CARD.md").read_text()
    report = json.loads((artifact.directory / "report.json").read_text())
    assert artifact.version in card
    assert {t["metric"] for t in report["test"]["targets"]} >= {
        "news.sentiment.macro_f1",
        "bbc.topic.accuracy",
    }
    assert "never on a test split" in card
