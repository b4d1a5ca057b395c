"""Watching the pool from outside: a TCP relay in front of the node's RPC, and ZMQ stamps.

The block-submit figure wants "winning share arrives" to "submitblock is sent". The
pool's own histogram ends when the node answers, which adds the node's validation
time; a relay between pool and node sees the submitblock request go by, so the bench
can time it from outside for any pool it can point at a node. Each runs in its own
thread with nothing else to do, so its timestamps are not delayed by the runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

MARKER = b'"submitblock"'


class RpcRelay:
    """Forwards TCP connections to `upstream_port` and stamps each submitblock request."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.stamps: list[int] = []
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="bench-rpc-relay", daemon=True)

    def start(self) -> int:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the RPC relay did not start")
        return self.port

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def wait_stamp(self, after_ns: int, timeout: float) -> int | None:
        """The first submitblock stamp at or after `after_ns`, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for s in self.stamps:
                    if s >= after_ns:
                        return s
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def _stamp(self) -> None:
        now = time.time_ns()
        with self._cond:
            self.stamps.append(now)
            self._cond.notify_all()

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, watch: bool
    ) -> None:
        tail = b""
        try:
            while data := await src.read(65536):
                # The method name may straddle two reads; keep the end of the last one.
                if watch and MARKER in tail + data:
                    self._stamp()
                tail = data[-len(MARKER) :] if watch else b""
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pump(reader, up_writer, True), self._pump(up_reader, writer, False)
        )

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = int(server.sockets[0].getsockname()[1])
        self._started.set()
        async with server:
            await self._stop.wait()

    def _main(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()


class ZmqStamps:
    """Arrival times of the node's ZMQ hashblock messages, by block hash (display hex)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.seen: dict[str, int] = {}
        self._cond = threading.Condition()
        self._running = True
        self._thread = threading.Thread(target=self._main, name="bench-zmq", daemon=True)

    def start(self) -> ZmqStamps:
        self._thread.start()
        time.sleep(0.3)  # a SUB socket misses what is published before it has joined
        return self

    def stop(self) -> None:
        self._running = False
        self._thread.join(5)

    def wait(self, block_hash: str, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while block_hash not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self.seen[block_hash]

    def _main(self) -> None:
        import zmq

        ctx = zmq.Context()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 200)
        sock.setsockopt(zmq.SUBSCRIBE, b"hashblock")
        sock.connect(self.endpoint)
        try:
            while self._running:
                try:
                    frames = sock.recv_multipart()
                except zmq.Again:
                    continue
                now = time.time_ns()
                # bitcoind publishes the hash in display order.
                if len(frames) >= 2 and frames[0] == b"hashblock":
                    with self._cond:
                        self.seen.setdefault(frames[1].hex(), now)
                        self._cond.notify_all()
        finally:
            sock.close(0)
            ctx.term()
