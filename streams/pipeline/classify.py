"""The classify stage: validate a micro-batch, score the valid events in ONE runner call, route the rest.

:func:`split_batch` is pure (bytes in, valid events and DLQ records out);
:func:`classify_batch` adds the single ``runner.aclassify`` call and builds the
``scored-events`` records (masked, when a :class:`~streams.pipeline.masking.Masker` is given).  Errors from the runner propagate unchanged: the
agent runtime retries the whole batch, so nothing is skipped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from inference.serve.runner import Runner
from streams.metrics import METRICS
from streams.pipeline.events import Rejection, ValidEvent, parse_event, scored_event
from streams.pipeline.masking import Masker
from streams.pipeline.records import H_DETAIL, H_INPUT_TS, H_REASON, H_SOURCE, InRecord, OutRecord


@dataclass
class ClassifiedBatch:
    scored: list[OutRecord] = field(default_factory=list)
    dlq: list[OutRecord] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    infer_s: float | None = None  # the runner call, when there was one
    mask_s: float | None = None  # masking the batch, when masking is on


def utf8_prefix(text: str, max_bytes: int) -> bytes:
    """``text`` in UTF-8, cut to at most ``max_bytes`` on a character boundary (never half a character)."""
    raw = text.encode("utf-8", errors="replace")
    return raw if len(raw) <= max_bytes else raw[:max_bytes].decode("utf-8", errors="ignore").encode("utf-8")


def dlq_record(rec: InRecord, rejection: Rejection) -> OutRecord:
    """The original bytes, with why and where from in headers."""
    return OutRecord(
        value=rec.value,
        key=rec.key,
        headers=(
            (H_REASON, rejection.reason.encode()),
            (H_DETAIL, utf8_prefix(rejection.detail, 1000)),
            (H_SOURCE, rec.source.encode()),
        ),
    )


def split_batch(records: Sequence[InRecord]) -> tuple[list[tuple[InRecord, ValidEvent]], ClassifiedBatch]:
    """Validate every record: (record, event) pairs to score, and a batch holding the DLQ records."""
    valid: list[tuple[InRecord, ValidEvent]] = []
    out = ClassifiedBatch()
    for rec in records:
        parsed = parse_event(rec.value, rec.timestamp_ms)
        if isinstance(parsed, Rejection):
            out.dlq.append(dlq_record(rec, parsed))
            out.reasons[parsed.reason] = out.reasons.get(parsed.reason, 0) + 1
        else:
            valid.append((rec, parsed))
    return valid, out


async def classify_batch(
    records: Sequence[InRecord], runner: Runner, masker: Masker | None = None
) -> ClassifiedBatch:
    """Validate, then one ``aclassify`` for all valid texts; returns scored + DLQ records.

    With a ``masker`` (MOODWIRE_MASKING=on) the runner still reads the original texts, and
    the scored records carry the masked ones: ``scored-events`` is the first place an event
    is sent, so nothing downstream (ClickHouse, the API, webhooks) ever holds the originals.
    """
    valid, out = split_batch(records)
    if not valid:
        return out
    # Canonical order: the int8 models quantize activations per (length-sorted) sub-batch, so
    # without it a near-tie label could depend on arrival order; now it depends on membership only.
    valid.sort(key=lambda pair: pair[1].id)
    t0 = time.perf_counter()
    try:
        results = await runner.aclassify(
            [event.text for _, event in valid], [event.lang for _, event in valid]
        )
    except Exception as exc:
        METRICS.inference_failures.labels(type(exc).__name__).inc()
        raise
    out.infer_s = time.perf_counter() - t0
    scored_at = datetime.now(UTC)
    mask_s = 0.0
    for (rec, event), result in zip(valid, results, strict=True):
        sent = event
        if masker is not None:
            t_mask = time.perf_counter()
            sent = masker.event(event)
            mask_s += time.perf_counter() - t_mask
        body = scored_event(sent, result.to_dict(), scored_at)
        out.scored.append(
            OutRecord(
                value=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
                key=rec.key,
                headers=((H_INPUT_TS, str(rec.timestamp_ms).encode()),),
            )
        )
    if masker is not None:
        out.mask_s = mask_s
    return out
