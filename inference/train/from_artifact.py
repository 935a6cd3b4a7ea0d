"""A served artefact back as a saved multi-task model, so training can continue from it.

Only the int8 ONNX file of a served model is committed.  ``materialize``
dequantizes it (``teacher.recover_state``), puts the weights into the base
model's architecture with the artefact's (trimmed) vocabulary and writes a
saved model (``multitask.save``: encoder, tokenizer, heads).  Passed as
``--base-model`` (or ``base_model``), a saved model trains on with its own
heads instead of fresh ones.  Quantization noise is small (int8 per channel)
and the first steps of fine-tuning absorb it.

    python -m inference.train.from_artifact inference/artifacts/moodwire-zh runs/zh-served
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def materialize(artifact_dir: Path | str, out_dir: Path | str) -> Path:
    """Write ``out_dir`` as a saved multi-task model holding ``artifact_dir``'s served weights."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from inference.serve.artifacts import load_artifact
    from inference.train import multitask
    from inference.train.teacher import recover_state
    from inference.train.training import resolve_base_model

    artifact_dir, out = Path(artifact_dir), Path(out_dir)
    art = load_artifact(artifact_dir.parent, artifact_dir.name)
    meta = json.loads((artifact_dir / "model.json").read_text())
    base = resolve_base_model(meta["base_model"])
    state = recover_state(art.onnx_file("int8"))
    config = AutoConfig.from_pretrained(base)
    config.vocab_size = int(state["encoder.embeddings.word_embeddings.weight"].shape[0])
    model = multitask.MultiTaskClassifier(AutoModel.from_config(config))
    keys = model.load_state_dict(state, strict=False)
    missing = [k for k in keys.missing_keys if ".pooler." not in k]
    if missing or keys.unexpected_keys:
        raise ValueError(
            f"{artifact_dir}: weights do not fit {base}: missing {missing[:3]}, extra {keys.unexpected_keys[:3]}"
        )
    # The artefact's own tokenizer (a trimmed vocabulary for Chinese), with the base's special tokens.
    base_tok = AutoTokenizer.from_pretrained(base)
    tokenizer = base_tok.__class__(tokenizer_file=str(art.tokenizer_file), **base_tok.special_tokens_map)
    if len(tokenizer) != config.vocab_size:
        raise ValueError(
            f"{artifact_dir}: tokenizer has {len(tokenizer)} pieces, embeddings {config.vocab_size}"
        )
    multitask.save(model.float(), tokenizer, out)
    (out / "source.json").write_text(
        json.dumps({"artifact": str(artifact_dir), "version": meta["version"]}) + "\n"
    )
    return out


if __name__ == "__main__":
    print(materialize(sys.argv[1], sys.argv[2]))
