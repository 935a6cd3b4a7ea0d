"""Entry model `moodwire`: raw texts in, sentiment and topic probabilities out.

A python-backend BLS model, identical on the CPU and GPU repositories.  The
dynamic batcher hands it several client requests at once; it tokenizes them
in one call to the `tokenizer` model, regroups the rows by token length (so
the GPU engine never pads a headline to a review's width), sends each group
once to the `encoder` model, which returns both tasks' probabilities from
one pass, and splits the rows back per request.  Names come from
contract.json next to the repository's models.

Groups span all merged requests, and merging changes no score, only the
speed: the CPU encoder runs each row alone (its int8 activation scales are
computed per pass, so a text never shares one), as the local runner does;
the GPU engine (FP16, no activation scales) masks the padding
(tests/test_determinism.py, tests/test_triton_server.py).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


def length_buckets(lengths: np.ndarray, size: int) -> list[np.ndarray]:
    # Same policy as inference.serve.tokenization.length_buckets: stable sort by
    # length, then fixed-size groups.
    order = sorted(range(len(lengths)), key=lambda i: int(lengths[i]))
    return [np.asarray(order[s : s + size], dtype=np.int64) for s in range(0, len(order), size)]


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        contract_file = Path(args["model_repository"]).parent / "contract.json"
        contract = json.loads(contract_file.read_text(encoding="utf-8"))
        self.bucket_size = int(params.get("bucket_size", "32"))
        self.text_input = next(iter(contract["entry"]["inputs"]))
        # A language's copy of this model names its own tokenizer and encoder (rendered parameters).
        self.tokenizer_model = params.get("tokenizer_model", contract["tokenizer"]["model"])
        self.encoder_model = params.get("encoder_model", contract["encoder"]["model"])
        self.ids_name, self.mask_name = contract["encoder"]["inputs"]
        self.outputs = {name: spec["dims"][0] for name, spec in contract["encoder"]["outputs"].items()}

    async def execute(self, requests: list) -> list:
        texts = [
            pb_utils.get_input_tensor_by_name(r, self.text_input).as_numpy().reshape(-1) for r in requests
        ]
        sizes = [len(t) for t in texts]
        try:
            probs = await self._classify(np.concatenate(texts).reshape(-1, 1))
        except pb_utils.TritonModelException as exc:
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))) for _ in requests]
        responses = []
        start = 0
        for n in sizes:
            outs = [pb_utils.Tensor(name, p[start : start + n]) for name, p in probs.items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=outs))
            start += n
        return responses

    async def _classify(self, texts: np.ndarray) -> dict[str, np.ndarray]:
        tokenized = await self._infer(self.tokenizer_model, {self.text_input: texts}, [])
        ids, mask = tokenized[self.ids_name], tokenized[self.mask_name]
        lengths = mask.sum(axis=1)
        groups = length_buckets(lengths, self.bucket_size)
        calls = []
        for rows in groups:
            width = max(int(lengths[rows].max()), 1)
            inputs = {self.ids_name: ids[rows, :width], self.mask_name: mask[rows, :width]}
            calls.append(self._infer(self.encoder_model, inputs, list(self.outputs)))
        results = await asyncio.gather(*calls)
        probs = {name: np.zeros((len(texts), n), dtype=np.float32) for name, n in self.outputs.items()}
        for rows, result in zip(groups, results, strict=True):
            for name in self.outputs:
                probs[name][rows] = result[name]
        return probs

    async def _infer(
        self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]
    ) -> dict[str, np.ndarray]:
        request = pb_utils.InferenceRequest(
            model_name=model,
            inputs=[pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in inputs.items()],
            requested_output_names=outputs,
        )
        response = await request.async_exec()
        if response.has_error():
            raise pb_utils.TritonModelException(f"{model}: {response.error().message()}")
        return {t.name(): t.as_numpy() for t in response.output_tensors()}
