"""Entry model `moodwire`: raw texts in, sentiment and topic probabilities out.

A python-backend BLS model, identical on the CPU and GPU repositories.  The
dynamic batcher hands it several client requests at once; it tokenizes them
in one call to the `tokenizer` model, regroups the rows by token length (so a
headline is never padded to a review's width) and sends each group to the
`sentiment` and `topic` models concurrently, then splits the rows back per
request.  Names come from contract.json next to the repository's models.

Parameter `bucket_scope`: `request` (CPU) groups rows within each request
only, because the int8 models quantize activations per forward pass: a text's
scores then depend on its own request alone, never on another client's texts
that happened to share the execution.  `execution` (GPU, fp16 engines, no such
effect) groups rows across all merged requests for the fullest batches.

Parameter `bucket_scope`: `request` (CPU) groups rows within each request
only, because the int8 models quantize activations per forward pass: a text's
scores then depend on its own request alone, never on another client's texts
that happened to share the execution.  `execution` (GPU, fp16 engines, no such
effect) groups rows across all merged requests for the fullest batches.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


def length_buckets(lengths: np.ndarray, size: int) -> list[np.ndarray]:
    # Same policy as inference.tokenization.length_buckets (stable sort by
    # length, then fixed-size groups), so a batch is composed exactly as the
    # local runner composes it.
    order = sorted(range(len(lengths)), key=lambda i: int(lengths[i]))
    return [np.asarray(order[s : s + size], dtype=np.int64) for s in range(0, len(order), size)]


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        contract_file = Path(args["model_repository"]).parent / "contract.json"
        contract = json.loads(contract_file.read_text(encoding="utf-8"))
        self.bucket_size = int(params.get("bucket_size", "32"))
        self.per_request = params.get("bucket_scope", "request") == "request"
        self.per_request = params.get("bucket_scope", "request") == "request"
        self.text_input = next(iter(contract["entry"]["inputs"]))
        self.tokenizer_model = contract["tokenizer"]["model"]
        self.classifiers = {
            task: (spec["model"], spec["output"]) for task, spec in contract["classifiers"].items()
        }
        tensors = contract["classifier_tensors"]
        self.ids_name, self.mask_name = tensors["inputs"]
        self.probs_name = tensors["output"]["name"]

    async def execute(self, requests: list) -> list:
        texts = [
            pb_utils.get_input_tensor_by_name(r, self.text_input).as_numpy().reshape(-1) for r in requests
        ]
        sizes = [len(t) for t in texts]
        bounds = np.cumsum([0, *sizes])
        scopes = (
            [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
            if self.per_request
            else [np.arange(bounds[-1])]
        )
        try:
            probs = await self._classify(np.concatenate(texts).reshape(-1, 1), scopes)
        except pb_utils.TritonModelException as exc:
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))) for _ in requests]
        responses = []
        start = 0
        for n in sizes:
            outs = [pb_utils.Tensor(name, p[start : start + n]) for name, p in probs.items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=outs))
            start += n
        return responses

    async def _classify(self, texts: np.ndarray, scopes: list[np.ndarray]) -> dict[str, np.ndarray]:
        tokenized = await self._infer(self.tokenizer_model, {self.text_input: texts}, None)
        work = []
        for task, (model, out_name) in self.classifiers.items():
            ids = tokenized[f"{task}_{self.ids_name}"]
            mask = tokenized[f"{task}_{self.mask_name}"]
            lengths = mask.sum(axis=1)
            groups = [scope[b] for scope in scopes for b in length_buckets(lengths[scope], self.bucket_size)]
            for rows in groups:
                width = max(int(lengths[rows].max()), 1)
                inputs = {self.ids_name: ids[rows, :width], self.mask_name: mask[rows, :width]}
                work.append((out_name, rows, self._infer(model, inputs, self.probs_name)))
        results = await asyncio.gather(*(w[2] for w in work))
        probs: dict[str, np.ndarray] = {}
        for (out_name, rows, _), result in zip(work, results, strict=True):
            block = result[self.probs_name]
            if out_name not in probs:
                probs[out_name] = np.zeros((len(texts), block.shape[1]), dtype=np.float32)
            probs[out_name][rows] = block
        return probs

    async def _infer(
        self, model: str, inputs: dict[str, np.ndarray], output: str | None
    ) -> dict[str, np.ndarray]:
        request = pb_utils.InferenceRequest(
            model_name=model,
            inputs=[pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in inputs.items()],
            requested_output_names=[output] if output else [],
        )
        response = await request.async_exec()
        if response.has_error():
            raise pb_utils.TritonModelException(f"{model}: {response.error().message()}")
        return {t.name(): t.as_numpy() for t in response.output_tensors()}
