"""Async JSON-RPC client for a bitcoind-compatible node.

One persistent HTTP connection (httpx keep-alive), a timeout per call,
retries with exponential backoff for transport failures only (an RPC error
is an answer, not a failure), and exceptions that say what went wrong.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import httpx
import orjson

log = logging.getLogger(__name__)


class NodeError(Exception):
    """Base class for everything that can go wrong talking to the node."""


class NodeUnreachable(NodeError):
    pass


class NodeAuthError(NodeError):
    pass


class RpcError(NodeError):
    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"node RPC {method} failed: code {code}: {message}")
        self.method = method
        self.code = code
        self.message = message


class NodeRpc:
    def __init__(
        self,
        url: str,
        user: str = "",
        password: str = "",
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.25,
    ) -> None:
        self.url = url
        self._retries = retries
        self._backoff = backoff
        self._ids = itertools.count(1)
        auth = httpx.BasicAuth(user, password) if user or password else None
        self._client = httpx.AsyncClient(
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_keepalive_connections=4, max_connections=8),
            headers={"content-type": "application/json"},
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> NodeRpc:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def call(self, method: str, *params: Any, retries: int | None = None) -> Any:
        body = orjson.dumps(
            {"jsonrpc": "1.0", "id": next(self._ids), "method": method, "params": list(params)}
        )
        attempts = (self._retries if retries is None else retries) + 1
        delay = self._backoff
        last: Exception | None = None
        for attempt in range(attempts):
            try:
                resp = await self._client.post(self.url, content=body)
            except (httpx.TransportError, OSError) as exc:
                last = exc
                if attempt + 1 < attempts:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                continue
            return self._decode(method, resp)
        raise NodeUnreachable(
            f"node at {self.url} is unreachable ({method}, {attempts} attempts): "
            f"{type(last).__name__}: {last}"
        )

    def _decode(self, method: str, resp: httpx.Response) -> Any:
        if resp.status_code == 401:
            raise NodeAuthError(f"node at {self.url} refused the RPC credentials (HTTP 401)")
        if resp.status_code == 403:
            raise NodeAuthError(f"node at {self.url} forbids RPC from here (HTTP 403)")
        try:
            payload = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            raise NodeError(
                f"node RPC {method}: HTTP {resp.status_code} with a non-JSON body: "
                f"{resp.text[:200]!r}"
            ) from None
        err = payload.get("error") if isinstance(payload, dict) else None
        if err:
            code = int(err.get("code", 0)) if isinstance(err, dict) else 0
            message = str(err.get("message", err)) if isinstance(err, dict) else str(err)
            raise RpcError(method, code, message)
        if resp.status_code >= 400:
            raise NodeError(f"node RPC {method}: HTTP {resp.status_code}")
        return payload["result"]

    # The calls the pool uses, named so a reader sees the node surface at a glance.

    async def getblocktemplate(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("getblocktemplate", {"rules": ["segwit"]})
        return result

    async def submitblock(self, block_hex: str) -> str | None:
        # Retrying a submit is safe: the node answers "duplicate" for a block it has.
        result: str | None = await self.call("submitblock", block_hex)
        return result

    async def getbestblockhash(self) -> str:
        result: str = await self.call("getbestblockhash")
        return result

    async def getblockcount(self) -> int:
        result: int = await self.call("getblockcount")
        return result

    async def getblockhash(self, height: int) -> str:
        result: str = await self.call("getblockhash", height)
        return result

    async def getblock(self, block_hash: str, verbosity: int = 1) -> Any:
        return await self.call("getblock", block_hash, verbosity)

    async def getmininginfo(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("getmininginfo")
        return result
