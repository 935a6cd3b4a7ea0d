"""The dashboard queries: named SQL constants with server-side bound parameters.

Each constant is documented, with the same SQL, in docs/queries.md, and the
Grafana dashboard (deploy/grafana/dashboards/moodwire.json) is built on them.
Parameters use ClickHouse's ``{name:Type}`` binding (clickhouse-connect's
``parameters=``), so no user input is ever formatted into SQL; an empty string
or empty array means "no filter".  Aggregates are read from ``minute_counts``
(duplicate-proof per-minute counts), drill-downs from ``events FINAL``.
"""

from __future__ import annotations

from typing import Final

# Per value of one dimension: counts in the window [start, end) and in the baseline
# [baseline_start, start) (the trailing 24 h before the window).  Minute buckets are
# selected by their start.
SUMMARY: Final = """
SELECT m.value AS value,
    sumIf(m.events, m.minute >= {start:DateTime('UTC')}) AS events,
    sumIf(m.negative, m.minute >= {start:DateTime('UTC')}) AS negative,
    sumIf(m.neutral, m.minute >= {start:DateTime('UTC')}) AS neutral,
    sumIf(m.positive, m.minute >= {start:DateTime('UTC')}) AS positive,
    if(events = 0, NULL, negative / events) AS negative_share,
    sumIf(m.events, m.minute < {start:DateTime('UTC')}) AS baseline_events,
    sumIf(m.negative, m.minute < {start:DateTime('UTC')}) AS baseline_negative,
    if(baseline_events = 0, NULL, baseline_negative / baseline_events) AS baseline_share
FROM minute_counts AS m
WHERE m.dim = {dim:String}
    AND m.minute >= {baseline_start:DateTime('UTC')} AND m.minute < {end:DateTime('UTC')}
GROUP BY m.value
ORDER BY events DESC, baseline_events DESC, value
LIMIT {limit:UInt32}
"""

# Counts per bucket of ``step_s`` seconds and value, for the ``series`` values with the
# most events in [from, to) (or only those in ``values`` when it is not empty).
TIMESERIES: Final = """
SELECT m.value AS value,
    toStartOfInterval(m.minute, INTERVAL {step_s:UInt32} SECOND) AS t,
    sum(m.events) AS events,
    sum(m.negative) AS negative,
    sum(m.neutral) AS neutral,
    sum(m.positive) AS positive
FROM minute_counts AS m
WHERE m.dim = {dim:String}
    AND m.minute >= {from:DateTime('UTC')} AND m.minute < {to:DateTime('UTC')}
    AND m.value IN (
        SELECT value FROM minute_counts
        WHERE dim = {dim:String}
            AND minute >= {from:DateTime('UTC')} AND minute < {to:DateTime('UTC')}
            AND (empty({values:Array(String)}) OR has({values:Array(String)}, value))
        GROUP BY value
        ORDER BY sum(events) DESC, value
        LIMIT {series:UInt32})
GROUP BY value, t
ORDER BY value, t
"""

# Text cut at 1,000 characters (substringUTF8: substring counts bytes and would split a CJK character);
# text_truncated reads the column (events.text), not the cut text that the alias `text` names.
_EVENT_COLUMNS = """id, ts, kind, source, lang, title,
    substringUTF8(text, 1, 1000) AS text, lengthUTF8(events.text) > 1000 AS text_truncated, url, entities,
    sentiment, sentiment_scores, topic, topic_scores, model_versions, scored_at"""

_EVENT_FILTERS = """ts >= {since:DateTime64(3, 'UTC')} AND ts < {until:DateTime64(3, 'UTC')}
    AND ({sentiment:String} = '' OR sentiment = {sentiment:String})
    AND ({topic:String} = '' OR topic = {topic:String})
    AND ({source:String} = '' OR source = {source:String})
    AND ({kind:String} = '' OR kind = {kind:String})
    AND ({lang:String} = '' OR lang = {lang:String})
    AND ({entity:String} = '' OR has(entities, {entity:String}))"""

# Newest events in [since, until) matching the filters.
EVENTS_RECENT: Final = f"""
SELECT {_EVENT_COLUMNS}
FROM events FINAL
WHERE {_EVENT_FILTERS}
ORDER BY ts DESC, id
LIMIT {{limit:UInt32}}
"""

# The most negative events in [since, until): highest negative probability first.
EVENTS_MOST_NEGATIVE: Final = f"""
SELECT {_EVENT_COLUMNS}
FROM events FINAL
WHERE {_EVENT_FILTERS}
ORDER BY sentiment_scores['negative'] DESC, ts DESC, id
LIMIT {{limit:UInt32}}
"""

# Events whose winning probability (sentiment, topic, or the lower of the two for 'any')
# is below ``threshold``: candidates for labelling and drift checks, least confident first.
LOW_CONFIDENCE: Final = f"""
SELECT {_EVENT_COLUMNS},
    arrayMax(mapValues(sentiment_scores)) AS sentiment_confidence,
    arrayMax(mapValues(topic_scores)) AS topic_confidence,
    multiIf({{task:String}} = 'sentiment', sentiment_confidence,
            {{task:String}} = 'topic', topic_confidence,
            least(sentiment_confidence, topic_confidence)) AS confidence
FROM events FINAL
WHERE {_EVENT_FILTERS}
    AND confidence < {{threshold:Float64}}
ORDER BY confidence, ts DESC, id
LIMIT {{limit:UInt32}}
"""

# Per model version pair: events scored in [since, until), their sentiment split, and
# mean winning probabilities (a drop hints at drift).
MODELS: Final = """
SELECT model_versions['sentiment'] AS sentiment_version,
    model_versions['topic'] AS topic_version,
    count() AS events,
    countIf(sentiment = 'negative') AS negative,
    countIf(sentiment = 'neutral') AS neutral,
    countIf(sentiment = 'positive') AS positive,
    avg(arrayMax(mapValues(sentiment_scores))) AS mean_sentiment_confidence,
    avg(arrayMax(mapValues(topic_scores))) AS mean_topic_confidence,
    min(ts) AS first_ts,
    max(ts) AS last_ts
FROM events FINAL
WHERE ts >= {since:DateTime64(3, 'UTC')} AND ts < {until:DateTime64(3, 'UTC')}
GROUP BY sentiment_version, topic_version
ORDER BY last_ts DESC
LIMIT 100
"""

# Alert episodes in their latest state: every firing one, plus those resolved since ``since``.
ALERTS: Final = """
SELECT dedupe_key, rule_id, dim, value, state, severity, first_seen, last_seen, resolved_at,
    window_s, volume, negative, negative_share, baseline_share, zscore, sample_ids
FROM alerts_current
WHERE ({state:String} = '' OR state = {state:String})
    AND (state = 'firing' OR last_seen >= {since:DateTime64(3, 'UTC')})
ORDER BY state = 'firing' DESC, last_seen DESC, dedupe_key
LIMIT {limit:UInt32}
"""

# Readiness probe.
PING: Final = "SELECT 1"

ALL: Final = {
    "SUMMARY": SUMMARY,
    "TIMESERIES": TIMESERIES,
    "EVENTS_RECENT": EVENTS_RECENT,
    "EVENTS_MOST_NEGATIVE": EVENTS_MOST_NEGATIVE,
    "LOW_CONFIDENCE": LOW_CONFIDENCE,
    "MODELS": MODELS,
    "ALERTS": ALERTS,
}
