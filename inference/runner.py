"""The runner interface and its local ONNX Runtime implementation.

A runner takes a batch of texts and returns, for each text, the sentiment and
topic label, their probabilities and the model versions.  The local runner
and the Triton client both implement ``Runner``, so the CLI and the stream
workers do not care where the models run.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inference.artifacts import ModelArtifact, load_artifact
from inference.contract import ATTENTION_MASK, INPUT_IDS, SENTIMENT, TASKS, TOPIC
from inference.tokenization import BatchTokenizer, length_buckets, pad


@dataclass(frozen=True)
class Prediction:
    label: str
    scores: dict[str, float]
    model_version: str


@dataclass(frozen=True)
class Classification:
    sentiment: Prediction
    topic: Prediction

    def to_dict(self) -> dict[str, Any]:
        return {
            "sentiment": self.sentiment.label,
            "sentiment_scores": self.sentiment.scores,
            "topic": self.topic.label,
            "topic_scores": self.topic.scores,
            "model_versions": {
                SENTIMENT: self.sentiment.model_version,
                TOPIC: self.topic.model_version,
            },
        }


class Runner(Protocol):
    """Batch of texts in; per text, both labels with probabilities out."""

    @property
    def model_versions(self) -> dict[str, str]: ...

    def classify(self, texts: Sequence[str]) -> list[Classification]: ...

    async def aclassify(self, texts: Sequence[str]) -> list[Classification]: ...

    def close(self) -> None: ...


def predictions(probs: np.ndarray, labels: Sequence[str], version: str) -> list[Prediction]:
    """Turn a [batch, classes] probability matrix into Predictions."""
    out = []
    for row in probs:
        scores = {label: round(float(p), 6) for label, p in zip(labels, row, strict=True)}
        out.append(Prediction(labels[int(row.argmax())], scores, version))
    return out


def combine(results: dict[str, list[Prediction]]) -> list[Classification]:
    return [
        Classification(sentiment=s, topic=t) for s, t in zip(results[SENTIMENT], results[TOPIC], strict=True)
    ]


class OnnxClassifier:
    """One task's ONNX model with its tokenizer."""

    def __init__(self, artifact: ModelArtifact, precision: str = "int8", threads: int = 0) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # Intra-op threads = cores: one batch at a time uses the whole machine;
        # inter-op parallelism buys nothing for a sequential encoder graph.
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        # No spin-waiting after a run: the two models run back to back on the
        # same cores, and a finished session's spinning threads would steal
        # them from the next one (measured: ~2x slower on 2 cores).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.artifact = artifact
        self.precision = precision
        self.session = ort.InferenceSession(
            str(artifact.onnx_file(precision)), opts, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = BatchTokenizer(artifact.tokenizer_file, artifact.max_length, artifact.pad_id)
        n_out = self.session.get_outputs()[0].shape[-1]
        if isinstance(n_out, int) and n_out != len(artifact.labels):
            raise ValueError(f"{artifact.task} model has {n_out} outputs but {len(artifact.labels)} labels")

    def run_encoded(self, encoded: Sequence[Sequence[int]], max_batch: int) -> np.ndarray:
        probs = np.zeros((len(encoded), len(self.artifact.labels)), dtype=np.float32)
        for rows in length_buckets(encoded, max_batch):
            ids, mask = pad([encoded[i] for i in rows], self.artifact.pad_id)
            (out,) = self.session.run(None, {INPUT_IDS: ids, ATTENTION_MASK: mask})
            probs[rows] = out
        return probs

    def predict_proba(self, texts: Sequence[str], max_batch: int = 32) -> np.ndarray:
        return self.run_encoded(self.tokenizer.encode(texts), max_batch)


class LocalRunner:
    """Both classifiers in-process with ONNX Runtime on the CPU."""

    def __init__(
        self,
        artifacts: Path | str | None = None,
        precision: str = "int8",
        threads: int = 0,
        max_batch: int = 32,
    ) -> None:
        self.max_batch = max_batch
        self.models = {
            task: OnnxClassifier(load_artifact(task, artifacts), precision, threads) for task in TASKS
        }

    @property
    def model_versions(self) -> dict[str, str]:
        return {task: m.artifact.version for task, m in self.models.items()}

    def classify(self, texts: Sequence[str]) -> list[Classification]:
        if not texts:
            return []
        results = {}
        for task, model in self.models.items():
            probs = model.predict_proba(texts, self.max_batch)
            results[task] = predictions(probs, model.artifact.labels, model.artifact.version)
        return combine(results)

    async def aclassify(self, texts: Sequence[str]) -> list[Classification]:
        # ONNX Runtime releases the GIL, so a worker thread keeps the loop free.
        return await asyncio.to_thread(self.classify, texts)

    def close(self) -> None:
        self.models.clear()
