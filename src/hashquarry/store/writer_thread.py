"""A store engine on its own thread and event loop, for heavy writes.

SQLAlchemy's asyncio layer runs its Python work (statement compilation,
parameter processing, result rows) on the calling event loop. A flush of
thousands of rows, or a PPLNS window over a million shares, would stall the
Stratum loop for that long and every miner's ack with it. Running those writes
on a second loop in a second thread bounds the stall to the interpreter's
switch interval.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.store.engine import make_engine

T = TypeVar("T")


class WriterThread:
    def __init__(self, url: str, name: str = "store-writer") -> None:
        self.url = url
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.engine: AsyncEngine | None = None
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self.engine = make_engine(self.url)
        self._ready.set()
        self._loop.run_forever()

    async def run(self, fn: Callable[[AsyncEngine], Awaitable[T]]) -> T:
        """Run `fn(engine)` on the writer's loop and wait for it from the caller's."""
        assert self.engine is not None

        async def call() -> T:
            assert self.engine is not None
            return await fn(self.engine)

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call(), self._loop))

    async def close(self) -> None:
        if not self._thread.is_alive():
            return
        if self.engine is not None:
            engine = self.engine
            await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(engine.dispose(), self._loop)
            )
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, 10)
        self._loop.close()
