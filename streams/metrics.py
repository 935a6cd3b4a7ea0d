"""Prometheus metrics of one worker process, on their own registry (served at ``/metrics``).

Every metric is defined here, once; stages, agents, the alert evaluator and
the dispatcher import :data:`METRICS` and update it.  Consumer position vs
high watermark is read at scrape time from the running agents (see
:class:`ConsumerLagCollector`), so it is never stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# (agent, topic, partition, position = next offset to read, high watermark)
Position = tuple[str, str, int, int, int]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ConsumerLagCollector(Collector):
    """Per agent and partition: the consumer's position and the partition's high watermark."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[Position]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        position = GaugeMetricFamily(
            "moodwire_consumer_position",
            "Next offset the agent will read",
            labels=["agent", "topic", "partition"],
        )
        high = GaugeMetricFamily(
            "moodwire_consumer_highwater", "Partition high watermark", labels=["agent", "topic", "partition"]
        )
        for agent, topic, partition, pos, hw in self.source() if self.source else ():
            labels = [agent, topic, str(partition)]
            position.add_metric(labels, pos)
            high.add_metric(labels, hw)
        yield position
        yield high


@dataclass
class Metrics:
    registry: CollectorRegistry
    events_consumed: Counter
    events_scored: Counter
    events_stored: Counter
    events_dlq: Counter  # label: reason
    batch_size: Histogram  # label: agent
    batch_retries: Counter  # label: agent
    inference_seconds: Histogram
    masking_seconds: Histogram  # observed only with MOODWIRE_MASKING=on
    inference_failures: Counter  # label: error (TritonUnavailable / TritonRequestError / ...)
    insert_seconds: Histogram
    insert_failures: Counter
    alert_evaluations: Counter
    alert_rounds_deferred: Counter  # rounds skipped while the pipeline had a backlog (incomplete windows)
    alert_transitions: Counter  # label: state (firing / resolved / severity)
    alert_deliveries: Counter  # label: outcome (delivered / failed / rejected / expired)
    consumer_lag: ConsumerLagCollector
    rebalance_seconds: Histogram  # revoke -> assigned: how long a rebalance stopped this worker's agents
    http_requests: Counter  # labels: route, status (the worker's web API)
    http_seconds: Histogram  # label: route


def make_metrics() -> Metrics:
    reg = CollectorRegistry(auto_describe=True)
    lag = ConsumerLagCollector()
    reg.register(lag)
    return Metrics(
        registry=reg,
        events_consumed=Counter("moodwire_events_consumed", "Records read from text-events", registry=reg),
        events_scored=Counter("moodwire_events_scored", "Valid events scored and produced", registry=reg),
        events_stored=Counter(
            "moodwire_events_stored", "Scored events inserted into ClickHouse", registry=reg
        ),
        events_dlq=Counter(
            "moodwire_events_dlq", "Records sent to the dead-letter topic", ["reason"], registry=reg
        ),
        batch_size=Histogram(
            "moodwire_batch_size", "Records per micro-batch", ["agent"], buckets=_BATCH_BUCKETS, registry=reg
        ),
        batch_retries=Counter(
            "moodwire_batch_retries", "Failed batch attempts retried", ["agent"], registry=reg
        ),
        inference_seconds=Histogram(
            "moodwire_inference_seconds",
            "One runner request per batch",
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        ),
        masking_seconds=Histogram(
            "moodwire_masking_seconds",
            "Masking one classify batch (MOODWIRE_MASKING=on)",
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        ),
        # Failed attempts, counted where they happen (the batch is then retried by streams.pipeline.agents);
        # batch_retries{agent} says a batch was retried, these say which dependency failed.
        inference_failures=Counter(
            "moodwire_inference_failures",
            "Runner requests that failed (the batch is retried)",
            ["error"],
            registry=reg,
        ),
        insert_failures=Counter(
            "moodwire_insert_failures", "ClickHouse inserts that failed (the batch is retried)", registry=reg
        ),
        insert_seconds=Histogram(
            "moodwire_insert_seconds",
            "One ClickHouse insert per batch",
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        ),
        alert_evaluations=Counter("moodwire_alert_evaluations", "Alert rule evaluation rounds", registry=reg),
        alert_rounds_deferred=Counter(
            "moodwire_alert_rounds_deferred",
            "Alert rounds skipped while unprocessed events were older than MOODWIRE_ALERTS_MAX_LAG_S",
            registry=reg,
        ),
        alert_transitions=Counter(
            "moodwire_alert_transitions", "Alert state transitions written", ["state"], registry=reg
        ),
        alert_deliveries=Counter(
            "moodwire_alert_deliveries", "Webhook delivery outcomes", ["outcome"], registry=reg
        ),
        consumer_lag=lag,
        rebalance_seconds=Histogram(
            "moodwire_rebalance_seconds",
            "Consumer group rebalances: partitions revoked until new ones assigned",
            buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0),
            registry=reg,
        ),
        http_requests=Counter(
            "moodwire_http_requests", "Web API requests answered", ["route", "status"], registry=reg
        ),
        http_seconds=Histogram(
            "moodwire_http_seconds",
            "Web API request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        ),
    )


METRICS = make_metrics()
