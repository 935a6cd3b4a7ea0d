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
    from streams.embedded.broker import EmbeddedBroker, free_port

    with EmbeddedBroker(port=free_port()) as b:
        yield b


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    """Train the multi-task model on 16 examples per domain for 3 short epochs."""
    from inference.train.training import DOMAINS, TrainConfig, prepare, train

    out = tmp_path_factory.mktemp("tiny-run")
    cfg = TrainConfig(
        out_dir=str(out),
        epochs=3,
        batch_size=8,
        lr=3e-4,
        limit=16,
        patience=10,
        warmup_frac=0.0,
        domain_weights=dict.fromkeys(DOMAINS, 1.0),
        device="cpu",
    )
    arrays = prepare(cfg)
    result = train(cfg, arrays)
    return cfg, arrays, result
