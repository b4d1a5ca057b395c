"""Shared builders for the Stratum / share tests: real templates, jobs, sessions and shares.

Nothing here is mocked: templates come from `parse_template()` on getblocktemplate-shaped
dicts with well-formed transactions, jobs from a real `JobManager`, and valid shares are
found by brute-forcing a nonce against a tiny share difficulty.

The helpers hang off one `Kit` object (the `kit` fixture) so test modules need no import of
this file at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from hashquarry.chain.address import address_to_script, network
from hashquarry.chain.coinbase import serialize_header
from hashquarry.chain.encoding import read_varint, varint
from hashquarry.chain.hashing import merkle_root, merkle_root_from_branch, sha256d
from hashquarry.chain.target import bits_to_target
from hashquarry.chain.template import Template, parse_template
from hashquarry.stratum.extranonce import ExtranonceAllocator
from hashquarry.stratum.jobs import Job, JobManager
from hashquarry.stratum.session import Outcome, PoolContext, Session
from hashquarry.stratum.vardiff import VardiffRules

CURTIME = 1_700_000_000
NOW = float(CURTIME)
PAYOUT_ADDRESS = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"  # regtest P2PKH
SERVER_MASK = 0x1FFFE000
EN2_SIZE = 4
HARD_BITS = "1d00ffff"  # network difficulty 1: a 1e-6 share is (practically) never a block
REGTEST_BITS = "207fffff"  # every other hash is a block
PREV_A = "00000000000000000002a7c4c1e48d76c5a37902165a270156b7a8d72728a054"
PREV_B = "0000000000000000000320283a032748cef8227873ff4872689bf23f1cda83a5"
WITNESS_MAGIC = bytes.fromhex("6a24aa21a9ed")


@dataclass(frozen=True)
class ParsedTx:
    version: int
    inputs: list[tuple[bytes, int, bytes, int]]  # prev txid, vout, scriptSig, sequence
    outputs: list[tuple[int, bytes]]  # value, scriptPubKey
    witness: list[list[bytes]] | None  # per input, None when not segwit-serialized
    locktime: int
    stripped: bytes  # the txid serialization

    @property
    def txid(self) -> bytes:
        return sha256d(self.stripped)


def parse_tx(data: bytes, pos: int = 0) -> tuple[ParsedTx, int]:
    """Parse one transaction (legacy or BIP144) starting at `pos`; returns it and the end."""
    start = pos
    version = int.from_bytes(data[pos : pos + 4], "little")
    pos += 4
    segwit = data[pos] == 0 and data[pos + 1] == 1
    if segwit:
        pos += 2
    body_start = pos
    n_in, pos = read_varint(data, pos)
    inputs = []
    for _ in range(n_in):
        prev = data[pos : pos + 32]
        vout = int.from_bytes(data[pos + 32 : pos + 36], "little")
        slen, pos = read_varint(data, pos + 36)
        script = data[pos : pos + slen]
        pos += slen
        seq = int.from_bytes(data[pos : pos + 4], "little")
        pos += 4
        inputs.append((prev, vout, script, seq))
    n_out, pos = read_varint(data, pos)
    outputs = []
    for _ in range(n_out):
        value = int.from_bytes(data[pos : pos + 8], "little")
        slen, pos = read_varint(data, pos + 8)
        outputs.append((value, data[pos : pos + slen]))
        pos += slen
    body_end = pos
    witness: list[list[bytes]] | None = None
    if segwit:
        witness = []
        for _ in range(n_in):
            n_items, pos = read_varint(data, pos)
            items = []
            for _ in range(n_items):
                ilen, pos = read_varint(data, pos)
                items.append(data[pos : pos + ilen])
                pos += ilen
            witness.append(items)
    locktime = int.from_bytes(data[pos : pos + 4], "little")
    pos += 4
    stripped = data[start : start + 4] + data[body_start:body_end] + data[pos - 4 : pos]
    return ParsedTx(version, inputs, outputs, witness, locktime, stripped), pos


def fake_tx(seed: int, segwit: bool) -> tuple[bytes, bytes, bytes]:
    """A well-formed one-in one-out transaction: (serialized, txid, wtxid), internal order."""
    prevout = sha256d(b"prevout-%d" % seed)
    if segwit:
        spk = b"\x00\x14" + sha256d(b"key-%d" % seed)[:20]  # P2WPKH
    else:
        spk = b"\x76\xa9\x14" + sha256d(b"key-%d" % seed)[:20] + b"\x88\xac"
    script_sig = b"" if segwit else b"\x47" + bytes(71) + b"\x21\x02" + bytes(32)
    body = (
        b"\x01"
        + prevout
        + (seed % 4).to_bytes(4, "little")
        + varint(len(script_sig))
        + script_sig
        + b"\xfd\xff\xff\xff"
        + b"\x01"
        + (50_000 + seed).to_bytes(8, "little")
        + varint(len(spk))
        + spk
    )
    version = (2).to_bytes(4, "little")
    locktime = (0).to_bytes(4, "little")
    stripped = version + body + locktime
    if not segwit:
        return stripped, sha256d(stripped), sha256d(stripped)
    witness = b"\x02" + b"\x47" + bytes(71) + b"\x21\x02" + bytes(32)
    full = version + b"\x00\x01" + body + witness + locktime
    return full, sha256d(stripped), sha256d(full)


def make_gbt(
    *,
    height: int = 500,
    prev: str = PREV_A,
    bits: str = HARD_BITS,
    segwit: bool = False,
    n_tx: int = 3,
    tx_seed: int = 0,
    curtime: int = CURTIME,
    mintime: int | None = None,
    version: int = 0x20000000,
) -> dict[str, Any]:
    """A getblocktemplate answer as Bitcoin Core shapes it."""
    txs = []
    wtxids = [bytes(32)]  # the coinbase's wtxid is defined as zero
    fees = 0
    for i in range(n_tx):
        data, txid, wtxid = fake_tx(tx_seed + i, segwit and i % 2 == 0)
        fee = 1_000 + 100 * i
        fees += fee
        wtxids.append(wtxid)
        txs.append(
            {
                "data": data.hex(),
                "txid": txid[::-1].hex(),
                "hash": wtxid[::-1].hex(),
                "depends": [],
                "fee": fee,
                "sigops": 4,
                "weight": 4 * len(data),
            }
        )
    gbt: dict[str, Any] = {
        "capabilities": ["proposal"],
        "version": version,
        "rules": ["csv", "!segwit", "taproot"],
        "vbavailable": {},
        "vbrequired": 0,
        "previousblockhash": prev,
        "transactions": txs,
        "coinbaseaux": {},
        "coinbasevalue": 625_000_000 + fees,
        "longpollid": prev + "3",
        "target": f"{bits_to_target(int(bits, 16)):064x}",
        "mintime": curtime - 1800 if mintime is None else mintime,
        "mutable": ["time", "transactions", "prevblock"],
        "noncerange": "00000000ffffffff",
        "sigoplimit": 80000,
        "sizelimit": 4000000,
        "weightlimit": 4000000,
        "curtime": curtime,
        "bits": bits,
        "height": height,
    }
    if segwit:
        commitment = sha256d(merkle_root(wtxids) + bytes(32))
        gbt["default_witness_commitment"] = (WITNESS_MAGIC + commitment).hex()
    return gbt


def find_nonce(
    job: Job,
    extranonce: bytes,
    ntime: int,
    target: int,
    *,
    version: int | None = None,
    above: bool = False,
    limit: int = 2_000_000,
) -> tuple[int, bytes]:
    """Brute-force a nonce whose header hash is <= target (or > target with `above`)."""
    t = job.template
    coinbase_hash = sha256d(job.coinbase.assemble(extranonce))
    merkle = merkle_root_from_branch(coinbase_hash, t.branch)
    prefix = serialize_header(
        t.version if version is None else version, t.prev_hash, merkle, ntime, t.bits, 0
    )[:76]
    for nonce in range(limit):
        digest = sha256d(prefix + nonce.to_bytes(4, "little"))
        below = int.from_bytes(digest, "little") <= target
        if below != above:
            return nonce, digest
    raise AssertionError("no nonce found; is the target too hard for a test?")


def submit_line(
    msg_id: int,
    worker: str,
    job_id: str,
    extranonce2: bytes,
    ntime: int,
    nonce: int,
    version_bits: str | None = None,
) -> bytes:
    params: list[Any] = [worker, job_id, extranonce2.hex(), f"{ntime:08x}", f"{nonce:08x}"]
    if version_bits is not None:
        params.append(version_bits)
    return orjson.dumps({"id": msg_id, "method": "mining.submit", "params": params})


def request(msg_id: int | None, method: str, params: list[Any]) -> bytes:
    return orjson.dumps({"id": msg_id, "method": method, "params": params})


def messages(out: list[bytes] | bytes) -> list[dict[str, Any]]:
    """Every JSON line in what a session wrote, in order."""
    blob = out if isinstance(out, bytes) else b"".join(out)
    assert blob.endswith(b"\n"), "every Stratum message ends with a newline"
    return [orjson.loads(line) for line in blob.split(b"\n") if line]


class Kit:
    """Builders bound together, handed to tests by the `kit` fixture."""

    CURTIME = CURTIME
    NOW = NOW
    PAYOUT_ADDRESS = PAYOUT_ADDRESS
    SERVER_MASK = SERVER_MASK
    EN2_SIZE = EN2_SIZE
    HARD_BITS = HARD_BITS
    REGTEST_BITS = REGTEST_BITS
    PREV_A = PREV_A
    PREV_B = PREV_B
    WITNESS_MAGIC = WITNESS_MAGIC

    payout_script = address_to_script(PAYOUT_ADDRESS, "regtest")

    make_gbt = staticmethod(make_gbt)
    find_nonce = staticmethod(find_nonce)
    submit_line = staticmethod(submit_line)
    request = staticmethod(request)
    messages = staticmethod(messages)
    parse_tx = staticmethod(parse_tx)

    @staticmethod
    def template(**kw: Any) -> Template:
        return parse_template(make_gbt(**kw))

    def job_manager(self, tag: bytes = b"/hq-test/", recent_jobs: int = 16) -> JobManager:
        return JobManager(
            self.payout_script, tag=tag, extranonce2_size=EN2_SIZE, recent_jobs=recent_jobs
        )

    def ctx(
        self,
        *,
        rules: VardiffRules | None = None,
        version_mask: int = SERVER_MASK,
        **gbt: Any,
    ) -> PoolContext:
        """A pool context whose JobManager already has a job for `make_gbt(**gbt)`."""
        jobs = self.job_manager()
        jobs.new_template(self.template(**gbt), NOW)
        return PoolContext(
            jobs=jobs,
            extranonces=ExtranonceAllocator(prefix=0x01, resume_seconds=600.0),
            network=network("regtest"),
            vardiff=rules or VardiffRules(),
            version_mask=version_mask,
            extranonce2_size=EN2_SIZE,
        )

    def session(
        self,
        ctx: PoolContext,
        *,
        user: str = "alice.rig1",
        password: str = "x",
        start_difficulty: float = 1e-6,
        now: float = NOW,
    ) -> tuple[Session, Outcome]:
        """Subscribed and authorized; returns the session and the authorize outcome (which
        carries the first set_difficulty + notify)."""
        s = Session(ctx, "192.0.2.7", start_difficulty, now)
        sub = s.handle_line(request(1, "mining.subscribe", ["cgminer/4.12"]), now)
        assert sub.out and not sub.bad
        auth = s.handle_line(request(2, "mining.authorize", [user, password]), now)
        assert messages(auth.out)[0]["result"] is True, auth.out
        return s, auth

    @staticmethod
    def extranonce2(n: int = 0) -> bytes:
        return n.to_bytes(EN2_SIZE, "big")


@pytest.fixture
def kit() -> Kit:
    return Kit()
