"""Shared fixtures: a tiny trained + exported model made once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

OUTPUT = Path(__file__).resolve().parent.parent / "test-output"


@pytest.fixture(scope="module")
def broker():
    """A real tansu broker on a free loopback port, one per test module."""
    from streams.broker import EmbeddedBroker, free_port

    with EmbeddedBroker(port=free_port()) as b:
        yield b


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    """Train the sentiment model on a 48-example subset for 3 short epochs."""
    from inference.training import TrainConfig, load_dataset, train

    out = tmp_path_factory.mktemp("tiny-run")
    cfg = TrainConfig(
        task="sentiment",
        out_dir=str(out),
        epochs=3,
        batch_size=8,
        lr=3e-4,
        limit=48,
        patience=10,
        warmup_frac=0.0,
    )
    ds = load_dataset(cfg)
    result = train(cfg, ds)
    return cfg, ds, result
