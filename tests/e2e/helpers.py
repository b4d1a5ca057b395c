"""Small tools for end-to-end tests: crafting shares and reading real blocks back."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from hashquarry.chain.encoding import read_varint
from hashquarry.miner.client import StratumClient
from hashquarry.miner.work import Job, build_coinbase, header_prefix, merkle_root_for, scan


@dataclass(frozen=True)
class Share:
    job_id: str
    extranonce2: str
    ntime: str
    nonce: str
    hash_value: int


def find_share(
    job: Job, target: int, *, extranonce2: int = 0, meet: bool = True, version: int | None = None
) -> Share:
    """A share for `job` whose hash meets (or, with meet=False, misses) `target`."""
    en2 = extranonce2.to_bytes(job.extranonce2_size, "big")
    merkle = merkle_root_for(job, build_coinbase(job, job.extranonce1, en2))
    prefix = header_prefix(
        job, merkle, job.ntime_int, job.version_int if version is None else version
    )
    start = 0
    while True:
        if meet:
            found = scan(prefix, start, 50_000, target)
            if found:
                nonce, digest = found[0]
                return Share(
                    job.job_id,
                    en2.hex(),
                    job.ntime,
                    f"{nonce:08x}",
                    int.from_bytes(digest, "little"),
                )
        else:
            from hashquarry.chain.hashing import sha256d

            digest = sha256d(prefix + start.to_bytes(4, "little"))
            if int.from_bytes(digest, "little") > target:
                return Share(
                    job.job_id,
                    en2.hex(),
                    job.ntime,
                    f"{start:08x}",
                    int.from_bytes(digest, "little"),
                )
            start += 1
            continue
        start += 50_000


async def connect(
    port: int,
    user: str = "alice.test",
    password: str = "x",
    *,
    host: str = "127.0.0.1",
    extranonce: bool = False,
    version_mask: int | None = None,
) -> StratumClient:
    client = StratumClient(name=user)
    await client.connect(host, port)
    if version_mask is not None:
        await client.configure(version_rolling_mask=version_mask)
    await client.subscribe()
    if extranonce:
        assert await client.extranonce_subscribe()
    assert await client.authorize(user, password)
    await asyncio.wait_for(client.wait_job(), 10)
    return client


async def wait_for(predicate: object, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass(frozen=True)
class ParsedCoinbase:
    version: int
    script_sig: bytes
    outputs: list[tuple[int, bytes]]
    segwit: bool


def parse_block_coinbase(raw: bytes) -> tuple[bytes, ParsedCoinbase]:
    """The 80-byte header and the coinbase transaction of a serialized block."""
    header = raw[:80]
    _, pos = read_varint(raw, 80)
    version = int.from_bytes(raw[pos : pos + 4], "little")
    pos += 4
    segwit = raw[pos] == 0 and raw[pos + 1] == 1
    if segwit:
        pos += 2
    n_in, pos = read_varint(raw, pos)
    assert n_in == 1
    assert raw[pos : pos + 32] == bytes(32) and raw[pos + 32 : pos + 36] == b"\xff" * 4
    pos += 36
    slen, pos = read_varint(raw, pos)
    script_sig = raw[pos : pos + slen]
    pos += slen + 4
    n_out, pos = read_varint(raw, pos)
    outputs = []
    for _ in range(n_out):
        value = int.from_bytes(raw[pos : pos + 8], "little")
        pos += 8
        plen, pos = read_varint(raw, pos)
        outputs.append((value, raw[pos : pos + plen]))
        pos += plen
    return header, ParsedCoinbase(version, script_sig, outputs, segwit)
