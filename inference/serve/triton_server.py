"""Triton server lifecycle: render the model repository, start, wait, stop.

Runs the ``tritonserver`` binary bundled in the ``nvidia-pytriton`` wheel
(python backend only, CPU) or one on ``PATH``.  The committed repositories in
``triton_models/`` are templates: ``render_repository`` copies one into a
work directory, fills in the model directory and version, and puts
``contract.json`` beside the models.  ``TritonServer`` prepares the python
backend for the running interpreter, starts the server in its own process
group (it dies with us, even on SIGKILL), waits until every model is ready,
and stops it without leaving stub processes behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from inference.serve.artifacts import ARTIFACTS_DIR, ArtifactError, ModelArtifact, load_artifact, model_name
from inference.serve.triton_client import language_models

REPOSITORY_ROOT = Path(__file__).resolve().parents[2] / "triton_models"
CONTRACT_FILE = REPOSITORY_ROOT / "contract.json"
VARIANTS = ("cpu", "gpu")


class TritonServerError(RuntimeError):
    """The server could not be started or stopped; the message is one line."""


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports() -> Ports:
    return Ports(free_port(), free_port(), free_port())


def check_port_free(port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR as tritonserver itself binds: a TIME_WAIT left by the
        # previous server is no conflict, a listening socket is.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            raise TritonServerError(
                f"{what} port {port} is already in use; pick another with --{what}-port"
            ) from None


def resolve_repository(repository: str) -> Path:
    """``cpu`` / ``gpu`` name a committed template; anything else is a path."""
    path = REPOSITORY_ROOT / repository if repository in VARIANTS else Path(repository)
    if not path.is_dir():
        raise TritonServerError(f"model repository {path} not found")
    return path.resolve()


def render_repository(template: Path, dest: Path, artifacts: Path | str | None = None) -> Path:
    """Copy ``template`` to ``dest`` with the model directory and version filled in.

    ``@ARTIFACT_DIR@`` becomes the absolute path of the model directory
    (``<artifacts>/moodwire``) and ``@ARTIFACT_VERSION@`` its model.json
    version.  The artefact is referenced, not copied: the ONNX file is tens
    of MB and the rendered repository is thrown away at shutdown.

    When ``<artifacts>/moodwire-zh`` holds a model and the template is a CPU
    one, its three models are rendered a second time for it, named with a
    ``_zh`` suffix (``moodwire_zh`` -> ``tokenizer_zh`` -> ``encoder_zh``;
    inference.serve.triton_client.language_models).  The GPU template has no Chinese
    TensorRT engine: there, Chinese texts need MOODWIRE_LANGUAGES=en.
    """
    root = Path(artifacts or ARTIFACTS_DIR).resolve()
    try:
        artifact = load_artifact(root)
    except ArtifactError as exc:
        raise TritonServerError(str(exc)) from None
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(template, dest, symlinks=False, ignore=shutil.ignore_patterns("__pycache__"))
    _substitute(dest.glob("*/config.pbtxt"), artifact)
    contract = json.loads(CONTRACT_FILE.read_text(encoding="utf-8"))
    zh_meta = root / model_name("zh") / "model.json"
    if zh_meta.is_file() and "gpu" not in template.name:
        try:
            zh = load_artifact(root, model_name("zh"))
        except ArtifactError as exc:
            raise TritonServerError(str(exc)) from None
        names = language_models(contract, "zh")
        for base, renamed in zip(language_models(contract, "en"), names, strict=True):
            shutil.copytree(template / base, dest / renamed, ignore=shutil.ignore_patterns("__pycache__"))
            config = dest / renamed / "config.pbtxt"
            text = config.read_text(encoding="utf-8").replace(f'name: "{base}"', f'name: "{renamed}"', 1)
            if base == contract["entry_model"]:  # the entry calls this language's tokenizer and encoder
                extra = (
                    f'  {{ key: "tokenizer_model" value: {{ string_value: "{names[1]}" }} }},\n'
                    f'  {{ key: "encoder_model" value: {{ string_value: "{names[2]}" }} }},\n'
                )
                text = text.replace("parameters [\n", "parameters [\n" + extra, 1)
            config.write_text(text, encoding="utf-8")
            _substitute([config], zh)
    shutil.copy(CONTRACT_FILE, dest / "contract.json")
    return dest


def _substitute(configs: Iterable[Path], artifact: ModelArtifact) -> None:
    substitutions = {"@ARTIFACT_DIR@": str(artifact.directory), "@ARTIFACT_VERSION@": artifact.version}
    for config in configs:
        text = config.read_text(encoding="utf-8")
        for key, value in substitutions.items():
            text = text.replace(key, value)
        config.write_text(text, encoding="utf-8")


def locate_tritonserver() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is not None and spec.submodule_search_locations:
        binary = Path(next(iter(spec.submodule_search_locations))) / "tritonserver" / "bin" / "tritonserver"
        if binary.is_file():
            return binary
    found = shutil.which("tritonserver")
    if found:
        return Path(found)
    raise TritonServerError(
        "tritonserver not found: install the triton extra (pip install -e '.[triton]') "
        "or set MOODWIRE_TRITON_URL to use an external server"
    )


def prepare_backends(binary: Path, dest: Path) -> Path:
    """A backend directory whose python stub matches the running interpreter.

    The wheel ships one stub per Python version beside the backend; Triton
    expects exactly one, named ``triton_python_backend_stub``, next to
    ``libtriton_python.so``.
    """
    dist = binary.parent.parent
    source = dist / "backends"
    if not (source / "python" / "libtriton_python.so").is_file():
        # A system install (NVIDIA container) has its stubs in place already.
        return Path("/opt/tritonserver/backends")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonServerError(f"the bundled python backend has no stub for Python {version}")
    python_dir = dest / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for item in source.joinpath("python").iterdir():
        if item.is_file():
            target = python_dir / item.name
            if not target.exists():
                target.symlink_to(item)
    target = python_dir / "triton_python_backend_stub"
    if not target.exists():
        target.symlink_to(stub)
    return dest


# The bundled python-backend stub (2.51) was built against the NumPy 1 ABI:
# under NumPy 2 every tensor it hands over or takes back is garbled (itemsize
# read as 0).  The stub ignores PYTHONPATH and takes its prefix from `python3`
# on PATH, so when this interpreter has NumPy 2 the stub gets a tiny venv of
# its own: NumPy 1.26 in its site-packages, then (via a .pth file) this venv's
# site-packages for onnxruntime and tokenizers.  ONNX Runtime accepts >=1.21.6.
STUB_NUMPY = "numpy==1.26.4"
STUB_ENV = Path(sys.prefix) / "triton-stub-env"


def stub_python_env() -> Path:
    """Directory whose ``bin/python3`` the stub should resolve its prefix from."""
    import numpy

    if int(numpy.__version__.split(".")[0]) < 2:
        return Path(sys.executable).parent.parent
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = STUB_ENV / "lib" / version / "site-packages"
    if (site / "numpy" / "__init__.py").is_file():
        return STUB_ENV
    steps = [
        [sys.executable, "-m", "venv", "--without-pip", str(STUB_ENV)],
        [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(site), STUB_NUMPY],
    ]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["failed"])[-1]
            raise TritonServerError(f"could not prepare the python-backend env {STUB_ENV}: {last}")
    main_site = sysconfig.get_paths()["purelib"]
    (site / "moodwire-main-venv.pth").write_text(main_site + "\n", encoding="utf-8")
    return STUB_ENV


def server_environment() -> dict[str, str]:
    """The stub embeds this interpreter: it needs its libpython and a prefix."""
    env = os.environ.copy()
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = ":".join(p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
    env["PATH"] = f"{stub_python_env() / 'bin'}:{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _die_with_parent() -> None:
    # Runs in the child before exec: new process group for a clean group kill,
    # and SIGTERM from the kernel if this Python process dies (even SIGKILL),
    # so a crashed `moodwire` never leaves an orphaned server holding ports.
    os.setpgid(0, 0)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class TritonServer:
    """One tritonserver process on loopback-reachable ports."""

    def __init__(
        self,
        repository: str = "cpu",
        artifacts: Path | str | None = None,
        ports: Ports | None = None,
        workdir: Path | None = None,
        log_verbose: int = 0,
    ) -> None:
        self.template = resolve_repository(repository)
        self.artifacts = artifacts
        self.ports = ports or Ports()
        self.log_verbose = log_verbose
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="moodwire-triton-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.log_file = self.workdir / "tritonserver.log"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.ports.http}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.metrics}/metrics"

    def start(self, timeout: float = 120.0) -> TritonServer:
        binary = locate_tritonserver()
        for what, port in (
            ("http", self.ports.http),
            ("grpc", self.ports.grpc),
            ("metrics", self.ports.metrics),
        ):
            check_port_free(port, what)
        if (self.template / "contract.json").is_file():
            repository = self.template  # already rendered (or a hand-made one)
        else:
            repository = render_repository(self.template, self.workdir / "repository", self.artifacts)
        backends = prepare_backends(binary, self.workdir / "backends")
        cmd = [
            str(binary),
            f"--model-repository={repository}",
            f"--backend-directory={backends}",
            f"--http-port={self.ports.http}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            "--pinned-memory-pool-byte-size=0",
            "--allow-gpu-metrics=false",
            "--exit-timeout-secs=3",
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--log-verbose={self.log_verbose}",
        ]
        log = self.log_file.open("ab")
        self.process = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_environment(),
            preexec_fn=_die_with_parent,
        )
        log.close()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise TritonServerError(
                    f"tritonserver exited with code {self.process.returncode}: {self.failure_reason()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise TritonServerError(
            f"tritonserver not ready after {timeout:.0f}s: {self.failure_reason()} (log: {self.log_file})"
        )

    def failure_reason(self) -> str:
        """The most telling line of the server log, for a one-line error."""
        try:
            lines = self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "no log"
        # Error lines first: "E1123 10:07:29.15 6768 model_lifecycle.cc:642] "failed to
        # load 'topic' version 1: <reason>\n\nAt: <traceback>"" -> the quoted part,
        # without the log prefix and the python traceback.
        errors = [line for line in lines if line.startswith("E")]
        for pattern in ("failed to load '", "Address already in use", "failed to", ""):
            for line in [*reversed(errors), *reversed(lines)] if pattern else reversed(errors):
                if pattern in line:
                    text = re.sub(r"^[EIW]\d{4} [\d:.]+ +\d+ \S+\] ", "", line).strip().strip('"')
                    text = text.split("\\n")[0]
                    return re.sub(r"\s+", " ", text).strip()[:400]
        return (lines[-1].strip() if lines else "empty log")[:400]

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (tests: a crash mid-run)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, wait for Triton's own shutdown, then SIGKILL what is left."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        # Stubs live in the server's process group; none may outlive it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if self._own_workdir:
            shutil.rmtree(self.workdir / "repository", ignore_errors=True)
            shutil.rmtree(self.workdir / "backends", ignore_errors=True)
        return proc.returncode

    def rss_bytes(self) -> int:
        """Resident memory of the server and its python stubs together."""
        if self.process is None:
            return 0
        pgid = self.process.pid
        total = 0
        for proc_dir in Path("/proc").iterdir():
            if not proc_dir.name.isdigit():
                continue
            try:
                stat = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[2]) != pgid:
                    continue
                for line in (proc_dir / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except (OSError, IndexError, ValueError):
                continue
        return total

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
