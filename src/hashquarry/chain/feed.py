"""Keeps a fresh block template: ZMQ hashblock, tip polling as fallback, periodic refresh.

It never gives up on the node: while the node is away it keeps retrying with
backoff, and the first template after the node comes back is always
emitted, so miners get fresh work at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from hashquarry import metrics
from hashquarry.chain.rpc import NodeError, NodeRpc
from hashquarry.chain.template import Template, TemplateError, parse_template

log = logging.getLogger(__name__)

TemplateHandler = Callable[[Template, str], Awaitable[None] | None]


class TemplateFeed:
    def __init__(
        self,
        rpc: NodeRpc,
        on_template: TemplateHandler,
        *,
        zmq_endpoint: str | None = None,
        poll_interval: float = 2.0,
        refresh_interval: float = 30.0,
    ) -> None:
        self.rpc = rpc
        self.on_template = on_template
        self.zmq_endpoint = zmq_endpoint
        self.poll_interval = poll_interval
        self.refresh_interval = refresh_interval
        self.current: Template | None = None
        self.node_ok = False
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self._wake_reason = "start"
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()

    def poke(self, reason: str = "poke") -> None:
        """Fetch a template now (e.g. right after the pool found a block)."""
        self._wake_reason = reason
        self._wake.set()

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._run(), name="template-feed"))
        if self.zmq_endpoint:
            self._tasks.append(asyncio.create_task(self._zmq(), name="zmq-hashblock"))

    async def wait_ready(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()

    async def _zmq(self) -> None:
        import zmq
        import zmq.asyncio

        ctx = zmq.asyncio.Context.instance()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"hashblock")
        sock.connect(self.zmq_endpoint)  # ZMQ reconnects by itself if the node restarts
        log.info("listening for new blocks on %s", self.zmq_endpoint)
        try:
            while True:
                frames = await sock.recv_multipart()
                if frames and frames[0] == b"hashblock":
                    self.poke("zmq hashblock")
        finally:
            sock.close(0)

    async def _fetch(self, reason: str) -> None:
        gbt = await self.rpc.getblocktemplate()
        template = parse_template(gbt)
        was_down = not self.node_ok
        self._set_ok()
        prev = self.current
        new_block = prev is None or prev.prev_hash != template.prev_hash
        self.current = template
        if new_block or was_down or reason in ("refresh", "poke"):
            why = "new block" if new_block else ("node back" if was_down else reason)
            log.info(
                "template height %d (%s, %d txs)", template.height, why, len(template.transactions)
            )
            result = self.on_template(template, why)
            if asyncio.iscoroutine(result):
                await result
        self._ready.set()

    def _set_ok(self) -> None:
        if not self.node_ok:
            log.info("node %s is answering", self.rpc.url)
        self.node_ok = True
        self.last_error = None
        metrics.NODE_UP.set(1)

    def _set_down(self, exc: Exception) -> None:
        if self.node_ok or self.last_error is None:
            log.warning("node %s trouble: %s", self.rpc.url, exc)
        self.node_ok = False
        self.last_error = str(exc)
        metrics.NODE_UP.set(0)

    async def _run(self) -> None:
        backoff = 0.5
        last_refresh = 0.0
        reason = "start"
        while True:
            try:
                now = time.monotonic()
                if (
                    reason != "poll"
                    or self.current is None
                    or not self.node_ok
                    or now - last_refresh >= self.refresh_interval
                ):
                    if reason == "poll" and self.current is not None and self.node_ok:
                        reason = "refresh"
                    await self._fetch(reason)
                    last_refresh = now
                else:
                    best = await self.rpc.call("getbestblockhash", retries=0)
                    if self.current is not None and best != self.current.prev_hash_hex:
                        await self._fetch("tip changed")
                        last_refresh = now
                backoff = 0.5
            except (NodeError, TemplateError, OSError) as exc:
                self._set_down(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                reason = "retry"
                continue
            except Exception as exc:  # the feed must outlive any surprise
                log.exception("template feed error")
                self._set_down(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            reason = self._wake_reason if self._wake.is_set() else "poll"
            self._wake_reason = "poke"


class StaticTemplateFeed:
    """Serves one getblocktemplate answer from a file, for benchmarks.

    Used to measure the Stratum hot path with a template shape no local node can
    produce while shares stay shares (e.g. thousands of transactions at a
    difficulty-1 target). Blocks are still submitted to the node if one is found.
    """

    def __init__(self, path: str, on_template: TemplateHandler) -> None:
        import orjson

        with open(path, "rb") as fh:
            self.current: Template | None = parse_template(orjson.loads(fh.read()))
        self.on_template = on_template
        self.node_ok = True
        self.last_error: str | None = None

    async def start(self) -> None:
        assert self.current is not None
        result = self.on_template(self.current, "static template")
        if asyncio.iscoroutine(result):
            await result

    async def wait_ready(self, timeout: float | None = None) -> bool:
        return True

    def poke(self, reason: str = "poke") -> None:
        pass

    async def stop(self) -> None:
        pass
