"""The witness-commitment path against a real segwit validator (bcoin on regtest).

Segwit is activated by mining signalling blocks; a transaction with witness data
is put in the mempool, so the template carries `default_witness_commitment` and
a witness transaction, and the pool's block must commit to it correctly.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from hashquarry.chain.address import script_to_address
from hashquarry.chain.encoding import varint
from hashquarry.chain.hashing import sha256d
from hashquarry.config import load_settings
from hashquarry.miner.runner import MinerOptions, run_miner

from .bcoin import BcoinNode, BcoinUnavailable
from .conftest import start_pool, stop_pool
from .helpers import parse_block_coinbase, wait_for

pytestmark = pytest.mark.e2e

# Anyone can spend P2WSH(OP_TRUE) with the witness [OP_TRUE]: a witness spend that
# needs no key, so the test can make real segwit transactions without a wallet.
OP_TRUE = b"\x51"
P2WSH_TRUE = b"\x00\x20" + hashlib.sha256(OP_TRUE).digest()


@pytest.fixture(scope="module")
def bcoin() -> Iterator[BcoinNode]:
    node = BcoinNode()
    try:
        node.start()
    except BcoinUnavailable as exc:
        pytest.fail(f"bcoin could not be provisioned: {exc}")
    try:
        yield node
    finally:
        node.close()


def _spend_true(prev_txid: str, vout: int, value: int, fee: int = 20_000) -> tuple[str, str]:
    """A segwit transaction spending a P2WSH(OP_TRUE) output; returns (hex, txid)."""
    inputs = varint(1) + bytes.fromhex(prev_txid)[::-1] + vout.to_bytes(4, "little") + b"\x00"
    inputs += b"\xff\xff\xff\xff"
    outputs = varint(1) + (value - fee).to_bytes(8, "little") + varint(len(P2WSH_TRUE))
    outputs += P2WSH_TRUE
    version, lock = (2).to_bytes(4, "little"), bytes(4)
    witness = varint(1) + varint(1) + OP_TRUE
    raw = version + b"\x00\x01" + inputs + outputs + witness + lock
    txid = sha256d(version + inputs + outputs + lock)[::-1].hex()
    return raw.hex(), txid


async def test_segwit_block_with_witness_tx_accepted_by_bcoin(
    bcoin: BcoinNode, tmp_path: Path
) -> None:
    address = script_to_address(P2WSH_TRUE, "bcoin-regtest")
    bcoin.call("generatetoaddress", 450, address)
    info = bcoin.call("getblockchaininfo")
    assert info["bip9_softforks"]["segwit"]["status"] == "active"

    coinbase_txid = bcoin.call("getblock", bcoin.call("getblockhash", 1))["tx"][0]
    out = bcoin.call("gettxout", coinbase_txid, 0)
    value = round(out["value"] * 100_000_000)
    raw_tx, txid = _spend_true(coinbase_txid, 0, value)
    assert bcoin.call("sendrawtransaction", raw_tx) == txid

    settings = load_settings(
        None,
        node={"url": bcoin.rpc_url, "user": "x", "password": bcoin.api_key, "poll_interval": 0.5},
        pool={"address": address, "network": "bcoin-regtest"},
        stratum={
            "ports": [{"port": 0, "difficulty": 0.0002, "host": "127.0.0.1"}],
            "vardiff": {"target_interval": 1.0, "retarget_window": 5.0},
        },
        data_dir=tmp_path,
    )
    pool = await start_pool(settings)
    try:
        template = pool.feed.current
        assert template is not None
        assert template.witness_commitment is not None
        assert [t.txid[::-1].hex() for t in template.transactions] == [txid]

        stop = asyncio.Event()
        task = asyncio.create_task(
            run_miner(
                MinerOptions(url=f"stratum+tcp://127.0.0.1:{pool.ports[0]}", users=["ivan.segwit"]),
                stop=stop,
            )
        )
        try:
            await wait_for(lambda: pool.stats.blocks_accepted >= 1, 120, "a block on bcoin")
        finally:
            stop.set()
        await asyncio.wait_for(task, 30)
    finally:
        await stop_pool(pool)

    first = next(b for b in pool.stats.blocks if b.accepted)
    block = bcoin.call("getblock", first.hash)
    assert block["height"] == 451
    assert txid in block["tx"]
    raw = bytes.fromhex(bcoin.call("getblock", first.hash, False))
    _, coinbase = parse_block_coinbase(raw)
    assert coinbase.segwit
    assert coinbase.outputs[0][1] == P2WSH_TRUE
    assert coinbase.outputs[1] == (0, template.witness_commitment)
    # The chain moved past the spend: the witness transaction is confirmed.
    assert bcoin.call("getrawmempool") == []
