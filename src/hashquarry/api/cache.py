"""A short-lived response cache for read-only endpoints, with single flight.

The figures behind every read endpoint change at most once per accounting flush
(about a second), while dashboards poll the same request many times a second. A
response is reused for `ttl` seconds when method, path, query, body and the *identity*
of the caller are the same, and concurrent identical requests wait for the one
computation instead of each running it (no stampede after expiry).

What is a read, what is a write and who is asking is the policy's (`cache_policy`):

- The identity is established for every request, hits included, from a finding about
  the key (or page) that is never older than a quarter of a second (one indexed lookup
  of its hash, re-made in the background), so a revoked key or a deleted page stops
  getting cached answers within that, whatever the entry's age. A request whose
  identity cannot be established (no key, a bad one) is never answered from the cache:
  the endpoint itself refuses it in its dialect's words.
- Entries are per identity, so two keys share an entry only when they see the same data
  (same owner, same scopes).
- An entry older than `ttl` is still answered for up to `stale` more seconds (default:
  `ttl`) while one background computation replaces it, so a busy endpoint never makes
  its callers wait for a recomputation: with a 1 s ttl an answer is at most 2 s old, and
  only a key nobody asked for in 2 s is computed while its caller waits.
- Only 200 answers are kept, and everything is dropped after a *successful* write (any
  2xx of a write endpoint): failed writes, unknown paths, /metrics or refusals never
  empty the cache, so nobody can keep it cold by sending junk. A read computed while a
  write ran is served to its own callers but not kept (a generation counter).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 1 << 16
log = logging.getLogger(__name__)


class Policy(Protocol):
    def is_read(self, method: str, path: str) -> bool: ...

    def is_write(self, method: str, path: str) -> bool: ...

    async def identity(self, scope: Scope) -> str | None:
        """Who is asking ("" for a public endpoint), or None: do not use the cache."""
        ...


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
        policy: Policy,
        ttl: float = 1.0,
        max_entries: int = 4096,
        max_bytes: int = 64 << 20,
        clock: Callable[[], float] = time.monotonic,
        stale: float | None = None,
    ) -> None:
        self.app = app
        self.policy = policy
        self.ttl = ttl
        self.stale = ttl if stale is None else stale
        self._tasks: set[asyncio.Task[None]] = set()
        self.max_entries = max_entries
        # Bodies can be large (worker/list of 1,000 workers is ~300 KB) and a caller can
        # vary its requests: memory is bounded in bytes, not only in entries.
        self.max_bytes = max_bytes
        self._bytes = 0
        self.clock = clock
        self.generation = 0  # bumped by every successful write
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Future[_Entry | None]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._bytes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if not self.policy.is_read(method, path):
            if self.policy.is_write(method, path):
                await self.app(scope, receive, self._clearing(send))
            else:
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
        identity = None if len(body) > MAX_BODY else await self.policy.identity(scope)
        if identity is None:
            await self.app(scope, _replay(body, receive), send)
            return
        key = b"\0".join(
            (
                method.encode(),
                path.encode(),
                scope.get("query_string", b""),
                identity.encode(),
                body,
            )
        )
        hit = self._entries.get(key)
        if hit is not None:
            age = self.clock() - hit.at
            if age < self.ttl + self.stale:
                if age >= self.ttl and key not in self._inflight:
                    self._refresh(key, scope, body)
                await _send(send, hit)
                return
        waiting = self._inflight.get(key)
        if waiting is not None:
            entry = await asyncio.shield(waiting)
            if entry is not None:
                await _send(send, entry)
                return
        await self._compute(key, scope, _replay(body, receive), send)

    async def _compute(self, key: bytes, scope: Scope, receive: Receive, send: Send) -> None:
        fut: asyncio.Future[_Entry | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        generation = self.generation
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
            await self.app(scope, receive, capture)
            if captured.get("status") == 200:
                entry = _Entry(self.clock(), 200, captured["headers"], captured["body"])
                if generation == self.generation:  # no write landed while computing
                    self._keep(key, entry)
        finally:
            if self._inflight.get(key) is fut:
                del self._inflight[key]
            fut.set_result(entry)

    def _keep(self, key: bytes, entry: _Entry) -> None:
        if len(entry.body) > self.max_bytes // 4:
            return  # one answer must not push out most of the others
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body)
        self._entries[key] = entry
        self._bytes += len(entry.body)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= len(dropped.body)

    def _refresh(self, key: bytes, scope: Scope, body: bytes) -> None:
        """Recompute an expired entry in the background (at most one per key)."""

        async def done() -> Message:
            return {"type": "http.disconnect"}

        async def discard(msg: Message) -> None:
            pass

        task = asyncio.create_task(self._compute(key, dict(scope), _replay(body, done), discard))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("refreshing a cached answer failed", exc_info=task.exception())

    def _clearing(self, send: Send) -> Send:
        async def clearing(msg: Message) -> None:
            # The handler has returned (its transaction is committed) once the response
            # starts: clear before the client can read its own write back.
            if msg["type"] == "http.response.start" and 200 <= msg["status"] < 300:
                self.clear()
            await send(msg)

        return clearing


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
