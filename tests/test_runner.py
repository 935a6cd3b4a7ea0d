"""The committed model through the local runner: offline, one pass per text, sane."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from inference.serve.artifacts import ArtifactError, load_artifact
from inference.serve.contract import LABELS, MAX_LENGTH, MODEL_NAME, TASKS, TOPIC, TRUNCATION_HEAD
from inference.serve.runner import LocalRunner, MultiTaskOnnx
from inference.serve.tokenization import BatchTokenizer, clip_text, head_tail, length_buckets, pad


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
    a = load_artifact()
    total = a.onnx_file("int8").stat().st_size + a.tokenizer_file.stat().st_size
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
    # One model scores both tasks: one version, stored once per task.
    assert runner.model_versions == {task: load_artifact().version for task in TASKS}


def test_one_encoder_pass_gives_both_tasks(runner):
    model = runner.model
    encoded = model.tokenizer.encode(["Stocks rally as inflation cools", "ok"])
    probs = model.run_encoded(encoded)
    assert set(probs) == set(TASKS)
    for task in TASKS:
        assert probs[task].shape == (2, len(LABELS[task])) and probs[task].dtype == np.float32
        assert np.allclose(probs[task].sum(axis=1), 1.0, atol=1e-4)
    again = model.predict_proba(["Stocks rally as inflation cools", "ok"])
    for task in TASKS:
        assert np.array_equal(again[task], probs[task])
    assert model.run_encoded([])[TOPIC].shape == (0, len(LABELS[TOPIC]))


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
        ("Doctors warn flu cases are rising as hospitals fill up this winter", None, "other"),
    ],
)
def test_obvious_cases(runner, text, sentiment, topic):
    (c,) = runner.classify([text])
    if sentiment:
        assert c.sentiment.label == sentiment, c.sentiment.scores
    if topic:
        assert c.topic.label == topic, c.topic.scores


def test_rows_keep_input_order_and_equal_single_runs(runner):
    # Texts run side by side, longest first; each row must come back in its
    # input position with exactly the scores the text gets alone.
    texts = ["short", "a much longer text " * 20, "medium length review of a product", "ok"] * 5
    together = runner.model.predict_proba(texts)
    for i, text in enumerate(texts[:4]):
        alone = runner.model.predict_proba([text])
        for task in TASKS:
            assert np.array_equal(together[task][i], alone[task][0]), (task, text)
            assert np.array_equal(together[task][i + 4], alone[task][0]), (task, text)
    batched = runner.classify(texts)
    for i, c in enumerate(batched):
        for task in TASKS:
            assert getattr(c, task).label == LABELS[task][int(np.argmax(together[task][i]))]


def test_one_session_per_worker_same_scores(runner):
    texts = ["Stocks rally as inflation cools", "Worst app ever, crashes constantly", "ok", "x " * 300]
    single = MultiTaskOnnx(runner.model.artifact, threads=1)
    pair = MultiTaskOnnx(runner.model.artifact, threads=2)
    try:
        assert len(single.sessions) == 1 and len(pair.sessions) == 2
        assert single.session is single.sessions[0]
        a, b = single.predict_proba(texts), pair.predict_proba(texts)
        for task in TASKS:
            assert np.array_equal(a[task], b[task])
    finally:
        single.close()
        pair.close()


def test_empty_batch(runner):
    assert runner.classify([]) == []


def test_very_long_text_is_truncated(runner):
    tok = runner.model.tokenizer
    (ids,) = tok.encode(["word " * 100_000])
    assert len(ids) == tok.max_length
    assert runner.classify(["word " * 100_000])[0].topic.label in LABELS["topic"]


def test_head_tail_keeps_both_ends():
    ids = list(range(10))
    assert head_tail(ids, 10, 4) == ids  # fits: untouched
    assert head_tail(ids, 6, 4) == [0, 1, 2, 3, 8, 9]
    assert head_tail(ids, 6, 6) == [0, 1, 2, 3, 4, 5]  # head >= max_length: plain head cut
    assert head_tail(ids, 6, 0) == [4, 5, 6, 7, 8, 9]


def full_ids(tokenizer_file: Path, text: str) -> list[int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.no_truncation()
    tok.no_padding()
    return tok.encode(text).ids


def long_text(n_words: int) -> str:
    """Distinct words, so a token's position in the text is unambiguous."""
    return " ".join(f"w{i}" for i in range(n_words))


