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


class BatchTokenizer:
    """Tokenize texts with truncation to ``max_length`` and no padding."""

    def __init__(self, tokenizer_file: Path | str, max_length: int, pad_id: int = 0) -> None:
        self._tok = Tokenizer.from_file(str(tokenizer_file))
        self._tok.no_padding()
        self._tok.enable_truncation(max_length)
        self.max_length = max_length
        self.pad_id = pad_id

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        # Truncation happens after tokenizing the whole text, so a 5 MB text
        # would cost seconds: cut it first.  A WordPiece token spans at most
        # ~100 characters, so the first max_length tokens survive the cut.
        cap = self.max_length * 100
        return [enc.ids for enc in self._tok.encode_batch([t[:cap] for t in texts])]


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
