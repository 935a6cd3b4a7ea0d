"""A text's scores do not depend on its batch-mates: one text, one answer.

The served int8 model is dynamically quantized: activation scales are
computed from each forward pass.  The runner therefore runs every text alone
(a batch of one, unpadded; texts side by side on single-threaded sessions),
so a text's scores are a function of its own tokens only.  500 mixed texts
(250 tweets from the sentiment test split, 250 BBC headline views from the
topic test split, interleaved so every batch mixes kinds and lengths) are
classified alone, in batches of 7, in batches of 64, and shuffled among 500
other texts (full articles cut to max_length, headlines, tweets) in batches
of 64: every label must be identical and every probability within
``TOLERANCE`` of the text scored alone.  ``tests/test_triton_server.py``
checks the same texts through Triton against the same reference.  About
15 s on 2 cores.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pytest

from inference.serve.contract import TASKS
from inference.serve.runner import Classification

TOLERANCE = 0.01
N_EACH = 250


def determinism_texts() -> tuple[list[str], list[str]]:
    """500 texts to check, and 500 others to hide them among."""
    from inference.data.datasets import headline_view, load_sentiment, load_topic

    tweets = [e.text for e in load_sentiment().test]
    articles = [e.text for e in load_topic().test]
    headlines = [headline_view(a) for a in articles]
    assert len(tweets) >= 2 * N_EACH and len(headlines) >= N_EACH, "test splits smaller than expected"
    texts = [t for pair in zip(tweets[:N_EACH], headlines[:N_EACH], strict=True) for t in pair]
    # The held-out articles (~70, most cut at max_length) are the longest
    # possible batch-mates; more of them would only slow the test down.
    others = articles[N_EACH:] + headlines[N_EACH:] + tweets[2 * N_EACH :]
    return texts, others[: 2 * N_EACH]


def in_batches(classify: Callable[[list[str]], list[Classification]], texts: Sequence[str], size: int):
    return [c for i in range(0, len(texts), size) for c in classify(list(texts[i : i + size]))]


def shuffled_among(
    classify: Callable[[list[str]], list[Classification]],
    texts: Sequence[str],
    others: Sequence[str],
    size: int,
    seed: int = 7,
) -> list[Classification]:
    """Classify ``texts`` mixed at random positions into ``others``; results for ``texts`` only."""
    rows = [(True, i) for i in range(len(texts))] + [(False, i) for i in range(len(others))]
    random.Random(seed).shuffle(rows)
    mixed = [texts[i] if mine else others[i] for mine, i in rows]
    scored = in_batches(classify, mixed, size)
    out: list[Classification | None] = [None] * len(texts)
    for (mine, i), c in zip(rows, scored, strict=True):
        if mine:
            out[i] = c
    assert all(c is not None for c in out)
    return out  # type: ignore[return-value]


def differences(reference: Sequence[Classification], other: Sequence[Classification]) -> tuple[int, float]:
    """(number of texts whose label changed for any task, largest probability change)."""
    flips, worst = 0, 0.0
    for a, b in zip(reference, other, strict=True):
        for task in TASKS:
            p, q = getattr(a, task), getattr(b, task)
            flips += p.label != q.label
            worst = max(worst, max(abs(p.scores[k] - q.scores[k]) for k in p.scores))
    return flips, worst


def assert_same_scores(reference, other, what: str) -> None:
    flips, worst = differences(reference, other)
    print(f"\n{what}: {flips} label changes, max prob diff {worst:.2e} on {len(reference)} texts")
    assert flips == 0, f"{what}: {flips} labels differ from the text classified alone"
    assert worst <= TOLERANCE, f"{what}: a probability moved by {worst:.4f} (> {TOLERANCE})"


@pytest.fixture(scope="module")
def texts() -> tuple[list[str], list[str]]:
    return determinism_texts()


@pytest.fixture(scope="module")
def runner():
    from inference.serve.runner import LocalRunner

    r = LocalRunner()
    yield r
    r.close()


@pytest.fixture(scope="module")
def alone(runner, texts) -> list[Classification]:
    return in_batches(runner.classify, texts[0], 1)


@pytest.mark.parametrize("size", [7, 64])
def test_batch_size_does_not_change_scores(runner, texts, alone, size):
    assert_same_scores(alone, in_batches(runner.classify, texts[0], size), f"local batches of {size}")


def test_batch_mates_do_not_change_scores(runner, texts, alone):
    mixed = shuffled_among(runner.classify, texts[0], texts[1], 64)
    assert_same_scores(alone, mixed, "local, shuffled among 500 others, batches of 64")


def test_determinism_texts_are_mixed(runner, texts):
    mine, others = texts
    assert len(mine) == len(others) == 2 * N_EACH
    assert len(set(mine)) > 0.95 * len(mine)
    # Batch-mates as long as the model allows (dozens of them) must not matter either.
    tokenizer = runner.model.tokenizer
    assert sum(len(ids) == tokenizer.max_length for ids in tokenizer.encode(others)) >= 20
    assert max(len(ids) for ids in tokenizer.encode(mine)) < tokenizer.max_length


def test_chinese_model_scores_do_not_depend_on_batch_mates():
    """The same for the Chinese model: our 140 Chinese sample texts (and 60 English ones) alone, in
    batches of 7 and 64, and shuffled among the 500 English and Chinese-heavy others."""
    import json

    from inference.evaluation.bench import ZH_SAMPLES
    from inference.serve.artifacts import model_name
    from inference.serve.runner import LocalRunner

    zh = [json.loads(line)["text"] for line in ZH_SAMPLES.read_text(encoding="utf-8").splitlines() if line]
    mine, others = determinism_texts()
    checked = zh + mine[:60]
    hide_among = [t * 6 for t in zh[:60]] + others[:200]  # long Chinese texts, cut at max_length
    runner = LocalRunner(name=model_name("zh"))
    try:
        alone = in_batches(runner.classify, checked, 1)
        for size in (7, 64):
            assert_same_scores(alone, in_batches(runner.classify, checked, size), f"zh batches of {size}")
        mixed = shuffled_among(runner.classify, checked, hide_among, 64)
        assert_same_scores(alone, mixed, "zh, shuffled among 260 others, batches of 64")
    finally:
        runner.close()
