"""Export: ONNX fp32 matches PyTorch, int8 stays close, the contract holds end to end."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from inference.artifacts import load_artifact
from inference.contract import ATTENTION_MASK, INPUT_IDS, LABELS, OUTPUTS, TASKS
from inference.export import export
from inference.runner import MultiTaskOnnx

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
