"""The training loop on a tiny subset: loss falls, outputs are resumable."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from inference.contract import LABELS
from inference.training import TrainConfig, class_weights, length_bucketed_batches, train


def test_loss_falls_and_best_model_saved(tiny_run):
    _cfg, _, result = tiny_run
    losses = [h.train_loss for h in result.history]
    assert len(losses) == 3
    assert losses[-1] < losses[0], losses
    config = json.loads((result.best_dir / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(3)] == list(LABELS["sentiment"])
    assert (result.best_dir / "tokenizer.json").is_file()


def test_resume_continues_after_last_epoch(tiny_run):
    cfg, ds, first = tiny_run
    more = replace(cfg, epochs=4)
    result = train(more, ds)
    assert [h.epoch for h in result.history] == [1, 2, 3, 4]
    # the first three epochs were not re-run: their records are unchanged
    assert result.history[:3] == first.history


def test_resume_refuses_a_different_configuration(tiny_run):
    cfg, ds, _ = tiny_run
    with pytest.raises(ValueError, match="different configuration"):
        train(replace(cfg, lr=1e-5), ds)


def test_unknown_task_is_rejected(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown task"):
        TrainConfig(task="emotion", out_dir=str(tmp_path))


def test_length_buckets_hold_similar_lengths_and_cover_everything():
    rng = random.Random(0)
    lengths = [rng.randint(3, 120) for _ in range(1000)]
    batches = length_bucketed_batches(lengths, 16, random.Random(1), pool=10)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 20  # random batches would spread ~100 tokens


def test_class_weights_favour_rare_classes():
    w = class_weights([0] * 90 + [1] * 10, 2)
    assert w[1] > w[0]
    assert abs(sum(w) / 2 - 1.0) < 1e-9
