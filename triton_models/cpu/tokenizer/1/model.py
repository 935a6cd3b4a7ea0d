"""Model `tokenizer`: raw texts in, per-task token ids and attention masks out.

Uses the Rust `tokenizers` library with each task's saved tokenizer.json and
max_length (from the artefact's model.json), truncating and padding to the
longest text of this request.  The artefact root comes from the
`artifact_root` parameter: absolute, or relative to this model's directory.
"""

from __future__ import annotations

import hashlib
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
        root = model_dir / params["artifact_root"]
        self.text_input = next(iter(contract["tokenizer"]["inputs"]))
        self.tasks = list(contract["classifiers"])
        # Tasks fine-tuned from the same base model share a tokenizer file:
        # encode once and reuse the ids.
        self.tokenizers: dict[str, tuple[str, Tokenizer, int]] = {}
        for task in self.tasks:
            meta = json.loads((root / task / "model.json").read_text(encoding="utf-8"))
            raw = (root / task / "tokenizer.json").read_bytes()
            tok = Tokenizer.from_str(raw.decode("utf-8"))
            tok.no_padding()
            max_length = int(meta["max_length"])
            tok.enable_truncation(max_length)
            key = hashlib.sha256(raw).hexdigest() + f":{max_length}"
            self.tokenizers[task] = (key, tok, int(meta.get("pad_id", 0)))

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, self.text_input).as_numpy().reshape(-1)
            texts = [t.decode("utf-8", errors="replace") if isinstance(t, bytes) else str(t) for t in raw]
            cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            outputs = []
            for task, (key, tok, pad_id) in self.tokenizers.items():
                if key not in cache:
                    cache[key] = pad([e.ids for e in tok.encode_batch(texts)], pad_id)
                ids, mask = cache[key]
                outputs += [
                    pb_utils.Tensor(f"{task}_input_ids", ids),
                    pb_utils.Tensor(f"{task}_attention_mask", mask),
                ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses


def pad(seqs: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    width = max((len(s) for s in seqs), default=0)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = s
        mask[row, : len(s)] = 1
    return ids, mask
