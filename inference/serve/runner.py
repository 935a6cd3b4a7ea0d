"""The runner interface and its local ONNX Runtime implementation.

A runner takes a batch of texts and returns, for each text, the sentiment and
topic label, their probabilities and the model versions.  The local runner
and the Triton client both implement ``Runner``, so the CLI and the stream
workers do not care where the model runs.  Locally, ``MultiTaskOnnx`` runs the
one multi-task ONNX graph: each text costs one encoder pass for both tasks.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inference.serve.artifacts import ArtifactError, ModelArtifact, load_artifact
from inference.serve.contract import ATTENTION_MASK, INPUT_IDS, MODEL_NAME, SENTIMENT, TASKS, TOPIC
from inference.serve.tokenization import BatchTokenizer


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
    """Batch of texts in; per text, both labels with probabilities out.

    ``langs`` (one language tag per text) matters to a runner that routes by language
    (inference/serve/routing.py); a single-model runner scores every text with its one model.
    """

    @property
    def model_versions(self) -> dict[str, str]: ...

    def classify(self, texts: Sequence[str], langs: Sequence[str] | None = None) -> list[Classification]: ...

    async def aclassify(
        self, texts: Sequence[str], langs: Sequence[str] | None = None
    ) -> list[Classification]: ...

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


class MultiTaskOnnx:
    """The multi-task ONNX model with its tokenizer: one encoder pass per text, both tasks.

    Every text runs **alone** (a batch of one, unpadded).  The int8 graph
    quantizes activations with scales computed from each forward pass, so a
    text that shared a pass with others would get scores that depend on
    them; alone, its scores depend on its own tokens only, in any batch, at
    any batch size, in any order (tests/test_determinism.py), and no pass
    pays for padding.  Throughput comes from running texts side by side:
    one single-threaded session per core, longest texts first.  Measured on
    2 cores: 2.5x the old two-model batched throughput on headlines at 64
    (docs/models.md).
    """

    def __init__(self, artifact: ModelArtifact, precision: str = "int8", threads: int = 0) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # One thread per session and one session per core: small single-text
        # GEMMs parallelise badly inside a session, well across sessions.
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.artifact = artifact
        self.precision = precision
        self.onnx_file = onnx_file = artifact.onnx_file(precision)
        workers = threads or os.cpu_count() or 1
        try:
            self.sessions: list[Any] = [
                ort.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])
                for _ in range(workers)
            ]
        except Exception as exc:  # ORT's own exception types; the CLI wants one line
            detail = " ".join(str(exc).split())[:200]
            raise ArtifactError(f"{onnx_file}: ONNX Runtime cannot load it: {detail}") from None
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="onnx") if workers > 1 else None
        self.tokenizer = BatchTokenizer(
            artifact.tokenizer_file, artifact.max_length, artifact.pad_id, artifact.truncation_head
        )
        self.outputs = dict(artifact.outputs)  # task -> output tensor name
        self._check_graph()

    @property
    def session(self) -> Any:
        return self.sessions[0]

    def _check_graph(self) -> None:
        name = self.onnx_file
        inputs = {i.name for i in self.session.get_inputs()}
        if inputs != {INPUT_IDS, ATTENTION_MASK}:
            raise ArtifactError(f"{name}: inputs {sorted(inputs)}, expected {INPUT_IDS} and {ATTENTION_MASK}")
        shapes = {o.name: o.shape for o in self.session.get_outputs()}
        for task, out in self.outputs.items():
            if out not in shapes:
                raise ArtifactError(f"{name}: no output {out!r} for {task} (outputs: {sorted(shapes)})")
            n = shapes[out][-1]
            if isinstance(n, int) and n != len(self.artifact.labels[task]):
                raise ArtifactError(
                    f"{name}: {out} has {n} classes but {task} has {len(self.artifact.labels[task])} labels"
                )

    def run_encoded(self, encoded: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """Token ids (one list per text) -> {task: float32 [len(encoded), classes]}."""
        probs = {
            task: np.zeros((len(encoded), len(self.artifact.labels[task])), dtype=np.float32)
            for task in self.outputs
        }
        names = list(self.outputs.values())
        # Longest first, taken from a shared iterator: the workers finish
        # together instead of one being left with the longest text.
        order = iter(sorted(range(len(encoded)), key=lambda i: -len(encoded[i])))
        lock = threading.Lock()

        def work(session: Any) -> None:
            while True:
                with lock:
                    i = next(order, None)
                if i is None:
                    return
                ids = np.asarray([encoded[i]], dtype=np.int64)
                outs = session.run(names, {INPUT_IDS: ids, ATTENTION_MASK: np.ones_like(ids)})
                for task, out in zip(self.outputs, outs, strict=True):
                    probs[task][i] = out[0]

        if self._pool is None or len(encoded) < 2:
            work(self.sessions[0])
        else:
            list(self._pool.map(work, self.sessions[: len(encoded)]))
        return probs

    def predict_proba(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Texts -> {task: float32 [len(texts), classes]}, rows in input order."""
        return self.run_encoded(self.tokenizer.encode(texts))

    def close(self) -> None:
        # Drops the sessions (and their arenas) now rather than at garbage collection.
        self.sessions.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False)


class LocalRunner:
    """The multi-task model in-process with ONNX Runtime on the CPU."""

    def __init__(
        self,
        artifacts: Path | str | None = None,
        precision: str = "int8",
        threads: int = 0,
        name: str = MODEL_NAME,
    ) -> None:
        self.model = MultiTaskOnnx(load_artifact(artifacts, name), precision, threads)

    @property
    def model_versions(self) -> dict[str, str]:
        return self.model.artifact.model_versions

    def classify(self, texts: Sequence[str], langs: Sequence[str] | None = None) -> list[Classification]:
        if not texts:
            return []
        artifact = self.model.artifact
        probs = self.model.predict_proba(texts)
        return combine(
            {task: predictions(probs[task], artifact.labels[task], artifact.version) for task in TASKS}
        )

    async def aclassify(
        self, texts: Sequence[str], langs: Sequence[str] | None = None
    ) -> list[Classification]:
        # ONNX Runtime releases the GIL, so a worker thread keeps the loop free.
        return await asyncio.to_thread(self.classify, texts)

    def close(self) -> None:
        self.model.close()
