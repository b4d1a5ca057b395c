"""A Stratum V1 client library: one TCP connection, line-delimited JSON-RPC.

It only speaks the protocol and tracks the state the server pushes (difficulty,
extranonce, jobs, version mask); hashing lives elsewhere (runner.py), so the same client
serves the CPU miner, the end-to-end tests that hand-craft bad shares, and the
hashrate-scheduler proxy as its upstream connection.

This module is the connection and the requests; the messages themselves are parsed and
built in protocol.py, and what the server pushes is applied in server_methods.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from hashquarry.miner import protocol, server_methods
from hashquarry.miner.protocol import StratumError, SubmitResult
from hashquarry.miner.work import Job

log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = "hashquarry-miner/0.1"
# A notify for a big template carries a long coinb and branch; asyncio's 64 KiB default
# line limit is too tight for that.
LINE_LIMIT = 4 * 1024 * 1024

NotificationCallback = Callable[[str, list[Any]], None]


class StratumClient:
    def __init__(
        self,
        *,
        on_notification: NotificationCallback | None = None,
        request_timeout: float = 10.0,
        user_agent: str = DEFAULT_USER_AGENT,
        name: str = "",
    ) -> None:
        self.on_notification = on_notification
        self.request_timeout = request_timeout
        self.user_agent = user_agent
        self.name = name

        self.host: str | None = None
        self.port: int | None = None
        self.session_id: str | None = None
        self.resumed = False  # the last subscribe got the session id it asked for back

        # Active values (those of the current job) and the latest announced ones, which
        # only become active with the next notify.
        self.extranonce1 = b""
        self.extranonce2_size = 0
        self.pending_extranonce1 = b""
        self.pending_extranonce2_size = 0
        self.difficulty = 1.0
        self.pending_difficulty = 1.0
        self.version_mask = 0

        self.job: Job | None = None
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.messages: deque[str] = deque(maxlen=50)
        self.reconnects = 0

        self.closed = asyncio.Event()
        self.close_reason: str | None = None

        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        # Bumped whenever a connection is dropped so the old reader's EOF is not mistaken
        # for the loss of the new connection.
        self._generation = 0
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._hooks: dict[Any, Callable[[dict[str, Any]], None]] = {}
        self._job_event = asyncio.Event()

        # What to replay after a reconnect.
        self._credentials: list[tuple[str, str]] = []
        self._configure_args: tuple[int | None, float | None] | None = None
        self._extranonce_subscribed = False
        self._suggested_difficulty: float | None = None

    # --- connection ---

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self, host: str, port: int) -> None:
        if self._writer is not None:
            self._drop_connection("connecting elsewhere")
        reader, writer = await asyncio.open_connection(host, port, limit=LINE_LIMIT)
        self.host, self.port = host, port
        self._attach(reader, writer)

    def _attach(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._generation += 1
        self._reader, self._writer = reader, writer
        self.closed.clear()
        self.close_reason = None
        # A new connection starts at difficulty 1 until the server says otherwise.
        self.difficulty = self.pending_difficulty = 1.0
        self._reader_task = asyncio.create_task(
            self._read_loop(reader, self._generation), name=f"stratum-read-{self.name}"
        )

    def _drop_connection(self, reason: str) -> None:
        """Detach from the current socket without declaring the client closed."""
        self._generation += 1
        writer, task = self._writer, self._reader_task
        self._reader = self._writer = self._reader_task = None
        if writer is not None:
            writer.close()
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._fail_pending(ConnectionError(reason))
        # Jobs belong to the connection's extranonce1; shares on them would be rejected.
        self.job = None
        self._job_event.clear()

    def _connection_lost(self, reason: str) -> None:
        log.info("stratum %s: connection lost: %s", self.name, reason)
        self._drop_connection(reason)
        self.close_reason = reason
        self.closed.set()
        self._job_event.set()  # wake wait_job() so it can raise

    def _fail_pending(self, exc: Exception) -> None:
        pending, self._pending = self._pending, {}
        self._hooks.clear()
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)

    async def close(self) -> None:
        if self._reconnect_task is not None and self._reconnect_task is not asyncio.current_task():
            self._reconnect_task.cancel()
        writer, task = self._writer, self._reader_task
        if writer is not None or not self.closed.is_set():
            self._connection_lost("closed by client")
        if task is not None and task is not asyncio.current_task():
            await asyncio.wait([task])
        if writer is not None:
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def drain(self) -> None:
        """Wait while the socket's send buffer is over its high-water mark."""
        if self._writer is not None and not self._writer.is_closing():
            with contextlib.suppress(ConnectionError):
                await self._writer.drain()

    async def reconnect(
        self, host: str | None = None, port: int | None = None, wait: float = 0.0
    ) -> None:
        """Connect again (elsewhere if given) and replay the handshake, resuming the session.

        On failure the client is marked closed with the reason and the error is raised.
        """
        host = host or self.host
        port = port or self.port
        if host is None or port is None:
            raise ValueError("reconnect before the first connect needs host and port")
        self._drop_connection("reconnecting")
        self.reconnects += 1
        try:
            if wait > 0:
                await asyncio.sleep(wait)
            await self.connect(host, port)
            await self._replay_handshake()
        except (OSError, TimeoutError, StratumError, ValueError) as exc:
            self._connection_lost(f"reconnect to {host}:{port} failed: {exc}")
            raise

    async def _replay_handshake(self) -> None:
        # BIP 310 wants configure first; the rest follow the order a fresh miner uses.
        if self._configure_args is not None:
            await self.configure(*self._configure_args)
        await self.subscribe(self.user_agent, self.session_id)
        if self._extranonce_subscribed:
            await self.extranonce_subscribe()
        if self._suggested_difficulty is not None:
            await self.suggest_difficulty(self._suggested_difficulty)
        for user, password in list(self._credentials):
            if not await self.authorize(user, password):
                log.warning("stratum %s: re-authorize of %s refused", self.name, user)

    # --- requests ---

    def _write(self, payload: bytes) -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            raise ConnectionError(self.close_reason or "not connected")
        writer.write(payload)

    def request_nowait(
        self,
        method: str,
        params: list[Any],
        reply_timeout: float | None = None,
        on_response: Callable[[dict[str, Any]], None] | None = None,
    ) -> asyncio.Future[dict[str, Any]]:
        """Send a request and return a future for its response, without waiting.

        The future fails with TimeoutError after `reply_timeout` (default request_timeout) and
        with ConnectionError if the connection goes away first. `on_response` runs inside
        the reader, before any later line is handled, for state that must change in order.
        """
        loop = asyncio.get_running_loop()
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._write(protocol.request_line(rid, method, params))
        self._track(rid, fut, method, reply_timeout)
        if on_response is not None:
            self._hooks[rid] = on_response
        return fut

    def _track(
        self, rid: Any, fut: asyncio.Future[dict[str, Any]], what: str, timeout: float | None
    ) -> None:
        self._pending[rid] = fut
        delay = self.request_timeout if timeout is None else timeout
        handle = asyncio.get_running_loop().call_later(delay, self._expire, rid, fut, what)

        def _done(_: asyncio.Future[dict[str, Any]]) -> None:
            handle.cancel()
            if self._pending.get(rid) is fut:
                del self._pending[rid]
                self._hooks.pop(rid, None)

        fut.add_done_callback(_done)

    def _expire(self, rid: Any, fut: asyncio.Future[dict[str, Any]], what: str) -> None:
        if not fut.done():
            fut.set_exception(TimeoutError(f"{what} (id {rid}) got no response"))

    async def request(
        self, method: str, params: list[Any], reply_timeout: float | None = None
    ) -> dict[str, Any]:
        """Send a request and return the whole response object (result and error)."""
        fut = self.request_nowait(method, params, reply_timeout)
        await self.drain()
        return await fut

    async def send_raw(
        self, line: bytes, wait_id: Any = None, reply_timeout: float | None = None
    ) -> dict[str, Any] | None:
        """Write bytes as-is (include the newline yourself); tests use it for garbage.

        With wait_id, return the response carrying that id.
        """
        fut: asyncio.Future[dict[str, Any]] | None = None
        if wait_id is not None:
            fut = asyncio.get_running_loop().create_future()
        self._write(line)
        if fut is None:
            await self.drain()
            return None
        self._track(wait_id, fut, "raw line", reply_timeout)
        await self.drain()
        return await fut

    async def call(self, method: str, params: list[Any], reply_timeout: float | None = None) -> Any:
        """Send a request and return its result, raising StratumError on an error answer."""
        response = await self.request(method, params, reply_timeout)
        if response.get("error") is not None:
            code, message = protocol.parse_error(response["error"])
            raise StratumError(method, code, message)
        return response.get("result")

    async def subscribe(
        self, user_agent: str = DEFAULT_USER_AGENT, session_id: str | None = None
    ) -> tuple[str, int, str | None]:
        """mining.subscribe; returns (extranonce1 hex, extranonce2_size, session id)."""
        self.user_agent = user_agent
        params: list[Any] = [user_agent] if session_id is None else [user_agent, session_id]

        def apply(response: dict[str, Any]) -> None:
            # Runs in the reader: pools often send set_difficulty and notify right behind
            # this answer, and those must see the new extranonce1.
            with contextlib.suppress(StratumError):
                en1, en2_size, new_session = protocol.parse_subscribe(response)
                self.resumed = session_id is not None and new_session == session_id
                self.session_id = new_session
                # No job has been issued on this connection yet, so nothing to defer.
                self.extranonce1 = self.pending_extranonce1 = en1
                self.extranonce2_size = self.pending_extranonce2_size = en2_size

        fut = self.request_nowait("mining.subscribe", params, on_response=apply)
        await self.drain()
        en1, en2_size, new_session = protocol.parse_subscribe(await fut)
        return en1.hex(), en2_size, new_session

    async def authorize(self, user: str, password: str = "x") -> bool:
        response = await self.request("mining.authorize", [user, password])
        ok = response.get("error") is None and response.get("result") is True
        if ok:
            if (user, password) not in self._credentials:
                self._credentials.append((user, password))
        else:
            log.warning(
                "stratum %s: authorize %s refused: %s", self.name, user, response.get("error")
            )
        return ok

    async def configure(
        self, version_rolling_mask: int | None = None, min_difficulty: float | None = None
    ) -> dict[str, Any]:
        """mining.configure (BIP 310); returns the server's result ({} if unsupported)."""
        self._configure_args = (version_rolling_mask, min_difficulty)

        def apply(response: dict[str, Any]) -> None:
            # In the reader, so a mining.set_version_mask right behind it is not overwritten.
            self.version_mask = protocol.granted_mask(response.get("result"))

        params = protocol.configure_params(version_rolling_mask, min_difficulty)
        fut = self.request_nowait("mining.configure", params, on_response=apply)
        await self.drain()
        response = await fut
        result = response.get("result")
        if response.get("error") is not None or not isinstance(result, dict):
            log.info("stratum %s: configure not supported: %s", self.name, response.get("error"))
            return {}
        return result

    async def extranonce_subscribe(self) -> bool:
        response = await self.request("mining.extranonce.subscribe", [])
        ok = response.get("error") is None and response.get("result") is True
        self._extranonce_subscribed = ok
        return ok

    async def suggest_difficulty(self, difficulty: float) -> None:
        """Fire and forget: several pools never answer mining.suggest_difficulty."""
        self._suggested_difficulty = difficulty
        fut = self.request_nowait("mining.suggest_difficulty", [difficulty])
        fut.add_done_callback(_ignore_outcome)
        await self.drain()

    def submit_nowait(
        self,
        worker: str,
        job_id: str,
        extranonce2_hex: str,
        ntime_hex: str,
        nonce_hex: str,
        version_bits_hex: str | None = None,
    ) -> asyncio.Future[SubmitResult]:
        """Send mining.submit now; the future resolves when the server answers."""
        params = [worker, job_id, extranonce2_hex, ntime_hex, nonce_hex]
        if version_bits_hex is not None:
            params.append(version_bits_hex)
        raw = self.request_nowait("mining.submit", params)
        out: asyncio.Future[SubmitResult] = asyncio.get_running_loop().create_future()

        def _convert(f: asyncio.Future[dict[str, Any]]) -> None:
            if out.done():
                return
            if f.cancelled():
                out.cancel()
            elif (exc := f.exception()) is not None:
                out.set_exception(exc)
            else:
                out.set_result(SubmitResult.from_response(f.result()))

        raw.add_done_callback(_convert)
        return out

    async def submit(
        self,
        worker: str,
        job_id: str,
        extranonce2_hex: str,
        ntime_hex: str,
        nonce_hex: str,
        version_bits_hex: str | None = None,
    ) -> SubmitResult:
        fut = self.submit_nowait(
            worker, job_id, extranonce2_hex, ntime_hex, nonce_hex, version_bits_hex
        )
        await self.drain()
        return await fut

    async def wait_job(self, newer_than: Job | None = None) -> Job:
        """The current job, waiting for one (other than `newer_than`) if needed.

        Raises ConnectionError once the client is closed; waits through reconnects.
        """
        while self.job is None or self.job is newer_than:
            if self.closed.is_set():
                raise ConnectionError(self.close_reason or "closed")
            self._job_event.clear()
            await self._job_event.wait()
        return self.job

    # --- incoming ---

    async def _read_loop(self, reader: asyncio.StreamReader, generation: int) -> None:
        reason = "connection closed by server"
        try:
            while generation == self._generation:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    reason = "server sent a line over the size limit"
                    break
                except OSError as exc:
                    reason = f"connection error: {exc}"
                    break
                if not line:
                    break
                if line.strip():
                    self._handle_line(line)
        finally:
            if generation == self._generation:
                self._connection_lost(reason)

    def _handle_line(self, line: bytes) -> None:
        try:
            msg = protocol.decode_message(line)
        except protocol.MalformedLine as exc:
            log.warning("stratum %s: %s: %r", self.name, exc, line[:200])
            return
        method = msg.get("method")
        if isinstance(method, str):
            server_methods.handle(self, method, msg.get("params"), msg.get("id"))
            return
        rid = msg.get("id")
        fut = self._pending.pop(rid, None)
        hook = self._hooks.pop(rid, None)
        if fut is None or fut.done():
            log.debug("stratum %s: response to unknown id %r", self.name, rid)
            return
        if hook is not None:
            try:
                hook(msg)
            except Exception:
                log.exception("stratum %s: response hook failed", self.name)
        fut.set_result(msg)

    def _reply(self, rid: Any, result: Any, error: Any = None) -> None:
        with contextlib.suppress(ConnectionError):
            self._write(protocol.reply_line(rid, result, error))

    def _redirect(self, host: str | None, port: int | None, wait: float) -> None:
        """Follow a client.reconnect: detach now, then reconnect in a task of its own."""
        # Detach now, synchronously: the server usually hangs up right after this message,
        # and that EOF must not look like a lost connection.
        self._drop_connection("server requested reconnect")
        if self._reconnect_task is not None and not self._reconnect_task.done():
            self._reconnect_task.cancel()  # a newer redirect wins
        self._reconnect_task = asyncio.create_task(self._follow_reconnect(host, port, wait))

    async def _follow_reconnect(self, host: str | None, port: int | None, wait: float) -> None:
        with contextlib.suppress(OSError, TimeoutError, StratumError, ValueError):
            await self.reconnect(host, port, wait)  # failure already marked us closed


def _ignore_outcome(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieve it so asyncio does not log it as unhandled
