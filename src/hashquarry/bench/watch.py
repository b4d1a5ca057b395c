"""A miner that only listens, and knows when each notify reached its socket.

For the broadcast figure the question is when the pool's notify reached each miner,
not when a busy load generator got round to reading it: with 10,000 sockets becoming
readable at once, user-space timestamps would add the generator's own reading time to
the pool's. So these connections read with recvmsg and SO_TIMESTAMPNS, and record the
kernel's receive time (CLOCK_REALTIME, the same clock as time.time_ns) next to the
user-space one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time

import orjson

# Linux values; the socket module does not export them on every build.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = getattr(socket, "SCM_TIMESTAMPNS", SO_TIMESTAMPNS)
_TIMESPEC = struct.Struct("qq")
_CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)
RECV_SIZE = 1 << 18
AUTHORIZE_ID = 2


def kernel_stamp(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The SO_TIMESTAMPNS receive time in ns from recvmsg's ancillary data, 0 if absent."""
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(payload) >= 16:
            sec, nsec = _TIMESPEC.unpack_from(payload)
            return int(sec) * 1_000_000_000 + int(nsec)
    return 0


class WatchConn:
    __slots__ = (
        "authorized", "buf", "closed", "has_job", "hello", "loop", "lost", "notices", "sock",
    )  # fmt: skip

    def __init__(self, hello: bytes) -> None:
        self.hello = hello  # subscribe + authorize
        self.sock: socket.socket | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.buf = b""
        self.authorized = False
        self.has_job = False
        self.closed = False
        self.lost = False
        # (kernel ns, user ns, line) of every notify line, until the runner asks.
        self.notices: list[tuple[int, int, bytes]] = []

    @property
    def ready(self) -> bool:
        return self.authorized and self.has_job and not self.closed

    async def open(self, loop: asyncio.AbstractEventLoop, host: str, port: int, src: str) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.bind((src, 0))
            await loop.sock_connect(sock, (host, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.send(self.hello)  # a few hundred bytes always fit an empty send buffer
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.loop = loop
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            data, anc, _flags, _addr = sock.recvmsg(RECV_SIZE, _CMSG_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.lost = True
            self.close()
            return
        user_ns = time.time_ns()
        if not data:
            self.lost = True
            self.close()
            return
        # 0 when the kernel had no stamp (it enables them system-wide lazily, the first
        # time a socket asks); the runner then falls back to user_ns and says so.
        kernel_ns = kernel_stamp(anc)
        buf = self.buf + data if self.buf else data
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            line = buf[start:end]
            start = end + 1
            if b'"mining.notify"' in line:
                # Parsing waits until the runner asks: reading fast is the point here.
                self.notices.append((kernel_ns, user_ns, line))
                self.has_job = True
            elif not self.authorized and line:
                self._handshake(line)
        self.buf = buf[start:]

    def _handshake(self, line: bytes) -> None:
        with contextlib.suppress(orjson.JSONDecodeError):
            msg = orjson.loads(line)
            if isinstance(msg, dict) and msg.get("id") == AUTHORIZE_ID:
                self.authorized = msg.get("result") is True
                if not self.authorized:
                    self.close()

    def park(self) -> None:
        """Stop reading: the pool's writes land in the socket buffer, kernel-stamped as
        they arrive, and wake nobody. Miners on other machines cost the pool neither
        wake-ups nor CPU on its own cores; on loopback a reading generator costs both."""
        if self.sock is not None and self.loop is not None and not self.closed:
            self.loop.remove_reader(self.sock.fileno())

    def unpark(self) -> None:
        if self.sock is not None and self.loop is not None and not self.closed:
            self.loop.add_reader(self.sock.fileno(), self._readable)

    def clean_notify_for(self, prevhash: str) -> tuple[int, int] | None:
        """(kernel ns or 0, user ns) of the first clean notify on `prevhash` (notify form)."""
        key = prevhash.encode()
        for kernel_ns, user_ns, line in self.notices:
            if key not in line:
                continue
            with contextlib.suppress(orjson.JSONDecodeError, TypeError, IndexError):
                params = orjson.loads(line)["params"]
                if params[1] == prevhash and params[8] is True:
                    return kernel_ns, user_ns
        return None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.sock is not None:
            if self.loop is not None:
                with contextlib.suppress(Exception):
                    self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