def test_long_text_keeps_its_first_and_last_128_tokens():
    a = load_artifact()
    assert (a.max_length, a.truncation_head) == (MAX_LENGTH, TRUNCATION_HEAD) == (256, 128)
    tok = BatchTokenizer(a.tokenizer_file, a.max_length, a.pad_id, a.truncation_head)
    text = long_text(2_000)
    full = full_ids(a.tokenizer_file, text)
    assert len(full) > 3 * MAX_LENGTH
    (ids,) = tok.encode([text])
    assert len(ids) == MAX_LENGTH
    assert ids[:TRUNCATION_HEAD] == full[:TRUNCATION_HEAD]  # [CLS] and the opening
    assert ids[TRUNCATION_HEAD:] == full[-(MAX_LENGTH - TRUNCATION_HEAD) :]  # the ending and [SEP]
    assert ids[0] == full[0] and ids[-1] == full[-1]


def test_clipping_a_huge_text_keeps_the_same_tokens():
    # clip_text drops the middle of a huge text before tokenizing; the 128 +
    # 128 tokens kept must be those of the whole text.
    a = load_artifact()
    tok = BatchTokenizer(a.tokenizer_file, a.max_length, a.pad_id, a.truncation_head)
    text = long_text(12_000)  # ~80k characters, past the clip threshold
    assert clip_text(text, a.max_length) != text
    full = full_ids(a.tokenizer_file, text)
    assert tok.encode([text]) == [head_tail(full, a.max_length, a.truncation_head)]


def test_pad_is_per_batch_and_buckets_are_sorted():
    ids, mask = pad([[1, 2, 3], [4]], pad_id=0)
    assert ids.shape == (2, 3) and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    seqs = [[0] * n for n in (9, 1, 5, 3, 7)]
    buckets = list(length_buckets(seqs, 2))
    assert buckets == [[1, 3], [2, 4], [0]]


def test_serving_tokenizer_matches_training_tokenizer():
    # Up to max_length tokens the serving ids equal the training tokenizer's
    # exactly; beyond it serving keeps head and tail (test above), not HF's head.
    transformers = pytest.importorskip("transformers")
    from inference.train.training import DEFAULT_BASE_MODEL, resolve_base_model

    a = load_artifact()
    hf = transformers.AutoTokenizer.from_pretrained(resolve_base_model(DEFAULT_BASE_MODEL))
    ours = BatchTokenizer(a.tokenizer_file, a.max_length, a.pad_id, a.truncation_head)
    texts = ["Héllo WORLD!!", "emoji 😀 and CJK 中文", "x " * (a.max_length - 2), "@user #tag http://t.co/x"]
    expected = hf(texts, truncation=False)["input_ids"]
    assert max(len(ids) for ids in expected) == a.max_length  # one text exactly at the limit
    assert ours.encode(texts) == expected


def test_missing_artifact_gives_clear_error(tmp_path):
    with pytest.raises(ArtifactError, match="train and export"):
        load_artifact(tmp_path)


def copy_artifact(tmp_path: Path, edit) -> Path:
    """The committed model.json, edited, beside links to the committed files."""
    src = load_artifact().directory
    dst = tmp_path / MODEL_NAME
    dst.mkdir()
    for f in ("tokenizer.json", "model.int8.onnx"):
        (dst / f).symlink_to(src / f)
    meta = json.loads((src / "model.json").read_text(encoding="utf-8"))
    edit(meta)
    (dst / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda m: m["tasks"]["topic"].update(labels=list(LABELS[TOPIC][:5])),
            "topic labels .* differ from the contract",
        ),
        (
            lambda m: m["tasks"]["sentiment"].update(output="probabilities"),
            "sentiment output 'probabilities' differs",
        ),
        (lambda m: m["tasks"].pop("topic"), r"tasks \['sentiment'\] differ"),
        (lambda m: m.update(max_length=512), "max_length 512 outside"),
        (lambda m: m.pop("version"), "not a moodwire model.json"),
    ],
)
def test_artifact_that_disagrees_with_the_contract_is_refused(tmp_path, edit, message):
    with pytest.raises(ArtifactError, match=message):
        load_artifact(copy_artifact(tmp_path, edit))


def test_artifact_files_and_precisions(tmp_path):
    root = copy_artifact(tmp_path, lambda m: None)
    a = load_artifact(root)
    assert a.directory == root / MODEL_NAME and a.onnx_file("int8").name == "model.int8.onnx"
    assert load_artifact(root / MODEL_NAME).directory == a.directory  # the model directory itself
    with pytest.raises(ArtifactError, match="run `moodwire export`"):
        a.onnx_file("fp32")
    with pytest.raises(ArtifactError, match="unknown precision"):
        a.onnx_file("fp16")


def test_unloadable_onnx_is_an_artifact_error(tmp_path):
    root = copy_artifact(tmp_path, lambda m: None)
    int8 = root / MODEL_NAME / "model.int8.onnx"
    int8.unlink()
    int8.write_bytes(b"not an onnx model")
    with pytest.raises(ArtifactError, match="ONNX Runtime cannot load it"):
        LocalRunner(root)
