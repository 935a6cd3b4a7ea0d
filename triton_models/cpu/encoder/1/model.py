"""Model `encoder` (CPU): the multi-task ONNX graph with ONNX Runtime.

Token ids in, one probability tensor per task out, from one encoder pass.
Each row runs alone, unpadded (its mask says its length), on one of several
single-threaded sessions side by side: the int8 graph computes activation
scales per forward pass, so a text alone gets scores that depend on its own
tokens only, never on the texts merged into its batch; the same policy as
``inference.serve.runner.MultiTaskOnnx``, which gives the same scores.
The model directory, the expected version, the ONNX precision and each
task's label list come from the config's parameters and are checked against
the model's model.json and graph at load, so a stale rendered repository
fails at load instead of serving the wrong model.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        directory = Path(args["model_repository"]) / params["artifact_dir"]
        meta = json.loads((directory / "model.json").read_text(encoding="utf-8"))
        if params.get("artifact_version") and meta["version"] != params["artifact_version"]:
            raise pb_utils.TritonModelException(
                f"{directory}: version {meta['version']} differs from the config's {params['artifact_version']}"
            )
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        for task, spec in meta["tasks"].items():
            labels = params.get(f"{task}_labels", "").split(",")
            if spec["labels"] != labels:
                raise pb_utils.TritonModelException(
                    f"{directory}: {task} labels {spec['labels']} differ from the config's {labels}"
                )
            if spec["output"] not in self.outputs:
                raise pb_utils.TritonModelException(
                    f"{directory}: {task} output {spec['output']!r} is not a config output {self.outputs}"
                )
        precision = params.get("precision", "int8")
        onnx_file = directory / meta.get("files", {}).get(precision, f"model.{precision}.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One single-threaded session per worker ("0" = one per core).
        workers = int(params.get("workers", "0")) or os.cpu_count() or 1
        self.sessions = [
            ort.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])
            for _ in range(workers)
        ]
        self.session = self.sessions[0]
        self.pool = ThreadPoolExecutor(workers)
        graph_outputs = {o.name for o in self.session.get_outputs()}
        missing = [name for name in self.outputs if name not in graph_outputs]
        if missing:
            raise pb_utils.TritonModelException(
                f"{onnx_file}: no output {missing} (has {sorted(graph_outputs)})"
            )

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            ids, mask = (pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs)
            outs = self._run_rows(ids, mask.sum(axis=1))
            tensors = [pb_utils.Tensor(name, outs[name]) for name in self.outputs]
            responses.append(pb_utils.InferenceResponse(tensors))
        return responses

    def _run_rows(self, ids: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
        out = {name: [None] * len(ids) for name in self.outputs}
        order = iter(sorted(range(len(ids)), key=lambda i: -int(lengths[i])))  # longest first
        lock = threading.Lock()

        def work(session: ort.InferenceSession) -> None:
            while True:
                with lock:
                    i = next(order, None)
                if i is None:
                    return
                row = np.ascontiguousarray(ids[i : i + 1, : max(int(lengths[i]), 1)], dtype=np.int64)
                feeds = dict(zip(self.inputs, (row, np.ones_like(row)), strict=True))
                for name, value in zip(self.outputs, session.run(self.outputs, feeds), strict=True):
                    out[name][i] = value[0]

        list(self.pool.map(work, self.sessions[: max(len(ids), 1)]))
        return {name: np.asarray(rows, np.float32) for name, rows in out.items()}

    def finalize(self) -> None:
        self.pool.shutdown(wait=False)
        self.sessions = []
