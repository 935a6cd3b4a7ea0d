"""The worker's HTTP server: read-only JSON API (``/api/v1``), probes, ``/metrics`` and the live page.

Every query runs through the worker's one ClickHouse client (``ctx.db``): the
embedded engine admits one process, which is why the API lives in the worker.
Handlers read their parameters through :mod:`streams.web.params` (bad input is
a 400 naming the parameter) and run only the named SQL of
:mod:`streams.web.queries` with bound parameters.  ``/api/*`` needs
``Authorization: Bearer <MOODWIRE_API_TOKEN>`` (a read-only token: every route is a GET) when a
token is set (streams.web.access decides when one is required); the page,
``/health``, ``/ready`` and ``/metrics`` stay open (docs/web.md says why).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from clickhouse_connect.driver.exceptions import OperationalError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.clickhouse import error_line
from streams.metrics import METRICS
from streams.web import queries as q
from streams.web.access import token_matches
from streams.web.params import (
    DIMENSIONS,
    MAX_SERIES,
    MAX_WINDOW,
    SENTIMENTS,
    STEPS,
    BadParam,
    Params,
    buckets,
    check_points,
    parse_choice,
    parse_duration,
    parse_float,
    parse_limit,
    parse_text,
    parse_time,
    time_range,
)

if TYPE_CHECKING:
    from streams.context import WorkerContext

log = logging.getLogger("moodwire.web")

API = "/api/v1"
QUERY_TIMEOUT_S = 15.0  # a query waiting this long (lock + run) answers 503
PROBE_TIMEOUT_S = 3.0
BASELINE = timedelta(hours=24)
STATIC = Path(str(resources.files("streams.web") / "static"))
CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
EVENT_FILTERS = ("sentiment", "topic", "source", "kind", "lang", "entity")

CTX: web.AppKey[WorkerContext] = web.AppKey("ctx", object)  # type: ignore[arg-type]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Unavailable(Exception):
    """ClickHouse did not answer (in time): the API answers 503."""


# -- JSON -------------------------------------------------------------------------------------------


def iso(value: datetime) -> str:
    """RFC 3339 UTC with milliseconds, as the rest of moodwire writes times."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, default=_default, ensure_ascii=False, separators=(",", ":")),
        status=status,
        content_type="application/json",
    )


