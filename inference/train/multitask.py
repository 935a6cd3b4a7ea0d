"""The multi-task classifier: one shared encoder, a sentiment head and a topic head.

Each text runs through the encoder once; masked mean pooling (the pooling the
sentence-transformers base models were trained with) feeds two linear heads.
A saved model is a directory: the encoder and tokenizer in Hugging Face
format (``save_pretrained``), the heads in ``heads.pt`` and the label sets in
``multitask.json``, so any Hugging Face encoder id or path can be the base.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from inference.serve.contract import LABELS, OUTPUTS, TASKS

HEADS_FILE = "heads.pt"
META_FILE = "multitask.json"


class MultiTaskClassifier(torch.nn.Module):
    def __init__(self, encoder: Any, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        hidden = int(encoder.config.hidden_size)
        self.dropout = torch.nn.Dropout(dropout)
        self.heads = torch.nn.ModuleDict({task: torch.nn.Linear(hidden, len(LABELS[task])) for task in TASKS})

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per task."""
        pooled = self.dropout(self.pooled(input_ids, attention_mask))
        return {task: head(pooled) for task, head in self.heads.items()}


class WithSoftmax(torch.nn.Module):
    """Export view: token ids in, one softmax tensor per task out (contract order)."""

    def __init__(self, model: MultiTaskClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = self.model(input_ids, attention_mask)
        return tuple(torch.softmax(logits[task], dim=-1) for task in TASKS)


OUTPUT_NAMES = tuple(OUTPUTS[task] for task in TASKS)


def build(base: str, eager: bool = False) -> MultiTaskClassifier:
    """Fresh heads on a pretrained encoder (any Hugging Face id or path)."""
    from transformers import AutoModel

    # fp32 whatever the checkpoint's dtype (an fp16 copy of the base loads as fp32).
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if eager:
        kwargs["attn_implementation"] = "eager"
    return MultiTaskClassifier(AutoModel.from_pretrained(base, **kwargs))


def save(model: MultiTaskClassifier, tokenizer: Any, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    save_heads(model, directory)
    meta = {"labels": {task: list(LABELS[task]) for task in TASKS}, "pooling": "mean"}
    (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def save_heads(model: MultiTaskClassifier, directory: Path) -> None:
    torch.save({k: v.detach().cpu() for k, v in model.heads.state_dict().items()}, directory / HEADS_FILE)


def load(directory: Path, eager: bool = False) -> MultiTaskClassifier:
    """A saved multi-task model; refuses one whose label sets differ from the contract."""
    meta_file = Path(directory) / META_FILE
    if not meta_file.is_file():
        raise FileNotFoundError(f"{directory} holds no multi-task model ({META_FILE} missing)")
    meta = json.loads(meta_file.read_text())
    for task in TASKS:
        if tuple(meta["labels"].get(task, ())) != LABELS[task]:
            raise ValueError(
                f"{directory}: {task} labels {meta['labels'].get(task)} differ from the contract {list(LABELS[task])}"
            )
    model = build(str(directory), eager=eager)
    model.heads.load_state_dict(torch.load(Path(directory) / HEADS_FILE, weights_only=True))
    return model.eval()
