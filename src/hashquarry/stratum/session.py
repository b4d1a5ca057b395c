"""One miner connection as a sans-IO state machine.

`handle_line` takes one received line and the time and returns what to
send and what happened (a share, a block candidate, whether the line counts
against the sender); `on_job` returns the bytes that announce a job. The
asyncio shell in server.py owns sockets, timers and the node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from hashquarry.chain.address import Network
from hashquarry.chain.target import difficulty_to_target
from hashquarry.shares.events import ErrorCode, ShareEvent, ShareResult
from hashquarry.shares.validate import Submission, Verdict, validate_share
from hashquarry.stratum.extranonce import ExtranonceAllocator
from hashquarry.stratum.identity import IdentityError, parse_password, parse_username
from hashquarry.stratum.jobs import Job, JobManager
from hashquarry.stratum.vardiff import Vardiff, VardiffRules, round_difficulty

# An authorizer may refuse an identity (unknown account, disabled user): it returns why.
Authorizer = Callable[[str, str, bool], str | None]


@dataclass
class PoolContext:
    """What every session of one front end shares."""

    jobs: JobManager
    extranonces: ExtranonceAllocator
    network: Network
    vardiff: VardiffRules
    version_mask: int
    extranonce2_size: int
    authorizer: Authorizer | None = None
    coin: str = "bitcoin"


@dataclass(slots=True)
class Outcome:
    out: list[bytes] = field(default_factory=list)
    share: ShareEvent | None = None
    block: tuple[Job, Verdict] | None = None
    bad: bool = False  # counts towards a ban of the sender's IP
    close: str | None = None


def _reply(msg_id: Any, result: Any) -> bytes:
    return orjson.dumps({"id": msg_id, "result": result, "error": None}) + b"\n"


def _error(msg_id: Any, code: int, message: str, result: Any = None) -> bytes:
    return orjson.dumps({"id": msg_id, "result": result, "error": [code, message, None]}) + b"\n"


def _notification(method: str, params: list[Any]) -> bytes:
    return orjson.dumps({"id": None, "method": method, "params": params}) + b"\n"


def _bad_id(msg_id: Any) -> bool:
    return msg_id is not None and not isinstance(msg_id, int | str)


class Session:
    """State of one connection. Slots keep an idle miner small."""

    __slots__ = (
        "connected_at", "ctx", "difficulty", "extranonce1", "extranonce_subscribed",
        "fixed_difficulty", "issued", "last_activity", "min_difficulty", "next_extranonce1",
        "pending_difficulty", "remote", "session_id", "subscribed", "target_cache",
        "user_agent", "vardiff", "version_mask", "workers",
    )  # fmt: skip

    def __init__(self, ctx: PoolContext, remote: str, start_difficulty: float, now: float) -> None:
        self.ctx = ctx
        self.remote = remote
        self.connected_at = now
        self.last_activity = now
        self.subscribed = False
        self.extranonce1 = b""
        self.next_extranonce1: bytes | None = None
        self.session_id = ""
        self.user_agent = ""
        self.extranonce_subscribed = False
        self.workers: dict[str, tuple[str, str]] = {}
        self.version_mask = 0
        self.min_difficulty = ctx.vardiff.min_difficulty
        self.fixed_difficulty: float | None = None
        self.difficulty = ctx.vardiff.clamp(start_difficulty)
        self.pending_difficulty: float | None = None
        self.vardiff = Vardiff(ctx.vardiff, self.difficulty, now)
        # job id -> (difficulty, extranonce1) the miner was given it with.
        self.issued: dict[str, tuple[float, bytes]] = {}
        # (difficulty, its target): the big-number division once per difficulty change.
        self.target_cache: tuple[float, int] = (0.0, 0)

    @property
    def authorized(self) -> bool:
        return bool(self.workers)

    @property
    def ready(self) -> bool:
        """Subscribed and authorized: it gets jobs."""
        return self.subscribed and bool(self.workers)

    # -- input ---------------------------------------------------------------

    def handle_line(self, line: bytes, now: float) -> Outcome:
        self.last_activity = now
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError:
            return Outcome([_error(None, ErrorCode.OTHER, "malformed JSON")], bad=True)
        if not isinstance(msg, dict):
            return Outcome(
                [_error(None, ErrorCode.OTHER, "message must be a JSON object")], bad=True
            )
        msg_id = msg.get("id")
        if _bad_id(msg_id):
            return Outcome(
                [_error(None, ErrorCode.OTHER, "id must be a number, string or null")], bad=True
            )
        method = msg.get("method")
        if method is None and ("result" in msg or "error" in msg):
            return Outcome()  # a reply to something we sent; nothing to do
        if not isinstance(method, str):
            return Outcome([_error(msg_id, ErrorCode.OTHER, "method must be a string")], bad=True)
        params = msg.get("params", [])
        if params is None:
            params = []
        if not isinstance(params, list):
            return Outcome([_error(msg_id, ErrorCode.OTHER, "params must be a list")], bad=True)
        handler = _HANDLERS.get(method)
        if handler is None:
            return Outcome([_error(msg_id, ErrorCode.OTHER, f"unknown method {method[:64]!r}")])
        return handler(self, msg_id, params, now)

    def _subscribe(self, msg_id: Any, params: list[Any], now: float) -> Outcome:
        if not self.subscribed:
            ua = params[0] if params and isinstance(params[0], str) else ""
            resume = params[1] if len(params) > 1 and isinstance(params[1], str) else None
            self.user_agent = ua[:128]
            self.extranonce1 = self.ctx.extranonces.allocate(now, resume)
            self.session_id = self.extranonce1.hex()
            self.subscribed = True
        sid = self.session_id
        result = [
            [["mining.set_difficulty", sid], ["mining.notify", sid]],
            sid,
            self.ctx.extranonce2_size,
        ]
        out = Outcome([_reply(msg_id, result)])
        if self.workers:
            out.out.extend(self._first_work(now))
        return out

    def _authorize(self, msg_id: Any, params: list[Any], now: float) -> Outcome:
        if not params or not isinstance(params[0], str):
            return Outcome(
                [_error(msg_id, ErrorCode.OTHER, "params[0] (user name) must be a string")],
                bad=True,
            )
        username = params[0]
        password = params[1] if len(params) > 1 and isinstance(params[1], str) else ""
        try:
            ident = parse_username(username, self.ctx.network)
            fixed = parse_password(password)
        except IdentityError as exc:
            return Outcome(
                [_error(msg_id, ErrorCode.UNAUTHORIZED, f"unauthorized: {exc}", False)], bad=True
            )
        if self.ctx.authorizer is not None:
            refusal = self.ctx.authorizer(ident.account, ident.worker, ident.address_mode)
            if refusal:
                return Outcome(
                    [_error(msg_id, ErrorCode.UNAUTHORIZED, f"unauthorized: {refusal}", False)],
                    bad=True,
                )
        first = not self.workers
        self.workers[username] = (ident.account, ident.worker)
        if fixed is not None:
            self.fixed_difficulty = round_difficulty(
                max(self.min_difficulty, self.ctx.vardiff.clamp(fixed))
            )
            self._want_difficulty(self.fixed_difficulty, now)
        out = Outcome([_reply(msg_id, True)])
        if first and self.subscribed:
            out.out.extend(self._first_work(now))
        return out

    def _submit(self, msg_id: Any, params: list[Any], now: float) -> Outcome:
        if len(params) < 5 or not (
            type(params[0]) is str
            and type(params[1]) is str
            and type(params[2]) is str
            and type(params[3]) is str
            and type(params[4]) is str
        ):
            return Outcome(
                [
                    _error(
                        msg_id,
                        ErrorCode.OTHER,
                        "mining.submit takes [worker, job_id, extranonce2, ntime, nonce"
                        "(, version_bits)] as strings",
                    )
                ],
                bad=True,
            )
        if not self.subscribed:
            return Outcome([_error(msg_id, ErrorCode.NOT_SUBSCRIBED, "not subscribed")], bad=True)
        worker_name = params[0]
        ident = self.workers.get(worker_name)
        if ident is None:
            return Outcome(
                [
                    _error(
                        msg_id,
                        ErrorCode.UNAUTHORIZED,
                        f"worker {worker_name[:64]!r} is not authorized",
                    )
                ],
                bad=True,
            )
        vbits = params[5] if len(params) > 5 and params[5] is not None else None
        if vbits is not None and not isinstance(vbits, str):
            return Outcome(
                [_error(msg_id, ErrorCode.OTHER, "version_bits must be a hex string")], bad=True
            )
        sub = Submission(worker_name, params[1], params[2], params[3], params[4], vbits)
        jobs = self.ctx.jobs
        job = jobs.get(sub.job_id)
        issued = self.issued.get(sub.job_id)
        # A job this connection never received (sent before a resumed reconnect) is judged
        # at the current difficulty and extranonce1.
        difficulty, extranonce1 = issued if issued else (self.difficulty, self.extranonce1)
        current = jobs.current
        cached = self.target_cache
        if cached[0] == difficulty:
            share_target = cached[1]
        else:
            share_target = difficulty_to_target(difficulty)
            self.target_cache = (difficulty, share_target)
        verdict = validate_share(
            sub,
            job,
            current_block=job is not None and jobs.is_current_block(job),
            latest_template=current.template if current else None,
            extranonce1=extranonce1,
            extranonce2_size=self.ctx.extranonce2_size,
            share_target=share_target,
            version_mask=self.version_mask,
            now=now,
        )
        event = ShareEvent(
            time=now,
            account=ident[0],
            worker=ident[1],
            job_id=sub.job_id[:32],
            height=job.height if job else 0,
            difficulty=difficulty,
            network_difficulty=job.network_difficulty if job else 0.0,
            result=verdict.result,
            reason=verdict.reason,
            hash_hex=verdict.hash[::-1].hex() if verdict.hash else None,
            is_block=verdict.is_block,
            delayed=verdict.delayed,
            remote=self.remote,
            session_id=self.session_id,
            actual_difficulty=verdict.actual_difficulty,
            block_reward=job.template.coinbase_value if job else 0,
            tx_fees=job.template.fees if job else 0,
            coin=self.ctx.coin,
        )
        if verdict.accepted:
            out = Outcome([_reply(msg_id, True)], share=event)
            if verdict.is_block and job is not None:
                out.block = (job, verdict)
            self._count_share(job, now)
            return out
        # Stale shares are a normal cost of new blocks; the rest say something is wrong.
        bad = verdict.result is not ShareResult.STALE
        if not bad and job is not None:
            # Work on a replaced block's job still shows the miner's hashrate. Left out,
            # fast blocks (most shares stale) would make vardiff lower the difficulty and
            # so make even more of them stale. Counting an unchecked claim is safe: more
            # shares only ever raise the sender's own difficulty.
            self._count_share(job, now)
        return Outcome(
            [_error(msg_id, verdict.code or ErrorCode.OTHER, verdict.reason)], share=event, bad=bad
        )

    def _count_share(self, job: Job | None, now: float) -> None:
        """A share toward vardiff's rate (a fixed difficulty never moves)."""
        if self.fixed_difficulty is None:
            new = self.vardiff.on_share(now, job.network_difficulty if job else None)
            if new is not None:
                self._want_difficulty(max(new, self.min_difficulty), now)

    def _configure(self, msg_id: Any, params: list[Any], now: float) -> Outcome:
        exts = params[0] if params else []
        opts = params[1] if len(params) > 1 else {}
        if not isinstance(exts, list) or not all(isinstance(e, str) for e in exts):
            return Outcome(
                [_error(msg_id, ErrorCode.OTHER, "params[0] must be a list of names")], bad=True
            )
        if not isinstance(opts, dict):
            return Outcome(
                [_error(msg_id, ErrorCode.OTHER, "params[1] must be an object")], bad=True
            )
        result: dict[str, Any] = {}
        for ext in exts:
            if ext == "version-rolling":
                raw = opts.get("version-rolling.mask", "ffffffff")
                try:
                    miner_mask = int(raw, 16) if isinstance(raw, str) else None
                except ValueError:
                    miner_mask = None
                if miner_mask is None or not 0 <= miner_mask <= 0xFFFFFFFF:
                    return Outcome(
                        [
                            _error(
                                msg_id, ErrorCode.OTHER, "version-rolling.mask must be 8 hex digits"
                            )
                        ],
                        bad=True,
                    )
                self.version_mask = self.ctx.version_mask & miner_mask
                result["version-rolling"] = self.version_mask != 0
                result["version-rolling.mask"] = f"{self.version_mask:08x}"
            elif ext == "minimum-difficulty":
                value = opts.get("minimum-difficulty.value")
                if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                    result["minimum-difficulty"] = False
                    continue
                self.min_difficulty = max(self.ctx.vardiff.min_difficulty, float(value))
                if self.difficulty < self.min_difficulty:
                    self._want_difficulty(self.min_difficulty, now)
                result["minimum-difficulty"] = True
            else:
                result[ext] = False
        return Outcome([_reply(msg_id, result)])

    def _extranonce_subscribe(self, msg_id: Any, params: list[Any], now: float) -> Outcome:
        self.extranonce_subscribed = True
        return Outcome([_reply(msg_id, True)])

    def _suggest_difficulty(self, msg_id: Any, params: list[Any], now: float) -> Outcome:
        value = params[0] if params else None
        if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
            return Outcome(
                [_error(msg_id, ErrorCode.OTHER, "params[0] must be a positive number")], bad=True
            )
        if self.fixed_difficulty is None:
            d = round_difficulty(max(self.min_difficulty, self.ctx.vardiff.clamp(float(value))))
            self._want_difficulty(d, now)
        return Outcome([_reply(msg_id, True)] if msg_id is not None else [])

    # -- output --------------------------------------------------------------

    def _want_difficulty(self, difficulty: float, now: float) -> None:
        if not self.issued:
            # Nothing sent yet: it simply becomes the starting difficulty.
            self.difficulty = difficulty
            self.pending_difficulty = None
        else:
            self.pending_difficulty = difficulty
        self.vardiff.reset(difficulty, now)

    def _first_work(self, now: float) -> list[bytes]:
        job = self.ctx.jobs.current
        if job is None:
            return []
        return [self.on_job(job, now, first=True)]

    def on_job(self, job: Job, now: float, first: bool = False) -> bytes:
        """set_difficulty (if it changes) then the notify, as one write."""
        parts: list[bytes] = []
        if self.fixed_difficulty is None and not first:
            new = self.vardiff.retarget(now, job.network_difficulty)
            if new is not None:
                new = max(new, self.min_difficulty)
                self.vardiff.difficulty = new  # keep vardiff's estimate at what is really asked
                self.pending_difficulty = new
        if self.next_extranonce1 is not None:
            self.extranonce1 = self.next_extranonce1
            self.next_extranonce1 = None
        pending, self.pending_difficulty = self.pending_difficulty, None
        if pending is not None and pending != self.difficulty:
            self.difficulty = pending
            parts.append(_notification("mining.set_difficulty", [self.difficulty]))
        elif first:
            parts.append(_notification("mining.set_difficulty", [self.difficulty]))
        parts.append(job.notify_line_clean if first else job.notify_line)
        self.issued[job.job_id] = (self.difficulty, self.extranonce1)
        limit = 2 * self.ctx.jobs.recent_jobs
        while len(self.issued) > limit:
            del self.issued[next(iter(self.issued))]
        return b"".join(parts)

    def set_extranonce(self, extranonce1: bytes) -> bytes:
        """Announce a new extranonce1; it applies from the next notify (NiceHash semantics)."""
        self.next_extranonce1 = extranonce1
        self.session_id = extranonce1.hex()
        return _notification(
            "mining.set_extranonce", [extranonce1.hex(), self.ctx.extranonce2_size]
        )

    def reconnect(self, host: str, port: int, wait: int = 0) -> bytes:
        return _notification("client.reconnect", [host, port, wait])

    def show_message(self, text: str) -> bytes:
        return _notification("client.show_message", [text])


_HANDLERS: dict[str, Callable[[Session, Any, list[Any], float], Outcome]] = {
    "mining.subscribe": Session._subscribe,
    "mining.authorize": Session._authorize,
    "mining.submit": Session._submit,
    "mining.configure": Session._configure,
    "mining.extranonce.subscribe": Session._extranonce_subscribe,
    "mining.suggest_difficulty": Session._suggest_difficulty,
}
