"""Serving-side tokenization: per-batch dynamic padding and length bucketing.

Uses the Rust ``tokenizers`` library directly (no transformers import on the
serving path).  The tokenizer file is the one saved with the fine-tuned model,
so ids match training exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer


def head_tail(ids: Sequence[int], max_length: int, head: int) -> list[int]:
    """Keep the first ``head`` and the last ``max_length - head`` tokens.

    A review's verdict is often in its last sentences and a news article's
    topic in its first, so a long text keeps both ends ([CLS] stays first,
    [SEP] last).  ``head >= max_length`` is plain head truncation.
    """
    if len(ids) <= max_length:
        return list(ids)
    tail = max_length - min(head, max_length)
    return list(ids[: max_length - tail]) + (list(ids[-tail:]) if tail else [])


def clip_text(text: str, max_length: int) -> str:
    """Cut a huge text before tokenizing it (tokenizing 5 MB costs seconds).

    A WordPiece token spans at most ~100 characters, so ``max_length * 100``
    characters from each end hold every token ``head_tail`` can keep.
    """
    cap = max_length * 100
    return text if len(text) <= 2 * cap else f"{text[:cap]} {text[-cap:]}"


class BatchTokenizer:
    """Tokenize texts, head+tail truncated to ``max_length``, no padding."""

    def __init__(self, tokenizer_file: Path | str, max_length: int, pad_id: int = 0, head: int = 0) -> None:
        self._tok = Tokenizer.from_file(str(tokenizer_file))
        self._tok.no_padding()
        self._tok.no_truncation()
        self.max_length = max_length
        self.head = head or max_length
        self.pad_id = pad_id

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        clipped = [clip_text(t, self.max_length) for t in texts]
        return [head_tail(enc.ids, self.max_length, self.head) for enc in self._tok.encode_batch(clipped)]


def pad(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pad to the longest sequence in this batch (never to a fixed maximum)."""
    width = max((len(s) for s in seqs), default=0)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = s
        mask[row, : len(s)] = 1
    return ids, mask


def length_buckets(seqs: Sequence[Sequence[int]], max_batch: int) -> Iterator[list[int]]:
    """Indices of ``seqs`` grouped by similar length, at most ``max_batch`` each.

    Sorting before splitting means a 3-token headline is never padded to the
    width of a 128-token review that happened to arrive in the same batch.
    """
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for start in range(0, len(order), max_batch):
        yield order[start : start + max_batch]
