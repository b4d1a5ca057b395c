"""What a StratumClient does with the methods the pool sends it.

Mostly notifications the pool pushes (mining.notify, mining.set_difficulty,
mining.set_extranonce, mining.set_version_mask, client.reconnect, client.show_message),
plus the odd request the pool expects an answer to. The handlers work on the client's
state, private parts included: they are the client's own, kept in a module of their own
only to keep client.py to the connection and the requests.

Difficulty and extranonce announced by the pool stay pending until the next notify,
whose job they belong to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hashquarry.miner import protocol
from hashquarry.miner.work import Job

if TYPE_CHECKING:
    from hashquarry.miner.client import StratumClient

# Records keep the logger name they had when this lived in client.py; logs show it.
log = logging.getLogger("hashquarry.miner.client")

MAX_RECENT_JOBS = 32


def handle(client: StratumClient, method: str, params: Any, rid: Any) -> None:
    """Answer a server request, or apply a notification and pass it to on_notification."""
    if not isinstance(params, list):
        params = []
    if rid is not None and method not in protocol.NOTIFICATIONS:
        # The server asks us something (JSON-RPC request, not a notification).
        if method == "client.get_version":
            client._reply(rid, client.user_agent)
        else:
            log.info("stratum %s: unsupported server request %s", client.name, method)
            client._reply(rid, None, [20, f"Unsupported method {method}", None])
        return
    try:
        handler = HANDLERS.get(method)
        if handler is None:
            log.info("stratum %s: ignoring unknown notification %s", client.name, method)
        else:
            handler(client, params)
    except (ValueError, TypeError, IndexError) as exc:
        log.warning("stratum %s: bad %s %r: %s", client.name, method, params, exc)
        return
    if client.on_notification is not None:
        try:
            client.on_notification(method, params)
        except Exception:
            log.exception("stratum %s: notification callback failed", client.name)


def on_set_difficulty(client: StratumClient, params: list[Any]) -> None:
    client.pending_difficulty = protocol.parse_set_difficulty(params)


def on_notify(client: StratumClient, params: list[Any]) -> None:
    job = Job.from_notify(params)
    job = replace(
        job,
        difficulty=client.pending_difficulty,
        extranonce1=client.pending_extranonce1,
        extranonce2_size=client.pending_extranonce2_size,
        received_at=time.monotonic(),
    )
    client.difficulty = job.difficulty
    client.extranonce1 = job.extranonce1
    client.extranonce2_size = job.extranonce2_size
    client.jobs[job.job_id] = job
    client.jobs.move_to_end(job.job_id)
    while len(client.jobs) > MAX_RECENT_JOBS:
        client.jobs.popitem(last=False)
    client.job = job
    client._job_event.set()


def on_set_extranonce(client: StratumClient, params: list[Any]) -> None:
    extranonce1, extranonce2_size = protocol.parse_set_extranonce(params)
    client.pending_extranonce1 = extranonce1
    client.pending_extranonce2_size = extranonce2_size


def on_set_version_mask(client: StratumClient, params: list[Any]) -> None:
    client.version_mask = protocol.parse_set_version_mask(params)


def on_reconnect(client: StratumClient, params: list[Any]) -> None:
    host, port, wait = protocol.parse_reconnect(params)
    log.info("stratum %s: server asks to reconnect to %s:%s in %ss", client.name, host, port, wait)
    client._redirect(host, port, wait)


def on_show_message(client: StratumClient, params: list[Any]) -> None:
    text = protocol.parse_show_message(params)
    client.messages.append(text)
    log.info("stratum %s: message from server: %s", client.name, text)


HANDLERS: dict[str, Callable[[StratumClient, list[Any]], None]] = {
    "mining.set_difficulty": on_set_difficulty,
    "mining.notify": on_notify,
    "mining.set_extranonce": on_set_extranonce,
    "mining.set_version_mask": on_set_version_mask,
    "client.reconnect": on_reconnect,
    "client.show_message": on_show_message,
}
