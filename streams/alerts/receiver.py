"""A small webhook receiver on loopback that verifies signatures: the demo's, and the tests'.

Runs an aiohttp server in its own thread (so synchronous code can start,
stop and inspect it), records every request with its headers, body and
whether the Standard Webhooks signature verified, and answers 200 - or
whatever status ``responder`` returns, which is how tests make it fail.
``stop()`` then ``start()`` on the same port simulates a receiver outage.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from streams.alerts.webhooks import verify


@dataclass(frozen=True)
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int

    @property
    def msg_id(self) -> str:
        return self.headers.get("webhook-id", "")

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(
        self,
        secret: str,
        port: int = 0,
        host: str = "127.0.0.1",
        on_receive: Callable[[Received], None] | None = None,
    ) -> None:
        self.secret = secret
        self.host = host
        self.port = port
        self.on_receive = on_receive
        self.received: list[Received] = []
        # status, or (status, extra response headers), per verified request; default 200
        self.responder: Callable[[Received], int | tuple[int, dict[str, str]]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hooks"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        ok = verify(self.secret, headers, body)
        rec = Received(time.time(), request.path, headers, body, ok, 200 if ok else 401)
        extra: dict[str, str] = {}
        if ok and self.responder is not None:
            answer = self.responder(rec)
            status, extra = answer if isinstance(answer, tuple) else (answer, {})
            rec = Received(rec.at, rec.path, headers, body, ok, status)
        with self._lock:
            self.received.append(rec)
        if self.on_receive is not None:
            self.on_receive(rec)
        return web.Response(status=rec.status, text="ok" if rec.status < 300 else "no", headers=extra)

    def start(self) -> Receiver:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="webhook-receiver", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("webhook receiver did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        loop = self._loop
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()
        self._loop = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def deliveries(self, type_: str | None = None) -> list[Received]:
        """Verified, accepted (2xx) deliveries, optionally of one payload type."""
        with self._lock:
            out = [r for r in self.received if r.verified and r.status < 300]
        return [r for r in out if type_ is None or r.json().get("type") == type_]
