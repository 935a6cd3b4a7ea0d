"""``moodwire triton …`` commands and the Triton hooks of ``classify`` / ``bench``.

``serve`` runs the bundled tritonserver on a rendered model repository until
SIGINT/SIGTERM.  ``make_triton_runner`` and ``run_triton_bench`` are what the
main CLI calls for ``--backend triton``; ``MOODWIRE_TRITON_URL`` (host:grpc
port) points them at an external server instead of a local one.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

import click

from streams.cli.errors import fail
from streams.stats import rss_bytes

URL_ENV = "MOODWIRE_TRITON_URL"


class _Stop(Exception):
    """Raised from the SIGINT/SIGTERM handler to unwind into a clean stop."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


@click.group("triton", context_settings={"help_option_names": ["-h", "--help"]})
def triton() -> None:
    """Serve the classifiers with NVIDIA Triton Inference Server."""


@triton.command("serve")
@click.option(
    "--repository",
    default="cpu",
    show_default=True,
    help="cpu, gpu, or a path to a model repository template (see docs/triton.md).",
)
@click.option(
    "--artifacts", type=click.Path(file_okay=False), help="Artefact root (default: inference/artifacts)."
)
@click.option("--http-port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--grpc-port", default=8001, show_default=True, type=click.IntRange(1, 65535))
@click.option("--metrics-port", default=8002, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--ready-timeout",
    default=120.0,
    show_default=True,
    type=click.FloatRange(1),
    help="Seconds to wait for the models.",
)
def serve(
    repository: str,
    artifacts: str | None,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    ready_timeout: float,
) -> None:
    """Start tritonserver, wait until the models are ready, serve until SIGINT/SIGTERM."""
    from inference.serve.triton_server import Ports, TritonServer, TritonServerError

    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    server: TritonServer | None = None
    try:
        server = TritonServer(repository, artifacts, Ports(http_port, grpc_port, metrics_port))
        t0 = time.perf_counter()
        server.start(ready_timeout)
        click.echo(
            f"triton ready in {time.perf_counter() - t0:.1f}s (repository {server.template}, log {server.log_file})"
        )
        click.echo(f"  grpc     {server.grpc_url}   (export {URL_ENV}={server.grpc_url})")
        click.echo(f"  http     http://{server.http_url}")
        click.echo(f"  metrics  {server.metrics_url}")
        sys.stdout.flush()
        while server.running():
            time.sleep(0.5)
        code = server.process.returncode if server.process else -1
        fail(f"tritonserver exited on its own with code {code}: {server.failure_reason()}")
    except TritonServerError as exc:
        fail(str(exc))
    except _Stop as stop:
        if server is not None:
            server.stop()
        click.echo(f"triton stopped ({stop})")
    finally:
        if server is not None and server.running():
            server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def triton_url(url: str | None = None) -> str:
    from inference.serve.triton_client import DEFAULT_URL

    return url or os.environ.get(URL_ENV) or DEFAULT_URL


def make_triton_runner(url: str | None = None, language: str = "en") -> Any:
    """A ready, contract-checked TritonRunner for ``language``'s model, or a one-line error and exit 1."""
    from inference.serve.triton_client import TritonError, TritonRunner

    try:
        return TritonRunner(triton_url(url), language=language)
    except TritonError as exc:
        fail(f"{exc} (start one with `moodwire triton serve` or set {URL_ENV})")


def run_triton_bench(
    batch_sizes: Sequence[int], seconds: float, artifacts: str | None = None, language: str = "en"
) -> list[dict[str, Any]]:
    """Local runner vs Triton in one run: same texts, same batch sizes, one at a time.

    Starts the bundled server on free loopback ports unless MOODWIRE_TRITON_URL
    names an external one.  Measurements never overlap, so the two backends
    never compete for the cores.
    """
    from rich.console import Console
    from rich.table import Table

    from inference.evaluation.bench import fill, measure, sample_sets
    from inference.serve.artifacts import model_name
    from inference.serve.runner import LocalRunner
    from inference.serve.triton_client import TritonError, TritonRunner
    from inference.serve.triton_server import TritonServer, TritonServerError, free_ports

    console = Console()
    server: TritonServer | None = None
    external = os.environ.get(URL_ENV)
    try:
        if not external:
            server = TritonServer("cpu", artifacts, free_ports()).start()
        rss0 = rss_bytes()
        local = LocalRunner(artifacts, name=model_name(language))
        local_rss = rss_bytes() - rss0
        remote = TritonRunner(server.grpc_url if server else triton_url(), language=language)
    except (TritonServerError, TritonError) as exc:
        if server is not None:
            server.stop()
        fail(str(exc))
    tokenizer = local.model.tokenizer
    results: list[dict[str, Any]] = []
    table = Table(title="local ONNX Runtime vs Triton (CPU repository), one multi-task pass per text")
    for col in ("input", "batch", "backend", "texts/s", "tokens/s", "p50 ms", "p99 ms", "triton/local"):
        table.add_column(col, justify="right")
    try:
        for kind, pool in sample_sets(language).items():
            for bs in batch_sizes:
                texts = fill(pool, bs)
                tokens = sum(len(x) for x in tokenizer.encode(texts)) / len(texts)
                row = {}
                for backend, runner in (("local", local), ("triton", remote)):
                    m = measure(runner.classify, texts, seconds)
                    m["tokens_per_s"] = m["texts_per_s"] * tokens
                    row[backend] = m
                    results.append(
                        {"input": kind, "batch": bs, "backend": backend, "tokens_per_text": tokens, **m}
                    )
                ratio = row["triton"]["texts_per_s"] / row["local"]["texts_per_s"]
                results[-1]["ratio_to_local"] = ratio
                for backend, m in row.items():
                    table.add_row(
                        kind,
                        str(bs),
                        backend,
                        f"{m['texts_per_s']:.1f}",
                        f"{m['tokens_per_s']:.0f}",
                        f"{m['p50_ms']:.1f}",
                        f"{m['p99_ms']:.1f}",
                        f"{ratio:.2f}" if backend == "triton" else "",
                    )
        console.print(table)
        memory = {"local_runner_rss_mb": local_rss / 1e6}
        if server is not None:
            memory["triton_server_rss_mb"] = server.rss_bytes() / 1e6
        console.print("memory: " + ", ".join(f"{k}={v:.0f}" for k, v in memory.items()))
        results.append({"memory": memory})
    finally:
        remote.close()
        local.close()
        if server is not None:
            server.stop()
    return results


if __name__ == "__main__":
    triton()
