"""The worker's one ClickHouse client, shared by every task in the process.

chDB is one engine per process with no async client, and the worker runs the
store agent, the alert evaluator and the web API side by side.  :class:`Database`
runs each call in a thread and serializes calls on one lock, so those tasks
never use the client at the same time.  Against a ClickHouse server the lock
costs little: every call is one short request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from clickhouse_connect.driver.client import Client

T = TypeVar("T")


class Database:
    def __init__(self, client: Client) -> None:
        self.client = client
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(client, *args, **kwargs)`` under the lock (blocking; for threads and sync code)."""
        with self._lock:
            return fn(self.client, *args, **kwargs)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(client, *args, **kwargs)`` in a worker thread, under the lock."""
        return await asyncio.to_thread(self.call, fn, *args, **kwargs)

    def close(self) -> None:
        with self._lock:
            self.client.close()
