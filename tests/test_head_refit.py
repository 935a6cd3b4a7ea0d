"""moodwire refit-head: one head refitted on the frozen encoder, nothing else changed."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import pytest

from inference.serve.contract import SENTIMENT, TOPIC


@pytest.mark.slow
def test_refit_changes_only_the_chosen_head(tiny_run, tmp_path):
    import torch

    from inference.export.to_onnx import _refit_lines
    from inference.train import multitask
    from inference.train.head_refit import RefitConfig, pooled, refit
    from inference.train.training import unpack

    cfg, arrays, _tiny = tiny_run
    run, out = Path(cfg.out_dir), tmp_path / "refit"
    summary = refit(RefitConfig(run_dir=str(run), out_dir=str(out), task=TOPIC, max_per_domain=12))

    # the refit is the better read-out of the frozen encoder on the data it was fitted to
    assert summary["train_loss_after"] < summary["train_loss_before"]
    # only domains with a topic label and a weight, each capped
    assert set(summary["examples"]) == {"news", "bbc", "imdb", "rt", "drugs"}
    assert max(summary["examples"].values()) <= 12
    old = torch.load(run / "best" / multitask.HEADS_FILE, weights_only=True)
    new = torch.load(out / "best" / multitask.HEADS_FILE, weights_only=True)
    for key in (f"{SENTIMENT}.weight", f"{SENTIMENT}.bias"):
        assert torch.equal(old[key], new[key])
    assert not torch.allclose(old[f"{TOPIC}.weight"], new[f"{TOPIC}.weight"])
    assert filecmp.cmp(run / "best" / "model.safetensors", out / "best" / "model.safetensors", shallow=False)
    for key in ("news_sentiment_f1", "tweets_sentiment_f1", "reviews_polarity_acc"):
        assert summary["val_before"][key] == summary["val_after"][key]

    # the saved model predicts with the new head: full forward pass == new head on pooled vectors
    model = multitask.load(out / "best")
    rows = np.arange(20)
    x = pooled(model, arrays, "val", rows)
    encoded = unpack(arrays, "val")[:20]
    from inference.serve.tokenization import pad

    ids, mask = pad(encoded, int(arrays["pad_id"]))
    with torch.inference_mode():
        logits = model(torch.from_numpy(ids), torch.from_numpy(mask))[TOPIC].numpy()
    expected = x @ new[f"{TOPIC}.weight"].numpy().T + new[f"{TOPIC}.bias"].numpy()
    assert np.allclose(logits, expected, atol=1e-4)

    saved = json.loads((out / "config.json").read_text())
    assert saved["head_refit"]["task"] == TOPIC and saved["max_length"] == cfg.max_length
    history = json.loads((out / "history.json").read_text())
    assert history[-1]["epoch"] == "topic head refit" and history[-1]["val"] == summary["val_after"]
    assert "moodwire refit-head --task topic" in _refit_lines(saved)[0]

    with pytest.raises(ValueError, match="must differ"):
        refit(RefitConfig(run_dir=str(out), out_dir=str(out)))
    with pytest.raises(FileNotFoundError, match="moodwire train"):
        refit(RefitConfig(run_dir=str(tmp_path / "none"), out_dir=str(tmp_path / "x")))
