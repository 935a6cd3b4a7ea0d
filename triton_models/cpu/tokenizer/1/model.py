"""Model `tokenizer`: raw texts in, token ids and attention mask out.

Uses the Rust `tokenizers` library with the model's saved tokenizer.json.
A text longer than the model's max_length keeps its first truncation_head
tokens and its last max_length - truncation_head (both from model.json),
the same ids as ``inference.serve.tokenization.BatchTokenizer``; rows are padded
to the longest text of the request (the mask marks the padding).
The model directory comes from the `artifact_dir` parameter (absolute, or
relative to this model's directory), tensor names from contract.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        model_dir = Path(args["model_repository"])
        contract = json.loads((model_dir.parent / "contract.json").read_text(encoding="utf-8"))
        directory = model_dir / params["artifact_dir"]
        meta = json.loads((directory / "model.json").read_text(encoding="utf-8"))
        # The tokenizer must belong to the model the encoder serves: a stale
        # rendered repository fails at load instead of feeding it wrong ids.
        if params.get("artifact_version") and meta["version"] != params["artifact_version"]:
            raise pb_utils.TritonModelException(
                f"{directory}: version {meta['version']} differs from the config's {params['artifact_version']}"
            )
        self.text_input = next(iter(contract["tokenizer"]["inputs"]))
        self.ids_name, self.mask_name = contract["tokenizer"]["outputs"]
        self.max_length = int(meta["max_length"])
        self.head = int(meta.get("truncation_head", self.max_length))
        self.pad_id = int(meta.get("pad_id", 0))
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, self.text_input).as_numpy().reshape(-1)
            texts = [t.decode("utf-8", errors="replace") if isinstance(t, bytes) else str(t) for t in raw]
            encoded = self.tokenizer.encode_batch([clip_text(t, self.max_length) for t in texts])
            ids, mask = pad([head_tail(e.ids, self.max_length, self.head) for e in encoded], self.pad_id)
            outputs = [pb_utils.Tensor(self.ids_name, ids), pb_utils.Tensor(self.mask_name, mask)]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses


# clip_text and head_tail: the same policy as inference.serve.tokenization (this
# folder is self-contained: the python backend stub does not import our package).
def clip_text(text: str, max_length: int) -> str:
    cap = max_length * 100  # a WordPiece token spans at most ~100 characters
    return text if len(text) <= 2 * cap else f"{text[:cap]} {text[-cap:]}"


def head_tail(ids: list[int], max_length: int, head: int) -> list[int]:
    if len(ids) <= max_length:
        return list(ids)
    tail = max_length - min(head, max_length)
    return list(ids[: max_length - tail]) + (list(ids[-tail:]) if tail else [])


def pad(seqs: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    width = max((len(s) for s in seqs), default=0)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = s
        mask[row, : len(s)] = 1
    return ids, mask