def error(status: int, message: str, param: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if param is not None:
        body["param"] = param
    return json_response(body, status)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


# -- middleware -------------------------------------------------------------------------------------


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer auth on /api/*, errors as JSON, and one request counter per route and status."""
    t0 = time.perf_counter()
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    response: web.StreamResponse
    try:
        if request.path.startswith("/api/") and not _authorized(request):
            response = error(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
            response.headers["WWW-Authenticate"] = 'Bearer realm="moodwire"'
        else:
            response = await handler(request)
    except BadParam as exc:
        response = error(400, exc.reason, exc.param)
    except Unavailable as exc:
        response = error(503, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error(exc.status, exc.reason)
    except Exception:
        log.exception("web=error path=%s", request.path)
        response = error(500, "internal error (see the worker log)")
    # The page loads nothing from elsewhere (no CDN); the policy makes any such load fail loudly.
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    METRICS.http_requests.labels(route, str(response.status)).inc()
    METRICS.http_seconds.labels(route).observe(time.perf_counter() - t0)
    return response


def _authorized(request: web.Request) -> bool:
    token = request.app[CTX].settings.api_token
    if token is None:
        return True
    return token_matches(request.headers.get("Authorization", ""), token.get_secret_value())


# -- helpers ----------------------------------------------------------------------------------------


def params(request: web.Request, known: tuple[str, ...]) -> Params:
    raw: dict[str, list[str]] = {}
    for key in request.query:
        raw.setdefault(key, request.query.getall(key))
    p = Params(raw, datetime.now(UTC))
    p.reject_unknown(known)
    return p


async def query(request: web.Request, sql: str, parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Run one named query through the worker's ClickHouse client; rows as dicts."""
    ctx = request.app[CTX]

    def run(client: Any) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        result = client.query(sql, parameters=dict(parameters))
        return tuple(result.column_names), [tuple(r) for r in result.result_rows]

    try:
        columns, rows = await asyncio.wait_for(ctx.db.run(run), QUERY_TIMEOUT_S)
    except TimeoutError:
        raise Unavailable(f"clickhouse did not answer within {QUERY_TIMEOUT_S:.0f}s") from None
    except OperationalError as exc:  # connection refused / lost: the server is down, not the query wrong
        log.warning("web=clickhouse_unavailable error=%s", error_line(exc))
        raise Unavailable(f"clickhouse unavailable: {error_line(exc)}") from None
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _event_filters(p: Params) -> dict[str, str]:
    out = {name: parse_text(p, name) for name in EVENT_FILTERS}
    if out["sentiment"] and out["sentiment"] not in SENTIMENTS:
        raise BadParam("sentiment", f"{out['sentiment']!r} is not one of {', '.join(SENTIMENTS)}")
    return out


def _event(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("sentiment_scores", "topic_scores"):
        row[key] = {k: _round(v) for k, v in row[key].items()}
    for key in ("sentiment_confidence", "topic_confidence", "confidence"):
        if key in row:
            row[key] = _round(row[key])
    row["text_truncated"] = bool(row["text_truncated"])
    return row


# -- API handlers -----------------------------------------------------------------------------------


async def index(request: web.Request) -> web.Response:
    params(request, ())
    return json_response(
        {
            "version": "v1",
            "endpoints": {
                "summary": f"{API}/summary?window=15m&dim=topic",
                "timeseries": f"{API}/timeseries?from=now-1h&to=now&step=1m&dim=topic&value=tech",
                "events": f"{API}/events?sentiment=negative&topic=&source=&kind=&lang=&entity=&since=&until=&limit=50&sort=time",
                "low_confidence": f"{API}/low-confidence?task=any&threshold=0.5&since=&limit=50",
                "models": f"{API}/models?since=now-24h",
                "alerts": f"{API}/alerts?state=firing",
            },
        }
    )


async def summary(request: web.Request) -> web.Response:
    p = params(request, ("window", "dim", "at", "limit"))
    window = parse_duration(
        "window", p.get("window") or "15m", minimum=timedelta(minutes=1), maximum=MAX_WINDOW
    )
    dim = parse_choice(p, "dim", DIMENSIONS, "topic")
    end = parse_time("at", p.get("at") or "now", p.now)
    limit = parse_limit(p, default=100)
    start = end - window
    base = {"start": start, "end": end, "baseline_start": start - BASELINE}
    rows = await query(request, q.SUMMARY, {**base, "dim": dim, "limit": limit})
    # Every event has exactly one topic, so the topic split sums to the totals.
    total_rows = rows if dim == "topic" and len(rows) < limit else None
    if total_rows is None:
        total_rows = await query(request, q.SUMMARY, {**base, "dim": "topic", "limit": 10_000})
    totals = {k: sum(int(r[k]) for r in total_rows) for k in ("events", "negative", "neutral", "positive")}
    totals["baseline_events"] = sum(int(r["baseline_events"]) for r in total_rows)
    totals["baseline_negative"] = sum(int(r["baseline_negative"]) for r in total_rows)
    totals["negative_share"] = _share(totals["negative"], totals["events"])
    totals["baseline_share"] = _share(totals["baseline_negative"], totals["baseline_events"])
    for r in rows:
        r["negative_share"] = _round(r["negative_share"])
        r["baseline_share"] = _round(r["baseline_share"])
    return json_response(
        {
            "dim": dim,
            "window": p.get("window") or "15m",
            "from": start,
            "to": end,
            "baseline_from": start - BASELINE,
            "totals": totals,
            "values": rows,
        }
    )


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 6)


async def timeseries(request: web.Request) -> web.Response:
    p = params(request, ("from", "to", "step", "dim", "value", "series"))
    step = parse_choice(p, "step", STEPS, "1m")
    step_s = STEPS[step]
    since, until = time_range(p, "from", "to", default_span=timedelta(hours=1))
    check_points(since, until, step_s)
    dim = parse_choice(p, "dim", DIMENSIONS, "topic")
    values = p.getall("value")
    if len(values) > MAX_SERIES:
        raise BadParam("value", f"at most {MAX_SERIES} values")
    for v in values:
        if len(v) > 256:
            raise BadParam("value", "a value is longer than 256 characters")
    series_n = parse_limit(p, "series", default=10, maximum=MAX_SERIES)
    grid = buckets(since, until, step_s)
    # Whole buckets: a bucket is counted in full even when from/to cut into it.
    rows = await query(
        request,
        q.TIMESERIES,
        {
            "step_s": step_s,
            "dim": dim,
            "from": grid[0],
            "to": grid[-1] + timedelta(seconds=step_s),
            "values": values,
            "series": series_n,
        },
    )
    index_of = {t: i for i, t in enumerate(grid)}
    series: dict[str, dict[str, list[Any]]] = {}
    for r in rows:
        s = series.setdefault(
            r["value"], {k: [0] * len(grid) for k in ("events", "negative", "neutral", "positive")}
        )
        i = index_of.get(r["t"].replace(tzinfo=UTC))
        if i is None:
            continue
        for k in ("events", "negative", "neutral", "positive"):
            s[k][i] = int(r[k])
    out = []
    for value in sorted(series, key=lambda v: (-sum(series[v]["events"]), v)):
        s = series[value]
        shares = [_share(n, e) for n, e in zip(s["negative"], s["events"], strict=True)]
        out.append({"value": value, **s, "negative_share": shares})
    return json_response(
        {
            "dim": dim,
            "step": step,
            "from": grid[0],
            "to": grid[-1] + timedelta(seconds=step_s),
            "t": grid,
            "series": out,
        }
    )


async def events(request: web.Request) -> web.Response:
    p = params(request, (*EVENT_FILTERS, "since", "until", "limit", "sort"))
    filters = _event_filters(p)
    since, until = time_range(p, "since", "until", default_span=timedelta(hours=1))
    sort = parse_choice(p, "sort", ("time", "negative"), "time")
    limit = parse_limit(p, default=50)
    sql = q.EVENTS_RECENT if sort == "time" else q.EVENTS_MOST_NEGATIVE
    rows = await query(request, sql, {**filters, "since": since, "until": until, "limit": limit})
    return json_response(
        {"from": since, "to": until, "sort": sort, "count": len(rows), "events": [_event(r) for r in rows]}
    )


async def low_confidence(request: web.Request) -> web.Response:
    p = params(request, (*EVENT_FILTERS, "since", "until", "limit", "task", "threshold"))
    filters = _event_filters(p)
    since, until = time_range(p, "since", "until", default_span=timedelta(hours=24))
    task = parse_choice(p, "task", ("any", "sentiment", "topic"), "any")
    threshold = parse_float(p, "threshold", 0.5, 0.0, 1.0)
    limit = parse_limit(p, default=50)
    rows = await query(
        request,
        q.LOW_CONFIDENCE,
        {**filters, "since": since, "until": until, "task": task, "threshold": threshold, "limit": limit},
    )
    return json_response(
        {
            "from": since,
            "to": until,
            "task": task,
            "threshold": threshold,
            "count": len(rows),
            "events": [_event(r) for r in rows],
        }
    )


async def models(request: web.Request) -> web.Response:
    p = params(request, ("since", "until"))
    since, until = time_range(p, "since", "until", default_span=timedelta(hours=24))
    rows = await query(request, q.MODELS, {"since": since, "until": until})
    for r in rows:
        r["mean_sentiment_confidence"] = _round(r["mean_sentiment_confidence"])
        r["mean_topic_confidence"] = _round(r["mean_topic_confidence"])
    return json_response({"from": since, "to": until, "models": rows})


async def alerts(request: web.Request) -> web.Response:
    p = params(request, ("state", "since", "limit"))
    state = parse_choice(p, "state", ("firing", "resolved", "all"), "all")
    since = parse_time("since", p.get("since") or "now-24h", p.now)
    limit = parse_limit(p, default=100)
    rows = await query(
        request, q.ALERTS, {"state": "" if state == "all" else state, "since": since, "limit": limit}
    )
    for r in rows:
        for k in ("negative_share", "baseline_share", "zscore"):
            r[k] = _round(r[k])
    return json_response({"state": state, "since": since, "count": len(rows), "alerts": rows})


# -- probes, metrics, page --------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """Broker, runner (Triton) and ClickHouse, checked concurrently with short timeouts; 503 if any fails."""
    ctx = request.app[CTX]
    probes = {"broker": _check_broker(ctx)}
    if ctx.runner is not None:  # a worker that classifies
        probes["runner"] = _check_runner(ctx)
    if ctx.db is not None:  # a worker that stores or delivers
        probes["clickhouse"] = _check_clickhouse(ctx)
    checks = await asyncio.gather(*probes.values())
    components = dict(zip(probes, checks, strict=True))
    ok = all(c["ok"] for c in components.values())
    return json_response({"ready": ok, "components": components}, 200 if ok else 503)


async def _probe(what: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        detail = await asyncio.wait_for(what(), PROBE_TIMEOUT_S)
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {PROBE_TIMEOUT_S:.0f}s"}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"}
    return {"ok": True, "ms": round((time.perf_counter() - t0) * 1000, 1), "detail": detail}


async def _check_broker(ctx: WorkerContext) -> dict[str, Any]:
    async def check() -> Any:
        producer = ctx.app.producer
        if not ctx.app.ready.is_set() or producer is None:
            raise RuntimeError("agents not started")
        await producer.client.fetch_all_metadata()  # a real round trip to the cluster
        return ctx.settings.kafka_bootstrap_servers

    return await _probe(check)


async def _check_runner(ctx: WorkerContext) -> dict[str, Any]:
    async def check() -> Any:
        probe = getattr(ctx.runner, "ais_ready", None)
        if probe is None:  # in-process runner: ready once constructed
            return ctx.settings.runner
        if not await probe(PROBE_TIMEOUT_S - 0.5):
            raise RuntimeError("server or model not ready")
        if ctx.settings.runner != "triton":
            return ctx.settings.runner
        return f"{ctx.settings.runner} {ctx.settings.triton_url}"

    return await _probe(check)


async def _check_clickhouse(ctx: WorkerContext) -> dict[str, Any]:
    async def check() -> Any:
        await ctx.db.run(lambda client: client.command(q.PING))
        return "SELECT 1"

    return await _probe(check)


async def metrics(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(generate_latest, METRICS.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def build_app(ctx: WorkerContext) -> web.Application:
    app = web.Application(middlewares=[guard])
    app[CTX] = ctx
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    if ctx.db is None:  # a classify-only worker: probes and /metrics, no data to serve
        return app
    app.router.add_get("/", page)
    app.router.add_static("/static/", STATIC, append_version=False)
    app.router.add_get(API, index)
    app.router.add_get(f"{API}/summary", summary)
    app.router.add_get(f"{API}/timeseries", timeseries)
    app.router.add_get(f"{API}/events", events)
    app.router.add_get(f"{API}/low-confidence", low_confidence)
    app.router.add_get(f"{API}/models", models)
    app.router.add_get(f"{API}/alerts", alerts)
    return app
