"""The two record shapes every stage speaks: a consumed :class:`InRecord` and an :class:`OutRecord` to send.

Stages take and return these plain dataclasses, not aiokafka objects, so they
are tested without a broker.  Header names that travel between stages live
here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

# Producer and fetch limit: big enough for a DLQ copy of any record the broker accepted
# (the 5 MB test record included).
MAX_RECORD_BYTES: Final = 16 * 1024 * 1024
# Producer batch bound (aiokafka's default is 16 KiB, about 60 input events or 30 scored ones).
# Fuller batches mean fewer of them: the embedded broker (tansu) keeps every batch and lists a
# partition's stored batches on each fetch, so its CPU grows with their count (docs/streaming.md).
PRODUCER_BATCH_BYTES: Final = 256 * 1024

# Headers on DLQ records (the value stays the producer's original bytes).
H_REASON: Final = "moodwire-reason"
H_DETAIL: Final = "moodwire-detail"
H_SOURCE: Final = "moodwire-source"  # "<topic>/<partition>/<offset>" of the rejected input record
# Header on scored records: the input record's timestamp (ms), for end-to-end latency.
H_INPUT_TS: Final = "moodwire-input-ts"


@dataclass(frozen=True, slots=True)
class InRecord:
    """One consumed Kafka record."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def from_consumer(cls, rec: Any) -> InRecord:
        """From an aiokafka ``ConsumerRecord``."""
        return cls(
            rec.topic,
            rec.partition,
            rec.offset,
            int(rec.timestamp),
            rec.key,
            rec.value if rec.value is not None else b"",
            tuple(rec.headers or ()),
        )

    @property
    def source(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record to produce; the destination topic is chosen by the agent."""

    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = field(default=())
