"""Model artefact on disk: the one multi-task model's ONNX files and metadata.

``inference/artifacts/moodwire/`` holds what serving needs and is committed:
``model.int8.onnx`` (static int8: calibrated activation scales, so a text's
scores never depend on its batch-mates), ``tokenizer.json``, ``model.json``
and ``MODEL_CARD.md``.  ``model.fp32.onnx`` (input to TensorRT builds and the
fp32 benchmark) is made by ``moodwire export`` and not committed (too large
for the repo budget).  ``load_artifact`` checks ``model.json`` against
``inference/serve/contract.py`` so a label index means the same thing everywhere.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.serve.contract import LABELS, MAX_LENGTH, MODEL_NAME, OUTPUTS, TASKS

ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "artifacts"
PRECISIONS = ("int8", "fp32")


def sha256(path: Path) -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ArtifactError(RuntimeError):
    """A model artefact is missing or disagrees with the contract."""


@dataclass(frozen=True)
class ModelArtifact:
    """The multi-task model: one encoder, one probability output per task."""

    directory: Path
    version: str
    labels: dict[str, tuple[str, ...]]  # task -> labels in index order
    outputs: dict[str, str]  # task -> ONNX / Triton output tensor name
    max_length: int
    truncation_head: int  # tokens kept from a long text's start (the rest from its end)
    pad_id: int
    meta: dict[str, Any]

    @property
    def tokenizer_file(self) -> Path:
        return self.directory / "tokenizer.json"

    @property
    def model_versions(self) -> dict[str, str]:
        # One model scores both tasks; scored events keep one entry per task
        # so stored rows keep their shape.
        return {task: self.version for task in self.labels}

    @property
    def serve(self) -> str:
        """The precision model.json says to serve (int8 unless it says otherwise)."""
        return str(self.meta.get("serve", "int8"))

    def onnx_file(self, precision: str = "int8") -> Path:
        if precision not in PRECISIONS:
            raise ArtifactError(f"unknown precision {precision!r}: expected int8 or fp32")
        name = self.meta.get("files", {}).get(precision, f"model.{precision}.onnx")
        path = self.directory / name
        if not path.is_file():
            hint = " (fp32 is not committed: run `moodwire export` to make it)" if precision == "fp32" else ""
            raise ArtifactError(f"{path} not found{hint}")
        return path


def model_name(language: str = "en") -> str:
    """Artefact directory of the model serving ``language``: ``moodwire``, ``moodwire-zh``."""
    return MODEL_NAME if language == "en" else f"{MODEL_NAME}-{language}"


def artifact_directory(root: Path | str | None = None, name: str = MODEL_NAME) -> Path:
    """``<root>/<name>``; a root that is itself a model directory is taken as is."""
    base = Path(root or ARTIFACTS_DIR)
    if not (base / name).is_dir() and (base / "model.json").is_file():
        return base
    return base / name


def load_artifact(root: Path | str | None = None, name: str = MODEL_NAME) -> ModelArtifact:
    """Read ``<root>/<name>/model.json`` and check it against the contract."""
    directory = artifact_directory(root, name)
    meta_file = directory / "model.json"
    if not meta_file.is_file():
        raise ArtifactError(f"{meta_file} not found: train and export the {name} model first")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        tasks = meta["tasks"]
        version = str(meta["version"])
        max_length = int(meta["max_length"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(
            f"{meta_file}: not a {MODEL_NAME} model.json ({type(exc).__name__}: {exc})"
        ) from None
    if set(tasks) != set(TASKS):
        raise ArtifactError(f"{meta_file}: tasks {sorted(tasks)} differ from the contract {sorted(TASKS)}")
    labels: dict[str, tuple[str, ...]] = {}
    outputs: dict[str, str] = {}
    for task in TASKS:
        spec = tasks[task]
        labels[task] = tuple(spec.get("labels", ()))
        if labels[task] != LABELS[task]:
            raise ArtifactError(
                f"{meta_file}: {task} labels {list(labels[task])} differ from the contract {list(LABELS[task])}"
            )
        outputs[task] = str(spec.get("output"))
        if outputs[task] != OUTPUTS[task]:
            raise ArtifactError(
                f"{meta_file}: {task} output {outputs[task]!r} differs from the contract {OUTPUTS[task]!r}"
            )
    # Serving pads per batch up to max_length; the TensorRT profiles and the
    # Triton contract are built for MAX_LENGTH, so a longer model cannot serve.
    if not 1 <= max_length <= MAX_LENGTH:
        raise ArtifactError(f"{meta_file}: max_length {max_length} outside 1..{MAX_LENGTH} (the contract)")
    return ModelArtifact(
        directory=directory,
        version=version,
        labels=labels,
        outputs=outputs,
        max_length=max_length,
        truncation_head=int(meta.get("truncation_head", max_length)),
        pad_id=int(meta.get("pad_id", 0)),
        meta=meta,
    )
