"""A short-lived response cache for read-only endpoints, with single flight.

The figures behind every read endpoint change at most once per accounting flush
(about a second), while dashboards poll the same request many times a second. A
response is reused for `ttl` seconds when method, path, query, body and the
credentials are the same, and concurrent identical requests wait for the one
computation instead of each running it (no stampede after expiry). Only 200
answers of endpoints listed as read-only are cached.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

READ_ONLY = re.compile(
    r"^/api/pool/|^/api/users|^/api/v1/"
    r"|^/v2/(hash_rate/(info|info_list|history|worker/list|worker/history)"
    r"|hash_rate/distribution/(info|orders|settlements)|revenue/distribution/info"
    r"|assets/(balance|transactions/list)|blocks/|mining_user/(get|list))$"
)
CREDENTIAL_HEADERS = (b"authorization", b"f2p-api-secret")
MAX_BODY = 1 << 16


@dataclass(slots=True)
class _Entry:
    at: float
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class ResponseCache:
    def __init__(
        self,
        app: ASGIApp,
        ttl: float = 1.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Future[_Entry | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not READ_ONLY.match(scope["path"]):
            # A write through the API may change any figure: nothing cached survives it.
            self._entries.clear()
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > MAX_BODY:
                break
        if len(body) > MAX_BODY:  # not worth caching; replay what was read
            await self.app(scope, _replay(body, receive), send)
            return
        creds = b"|".join(v for k, v in scope["headers"] if k in CREDENTIAL_HEADERS)
        key = b"\0".join(
            (
                scope["method"].encode(),
                scope["path"].encode(),
                scope.get("query_string", b""),
                creds,
                body,
            )
        )
        now = self.clock()
        hit = self._entries.get(key)
        if hit is not None and now - hit.at < self.ttl:
            await _send(send, hit)
            return
        waiting = self._inflight.get(key)
        if waiting is not None:
            entry = await asyncio.shield(waiting)
            if entry is not None:
                await _send(send, entry)
                return
        fut: asyncio.Future[_Entry | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        captured: dict[str, Any] = {"headers": [], "body": b""}

        async def capture(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                captured["status"] = msg["status"]
                captured["headers"] = list(msg.get("headers", []))
            elif msg["type"] == "http.response.body":
                captured["body"] += msg.get("body", b"")
            await send(msg)

        entry: _Entry | None = None
        try:
            await self.app(scope, _replay(body, receive), capture)
            if captured.get("status") == 200:
                entry = _Entry(self.clock(), 200, captured["headers"], captured["body"])
                self._entries[key] = entry
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        finally:
            del self._inflight[key]
            fut.set_result(entry)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def _send(send: Send, entry: _Entry) -> None:
    await send({"type": "http.response.start", "status": entry.status, "headers": entry.headers})
    await send({"type": "http.response.body", "body": entry.body})
