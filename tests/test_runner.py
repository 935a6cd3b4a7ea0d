"""The committed models through the local runner: offline, batched, sane."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from inference.artifacts import ArtifactError, load_artifact
from inference.contract import LABELS, TASKS
from inference.runner import LocalRunner
from inference.tokenization import BatchTokenizer, length_buckets, pad


@pytest.fixture(scope="module")
def runner():
    return LocalRunner()


def test_artifacts_load_and_run_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    out = LocalRunner().classify(["The service was awful and slow."])
    assert out[0].sentiment.label in LABELS["sentiment"]


def test_committed_artifacts_fit_the_budget():
    total = 0
    for task in TASKS:
        a = load_artifact(task)
        total += a.onnx_file("int8").stat().st_size + a.tokenizer_file.stat().st_size
    assert total <= 64 * 1024 * 1024


def test_outputs_are_distributions_over_the_contract_labels(runner):
    out = runner.classify(["Stocks rally as inflation cools", "Worst app ever, crashes constantly"])
    for c in out:
        for task in TASKS:
            p = getattr(c, task)
            assert list(p.scores) == list(LABELS[task])
            assert abs(sum(p.scores.values()) - 1.0) < 1e-4
            assert p.label == max(p.scores, key=p.scores.get)
            assert p.model_version == runner.model_versions[task]


@pytest.mark.parametrize(
    ("text", "sentiment", "topic"),
    [
        (
            "I absolutely love this phone, the camera is fantastic and the battery lasts for days!",
            "positive",
            None,
        ),
        ("Terrible service, rude staff and my order arrived broken. Never again.", "negative", None),
        ("Striker scores twice as champions win the cup final", None, "sport"),
        ("Shares slump after the bank reports a quarterly loss and cuts its dividend", None, "business"),
        ("Government announces general election date as opposition demands vote on budget", None, "politics"),
        ("New smartphone chip promises faster broadband downloads and better software", None, "tech"),
        ("Oscar-winning actress stars in the new box office hit film", None, "entertainment"),
    ],
)
def test_obvious_cases(runner, text, sentiment, topic):
    (c,) = runner.classify([text])
    if sentiment:
        assert c.sentiment.label == sentiment, c.sentiment.scores
    if topic:
        assert c.topic.label == topic, c.topic.scores


def test_bucketing_preserves_order_and_matches_single_runs(runner):
    texts = ["short", "a much longer text " * 20, "medium length review of a product", "ok"] * 5
    batched = runner.classify(texts)
    model = runner.models["sentiment"]
    for text, c in zip(texts[:4], batched[:4], strict=True):
        alone = model.predict_proba([text])[0]
        assert np.argmax(alone) == LABELS["sentiment"].index(c.sentiment.label)


def test_empty_batch(runner):
    assert runner.classify([]) == []


def test_very_long_text_is_truncated(runner):
    tok = runner.models["topic"].tokenizer
    (ids,) = tok.encode(["word " * 100_000])
    assert len(ids) == tok.max_length
    assert runner.classify(["word " * 100_000])[0].topic.label in LABELS["topic"]


def test_pad_is_per_batch_and_buckets_are_sorted():
    ids, mask = pad([[1, 2, 3], [4]], pad_id=0)
    assert ids.shape == (2, 3) and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    seqs = [[0] * n for n in (9, 1, 5, 3, 7)]
    buckets = list(length_buckets(seqs, 2))
    assert buckets == [[1, 3], [2, 4], [0]]


def test_serving_tokenizer_matches_training_tokenizer():
    transformers = pytest.importorskip("transformers")
    from inference.training import DEFAULT_BASE_MODEL, resolve_base_model

    a = load_artifact("sentiment")
    hf = transformers.AutoTokenizer.from_pretrained(resolve_base_model(DEFAULT_BASE_MODEL))
    ours = BatchTokenizer(a.tokenizer_file, a.max_length)
    texts = ["Héllo WORLD!!", "emoji 😀 and CJK 中文", "x " * 500, "@user #tag http://t.co/x"]
    assert ours.encode(texts) == hf(texts, truncation=True, max_length=a.max_length)["input_ids"]


def test_missing_artifact_gives_clear_error(tmp_path):
    with pytest.raises(ArtifactError, match="train and export"):
        load_artifact("sentiment", tmp_path)
