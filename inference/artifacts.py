"""Model artefacts on disk: one directory per task with ONNX files and metadata.

``inference/artifacts/<task>/`` holds what serving needs and is committed:
``model.int8.onnx``, ``tokenizer.json``, ``model.json`` and ``MODEL_CARD.md``.
``model.fp32.onnx`` (input to TensorRT builds and the fp32 benchmark) is made
by ``moodwire export`` and not committed (too large for the repo budget).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.contract import LABELS, TASKS

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
PRECISIONS = ("int8", "fp32")


class ArtifactError(RuntimeError):
    """A model artefact is missing or disagrees with the contract."""


@dataclass(frozen=True)
class ModelArtifact:
    task: str
    directory: Path
    labels: tuple[str, ...]
    max_length: int
    version: str
    pad_id: int
    meta: dict[str, Any]

    @property
    def tokenizer_file(self) -> Path:
        return self.directory / "tokenizer.json"

    def onnx_file(self, precision: str = "int8") -> Path:
        if precision not in PRECISIONS:
            raise ArtifactError(f"unknown precision {precision!r}: expected int8 or fp32")
        path = self.directory / f"model.{precision}.onnx"
        if not path.is_file():
            hint = " (fp32 is not committed: run `moodwire export` to make it)" if precision == "fp32" else ""
            raise ArtifactError(f"{path} not found{hint}")
        return path


def load_artifact(task: str, root: Path | str | None = None) -> ModelArtifact:
    """Read ``<root>/<task>/model.json`` and check it against the contract."""
    if task not in TASKS:
        raise ArtifactError(f"unknown task {task!r}")
    directory = Path(root or ARTIFACTS_DIR) / task
    meta_file = directory / "model.json"
    if not meta_file.is_file():
        raise ArtifactError(f"{meta_file} not found: train and export the {task} model first")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    labels = tuple(meta["labels"])
    if labels != LABELS[task]:
        raise ArtifactError(
            f"{meta_file}: labels {list(labels)} differ from the contract {list(LABELS[task])}"
        )
    if meta.get("task") != task:
        raise ArtifactError(f"{meta_file}: task is {meta.get('task')!r}, expected {task!r}")
    return ModelArtifact(
        task=task,
        directory=directory,
        labels=labels,
        max_length=int(meta["max_length"]),
        version=str(meta["version"]),
        pad_id=int(meta.get("pad_id", 0)),
        meta=meta,
    )
