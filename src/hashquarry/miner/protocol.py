"""Stratum V1 messages as data, for the client side of the protocol.

Decoding lines from the pool, encoding requests and replies, and turning results and
pushed params into plain values. No sockets and no client state: client.py owns the
connection and server_methods.py applies what the pool pushes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson

# Records keep the logger name they had when this lived in client.py; logs show it.
log = logging.getLogger("hashquarry.miner.client")

# Methods the server sends without expecting an answer.
NOTIFICATIONS = frozenset(
    {
        "mining.set_difficulty",
        "mining.notify",
        "mining.set_extranonce",
        "mining.set_version_mask",
        "client.reconnect",
        "client.show_message",
    }
)


class StratumError(Exception):
    """The server answered a request with an error."""

    def __init__(self, method: str, code: int | None, message: str | None) -> None:
        super().__init__(f"{method} failed: [{code}] {message}")
        self.method = method
        self.code = code
        self.message = message


class MalformedLine(ValueError):
    """A line from the server that is not a JSON-RPC message object."""


def decode_message(line: bytes) -> dict[str, Any]:
    """One line from the server as a message object; MalformedLine says why not."""
    try:
        msg = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise MalformedLine("unparseable line from server") from None
    if not isinstance(msg, dict):
        raise MalformedLine("non-object message")
    return msg


def request_line(rid: Any, method: str, params: list[Any]) -> bytes:
    return orjson.dumps({"id": rid, "method": method, "params": params}) + b"\n"


def reply_line(rid: Any, result: Any, error: Any = None) -> bytes:
    return orjson.dumps({"id": rid, "result": result, "error": error}) + b"\n"


def parse_error(error: Any) -> tuple[int | None, str | None]:
    """(code, message) from the list form [code, msg, traceback] or a {code, message} dict."""
    if error is None:
        return None, None
    if isinstance(error, list | tuple):
        code = error[0] if error and isinstance(error[0], int) else None
        message = error[1] if len(error) > 1 and error[1] is not None else None
        return code, None if message is None else str(message)
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message")
        return (
            code if isinstance(code, int) else None,
            None if message is None else str(message),
        )
    return None, str(error)


@dataclass(frozen=True)
class SubmitResult:
    accepted: bool
    error_code: int | None = None
    error_message: str | None = None

    @classmethod
    def from_response(cls, response: dict[str, Any]) -> SubmitResult:
        error = response.get("error")
        if error is not None:
            code, message = parse_error(error)
            return cls(False, code, message)
        # Some pools answer a rejected share with result false and no error object.
        return cls(response.get("result") is True)


def parse_subscribe(response: dict[str, Any]) -> tuple[bytes, int, str | None]:
    """(extranonce1, extranonce2_size, session id) from a mining.subscribe response."""
    if response.get("error") is not None:
        code, message = parse_error(response["error"])
        raise StratumError("mining.subscribe", code, message)
    result = response.get("result")
    if not isinstance(result, list) or len(result) < 3:
        raise StratumError("mining.subscribe", None, f"malformed result {result!r}")
    en1_hex, en2_size = result[1], result[2]
    if not isinstance(en1_hex, str) or not isinstance(en2_size, int) or en2_size < 0:
        raise StratumError("mining.subscribe", None, f"malformed extranonce in {result!r}")
    try:
        en1 = bytes.fromhex(en1_hex)
    except ValueError:
        raise StratumError("mining.subscribe", None, f"extranonce1 not hex: {en1_hex!r}") from None
    return en1, en2_size, session_id_from_details(result[0])


def session_id_from_details(details: Any) -> str | None:
    """The session id is the mining.notify subscription id (what resume expects back)."""
    if not isinstance(details, list) or not details:
        return None
    pairs = [details] if isinstance(details[0], str) else details
    first: str | None = None
    for pair in pairs:
        if isinstance(pair, list) and len(pair) >= 2 and isinstance(pair[1], str):
            if pair[0] == "mining.notify":
                return pair[1]
            first = first or pair[1]
    return first


def configure_params(version_rolling_mask: int | None, min_difficulty: float | None) -> list[Any]:
    """The [extensions, options] params of mining.configure (BIP 310)."""
    extensions: list[str] = []
    options: dict[str, Any] = {}
    if version_rolling_mask is not None:
        extensions.append("version-rolling")
        options["version-rolling.mask"] = f"{version_rolling_mask & 0xFFFFFFFF:08x}"
        options["version-rolling.min-bit-count"] = 2
    if min_difficulty is not None:
        extensions.append("minimum-difficulty")
        options["minimum-difficulty.value"] = min_difficulty
    return [extensions, options]


def granted_mask(result: Any) -> int:
    """The version-rolling mask a mining.configure result grants (0: none)."""
    if not isinstance(result, dict) or result.get("version-rolling") is not True:
        return 0
    try:
        return int(str(result.get("version-rolling.mask", "0")), 16) & 0xFFFFFFFF
    except ValueError:
        log.warning("bad version-rolling.mask in %r", result)
        return 0


# Params of the methods the server pushes. Malformed params raise ValueError, TypeError or
# IndexError, which the caller logs and otherwise ignores.


def parse_set_difficulty(params: list[Any]) -> float:
    value = params[0]
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError("difficulty must be a positive number")
    return float(value)


def parse_set_extranonce(params: list[Any]) -> tuple[bytes, int]:
    en1_hex, size = params[0], params[1]
    if not isinstance(en1_hex, str) or not isinstance(size, int) or size < 0:
        raise ValueError("expected [extranonce1 hex, extranonce2_size]")
    return bytes.fromhex(en1_hex), size


def parse_set_version_mask(params: list[Any]) -> int:
    return int(params[0], 16)


def parse_reconnect(params: list[Any]) -> tuple[str | None, int | None, float]:
    """(host, port, wait in seconds); None for what the server left out (same host/port)."""
    host = params[0] if params and isinstance(params[0], str) and params[0] else None
    port = int(params[1]) if len(params) > 1 and params[1] not in (None, "") else None
    wait = float(params[2]) if len(params) > 2 and params[2] not in (None, "") else 0.0
    return host, port, wait


def parse_show_message(params: list[Any]) -> str:
    return str(params[0]) if params else ""
