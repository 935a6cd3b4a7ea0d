"""Export: ONNX fp32 matches PyTorch, int8 is close, labels agree end to end."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from inference.artifacts import load_artifact
from inference.contract import ATTENTION_MASK, INPUT_IDS, LABELS, PROBABILITIES
from inference.export import export
from inference.runner import OnnxClassifier


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    _cfg, ds, result = tiny_run
    sample = ds.test[:40]
    out = tmp_path_factory.mktemp("artifacts")
    res = export(
        "sentiment", result.best_dir.parent, [e.text for e in sample], [e.label for e in sample], out
    )
    return out, res


def test_fp32_matches_pytorch_and_int8_is_close(exported):
    _, res = exported
    p = res.parity
    assert p["n"] == 40
    assert p["fp32"]["label_agreement"] == 1.0
    assert p["fp32"]["max_abs_prob_diff"] < 1e-4
    # a barely trained model sits near the decision boundary; int8 still tracks it
    assert p["int8"]["max_abs_prob_diff"] < 0.05
    assert p["size_bytes"]["int8"] < p["size_bytes"]["fp32"] / 3


def test_label_maps_agree_between_training_export_and_runner(exported, tiny_run):
    out, _ = exported
    _, _, result = tiny_run
    trained = json.loads((result.best_dir / "config.json").read_text())["id2label"]
    artifact = load_artifact("sentiment", out)
    assert [trained[str(i)] for i in range(3)] == list(artifact.labels) == list(LABELS["sentiment"])
    model = onnx.load(str(artifact.onnx_file("int8")))
    assert [i.name for i in model.graph.input] == [INPUT_IDS, ATTENTION_MASK]
    assert [o.name for o in model.graph.output] == [PROBABILITIES]
    assert model.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 3


@pytest.mark.parametrize(("batch", "seq"), [(1, 5), (3, 17), (9, 64)])
def test_dynamic_batch_and_sequence_axes(exported, batch, seq):
    out, _ = exported
    clf = OnnxClassifier(load_artifact("sentiment", out), "fp32")
    ids = np.full((batch, seq), 1000, dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    (probs,) = clf.session.run(None, {INPUT_IDS: ids, ATTENTION_MASK: np.ones_like(ids)})
    assert probs.shape == (batch, 3)
    assert np.allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_model_card_written(exported):
    out, _ = exported
    card = (out / "sentiment" / "MODEL_CARD.md").read_text()
    assert "Export parity" in card and "licence" in card
