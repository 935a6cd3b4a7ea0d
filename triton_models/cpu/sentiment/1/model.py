"""Classifier model (`sentiment` / `topic` on CPU): int8 ONNX with ONNX Runtime.

One file serves both tasks; the artefact directory, the expected version and
the label list come from the model's config parameters, so a stale rendered
repository fails at load instead of serving the wrong model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        model_dir = Path(args["model_repository"])
        directory = model_dir / params["artifact_dir"]
        meta = json.loads((directory / "model.json").read_text(encoding="utf-8"))
        labels = params["labels"].split(",")
        if meta["labels"] != labels:
            raise pb_utils.TritonModelException(
                f"{directory}: labels {meta['labels']} differ from the config's {labels}"
            )
        if params.get("artifact_version") and meta["version"] != params["artifact_version"]:
            raise pb_utils.TritonModelException(
                f"{directory}: version {meta['version']} differs from the config's {params['artifact_version']}"
            )
        self.inputs = [i["name"] for i in config["input"]]
        self.output = config["output"][0]["name"]
        opts = ort.SessionOptions()
        # The entry model runs sentiment and topic concurrently, each in its
        # own stub process, so each gets half the cores by default ("0").
        # Spinning threads would steal the other model's core while idle.
        threads = int(params.get("intra_op_threads", "0")) or max(1, (os.cpu_count() or 2) // 2)
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(directory / "model.int8.onnx"), opts, providers=["CPUExecutionProvider"]
        )

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            feeds = {
                name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs
            }
            (probs,) = self.session.run([self.output], feeds)
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor(self.output, np.asarray(probs, np.float32))])
            )
        return responses

    def finalize(self) -> None:
        self.session = None
