"""Trim a Unigram (SentencePiece) vocabulary to the pieces a model needs.

multilingual-e5-small has 250,002 pieces for about 100 languages: its word
embeddings alone are 96M of its 118M parameters.  The Chinese model keeps

- every piece that tokenizing its training and validation texts produced
  (Chinese and English: the topic head learned from English),
- every piece that is one CJK character (with or without the word-start
  mark), so any Chinese text still segments into known pieces, and
- the special tokens, at their old ids (0-3).

Pieces keep their scores and their order, so the trimmed tokenizer is the
same Unigram model over fewer pieces: a text whose best segmentation uses
only kept pieces is tokenized exactly as before (Viterbi over a subset finds
the same best path when that path is in the subset); other texts get the
best segmentation among the kept pieces.  ``trim_tokenizer`` returns the new
tokenizer.json and the old id of every new id, and ``trim_embeddings`` takes
the same rows from the embedding table.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

import numpy as np

WORD_START = "\u2581"


def is_cjk_char(ch: str) -> bool:
    o = ord(ch)
    return (
        0x4E00 <= o <= 0x9FFF  # CJK unified ideographs
        or 0x3400 <= o <= 0x4DBF  # extension A
        or 0xF900 <= o <= 0xFAFF  # compatibility ideographs
        or 0x3000 <= o <= 0x303F  # CJK punctuation
        or 0xFF00 <= o <= 0xFFEF  # full-width forms
    )


def single_cjk_pieces(tokenizer_json: dict[str, Any]) -> set[int]:
    out = set()
    for i, (piece, _score) in enumerate(tokenizer_json["model"]["vocab"]):
        core = piece.removeprefix(WORD_START)
        if len(core) == 1 and is_cjk_char(core):
            out.add(i)
    return out


def used_pieces(tokenizer_json: dict[str, Any], texts: Iterable[str], batch: int = 4096) -> set[int]:
    """Ids that tokenizing ``texts`` produces."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(json.dumps(tokenizer_json))
    texts = list(texts)
    used: set[int] = set()
    for start in range(0, len(texts), batch):
        for enc in tok.encode_batch(texts[start : start + batch], add_special_tokens=False):
            used.update(enc.ids)
    return used


def trim_tokenizer(tokenizer_json: dict[str, Any], keep: Iterable[int]) -> tuple[dict[str, Any], np.ndarray]:
    """(tokenizer.json over the kept pieces, old id of each new id).  Special tokens are always kept."""
    model = tokenizer_json["model"]
    if model.get("type") != "Unigram":
        raise ValueError(f"only Unigram vocabularies can be trimmed, not {model.get('type')}")
    vocab = model["vocab"]
    specials = {t["id"] for t in tokenizer_json.get("added_tokens", [])}
    unk = model.get("unk_id")
    keep_set = set(keep) | specials | ({unk} if unk is not None else set())
    bad = [i for i in keep_set if not 0 <= i < len(vocab)]
    if bad:
        raise ValueError(f"ids outside the vocabulary: {sorted(bad)[:5]}")
    old_ids = np.asarray(sorted(keep_set), dtype=np.int64)
    new_of = {int(old): new for new, old in enumerate(old_ids)}
    out = copy.deepcopy(tokenizer_json)
    out["model"]["vocab"] = [vocab[i] for i in old_ids]
    if unk is not None:
        out["model"]["unk_id"] = new_of[unk]
    for token in out.get("added_tokens", []):
        token["id"] = new_of[token["id"]]
    _remap_special_ids(out.get("post_processor"), new_of)
    return out, old_ids


def _remap_special_ids(node: Any, new_of: dict[int, int]) -> None:
    """TemplateProcessing holds its special tokens' ids (``special_tokens.<name>.ids``), maybe nested."""
    if isinstance(node, list):
        for value in node:
            _remap_special_ids(value, new_of)
    elif isinstance(node, dict):
        for spec in (node.get("special_tokens") or {}).values():
            spec["ids"] = [new_of[i] for i in spec["ids"]]
        for key, value in node.items():
            if key != "special_tokens":
                _remap_special_ids(value, new_of)


def trim_embeddings(weight: np.ndarray, old_ids: np.ndarray) -> np.ndarray:
    """Rows of the word-embedding table for the kept pieces, in new-id order."""
    return np.ascontiguousarray(weight[old_ids])
