"""SiaMining /network and /market: figures from the coin node and from a price source.

The arithmetic is pure (subsidy, retarget estimate, number formatting); the two readers
around it are thin: `NetworkReader` asks the node and keeps one snapshot per chain tip,
`PriceFeed` fetches an HTTP JSON price source and keeps the answer for `ttl` seconds.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import orjson

from hashquarry.chain.rpc import NodeError, NodeRpc

COIN = 100_000_000
HASHES_PER_DIFFICULTY = 2**32
RETARGET_INTERVAL = 2016  # blocks per difficulty period
TARGET_SPACING = 600  # seconds per block
TARGET_TIMESPAN = RETARGET_INTERVAL * TARGET_SPACING
MIN_DIFFICULTY = 1.0  # the proof-of-work limit of every chain that retargets
# Chains whose consensus rules never change the difficulty (fPowNoRetargeting).
NO_RETARGET_CHAINS = frozenset({"regtest"})
HALVING_INTERVAL = {"regtest": 150}  # every other chain: 210,000
DEFAULT_HALVING = 210_000


class Unavailable(Exception):
    """A source the endpoint depends on cannot answer; the message says which and why."""


# -- pure arithmetic ----------------------------------------------------------------------


def subsidy(height: int, halving_interval: int = DEFAULT_HALVING) -> int:
    """The block subsidy at `height` in base units (satoshis)."""
    halvings = height // halving_interval
    return 0 if halvings >= 64 else (50 * COIN) >> halvings


@dataclass(frozen=True)
class Retarget:
    next_difficulty: float
    blocks_to_retarget: int
    time_to_retarget: int
    retargets: bool  # False on chains that never retarget (regtest)


def estimate_retarget(
    height: int, difficulty: float, tip_time: int, period_start_time: int, *, retargets: bool
) -> Retarget:
    """Where the current 2016-block period ends, and the difficulty it will probably set.

    The period began at the last height that is a multiple of 2016; the next retarget is
    the first block of the next period. The estimate extrapolates the mean block spacing
    seen so far to the whole period and applies Bitcoin's rule: difficulty scaled by
    2016 x 600 s over the actual timespan (2015 spacings), clamped to a factor of 4 and
    to the proof-of-work limit (difficulty 1).
    Without a spacing yet (the tip opens the period), the target spacing is assumed and
    the difficulty is unchanged. A chain that never retargets (regtest) has no retarget
    to wait for: its difficulty stays and blocks and seconds to the retarget are 0.
    """
    if not retargets:
        return Retarget(float(difficulty), 0, 0, False)
    start = height - height % RETARGET_INTERVAL
    blocks_left = start + RETARGET_INTERVAL - height
    spans = height - start
    elapsed = tip_time - period_start_time
    observed = spans > 0 and elapsed > 0
    spacing = elapsed / spans if observed else float(TARGET_SPACING)
    time_left = round(blocks_left * spacing)
    if not observed:
        return Retarget(float(difficulty), blocks_left, time_left, True)
    actual = spacing * (RETARGET_INTERVAL - 1)
    actual = min(max(actual, TARGET_TIMESPAN / 4), TARGET_TIMESPAN * 4)
    estimate = max(float(difficulty) * TARGET_TIMESPAN / actual, MIN_DIFFICULTY)
    return Retarget(estimate, blocks_left, time_left, True)


def decimal_string(value: float) -> str:
    """A float as a plain decimal string: shortest round-trip digits, never an exponent."""
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    text = format(Decimal(repr(float(value))), "f")
    return text[:-2] if text.endswith(".0") else text


def coins(base_units: int | float) -> float:
    return base_units / COIN


def coin_string(base_units: int) -> str:
    """Base units as a decimal string with the coin's full precision: 8 decimals."""
    sign = "-" if base_units < 0 else ""
    v = abs(int(base_units))
    return f"{sign}{v // COIN}.{v % COIN:08d}"


# -- the node -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkSnapshot:
    tip: str
    height: int
    block_reward: int  # subsidy of the next block, base units
    hash_rate: float
    difficulty: float
    retarget: Retarget

    @property
    def hashes_per_block(self) -> float:
        return self.difficulty * HASHES_PER_DIFFICULTY


class NetworkReader:
    """One snapshot per chain tip: a request on an unchanged tip costs one RPC call."""

    def __init__(self, rpc: NodeRpc | None) -> None:
        self.rpc = rpc
        self._snapshot: NetworkSnapshot | None = None
        self._chain: str | None = None
        self._lock = asyncio.Lock()

    @property
    def last(self) -> NetworkSnapshot | None:
        return self._snapshot

    async def snapshot(self) -> NetworkSnapshot:
        if self.rpc is None:
            raise Unavailable("this API server has no coin node to ask")
        try:
            async with self._lock:
                tip = await self.rpc.call("getbestblockhash", retries=0)
                if self._snapshot is None or self._snapshot.tip != tip:
                    self._snapshot = await self._read(self.rpc, str(tip))
                return self._snapshot
        except NodeError as exc:
            raise Unavailable(f"the coin node cannot answer: {exc}") from None

    async def _read(self, rpc: NodeRpc, tip: str) -> NetworkSnapshot:
        if self._chain is None:
            self._chain = str((await rpc.call("getblockchaininfo", retries=0))["chain"])
        header = await rpc.call("getblockheader", tip, retries=0)
        height, difficulty = int(header["height"]), float(header["difficulty"])
        retargets = self._chain not in NO_RETARGET_CHAINS
        start_height = height - height % RETARGET_INTERVAL
        if start_height == height or not retargets:
            start_time = int(header["time"])
        else:
            start_hash = await rpc.call("getblockhash", start_height, retries=0)
            start_time = int((await rpc.call("getblockheader", start_hash, retries=0))["time"])
        hash_rate = float(await rpc.call("getnetworkhashps", retries=0))
        retarget = estimate_retarget(
            height,
            difficulty,
            int(header["time"]),
            start_time,
            retargets=retargets,
        )
        halving = HALVING_INTERVAL.get(self._chain, DEFAULT_HALVING)
        return NetworkSnapshot(
            tip, height, subsidy(height + 1, halving), hash_rate, difficulty, retarget
        )


# -- the price source ---------------------------------------------------------------------


@dataclass(frozen=True)
class Prices:
    btc_price: float
    usd_price: float


MAX_PRICE_BODY = 1 << 20
FAILURE_TTL = 5.0  # a failing source is asked again after this, not on every request


def _price(value: object, what: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise Unavailable(f"the price source gave {what} as {value!r}, not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unavailable(f"the price source gave {what} as {value!r}, not a number")
    if not math.isfinite(value) or value < 0:
        raise Unavailable(f"the price source gave {what} as {value!r}")
    return float(value)


def parse_prices(payload: Any, coin: str) -> Prices:
    """Accepted answers: SiaMining's own `{"btc_price": x, "usd_price": y}`, or CoinGecko's
    simple-price shape `{"<coin>": {"btc": x, "usd": y}}` (ids=<coin>&vs_currencies=btc,usd).
    For bitcoin itself a missing BTC price is 1."""
    if not isinstance(payload, dict):
        raise Unavailable("the price source did not answer with a JSON object")
    if "usd_price" in payload:
        fields = payload
        btc_key, usd_key = "btc_price", "usd_price"
    elif isinstance(payload.get(coin), dict):
        fields = payload[coin]
        btc_key, usd_key = "btc", "usd"
    else:
        raise Unavailable(f"the price source's answer has neither usd_price nor a {coin!r} object")
    usd = _price(fields.get(usd_key), f"the {coin} USD price")
    raw_btc = fields.get(btc_key)
    if raw_btc is None and coin == "bitcoin":
        raw_btc = 1.0
    return Prices(_price(raw_btc, f"the {coin} BTC price"), usd)


class PriceFeed:
    """Prices from `url`, fetched at most once per `ttl` seconds (one fetch at a time)."""

    def __init__(
        self,
        url: str | None,
        coin: str,
        *,
        ttl: float = 60.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.coin = coin
        self.ttl = ttl
        self.timeout = timeout
        self.clock = clock
        self.fetches = 0
        self._cached: tuple[float, Prices | str] | None = None  # prices, or why not
        self._lock = asyncio.Lock()

    async def prices(self) -> Prices:
        if not self.url:
            raise Unavailable(
                "no price source is configured on this pool (settings: api.price_url)"
            )
        async with self._lock:
            now = self.clock()
            if self._cached is not None:
                at, got = self._cached
                fresh = self.ttl if isinstance(got, Prices) else FAILURE_TTL
                if 0 <= now - at < fresh:
                    if isinstance(got, str):
                        raise Unavailable(got)
                    return got
            try:
                prices = await self._fetch(self.url)
            except Unavailable as exc:
                self._cached = (now, str(exc))
                raise
            self._cached = (now, prices)
            return prices

    async def _fetch(self, url: str) -> Prices:
        self.fetches += 1
        try:
            async with (
                httpx.AsyncClient(timeout=self.timeout) as client,
                client.stream("GET", url, headers={"accept": "application/json"}) as resp,
            ):
                body = bytearray()
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_PRICE_BODY:
                        raise Unavailable("the price source's answer is too large")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise Unavailable(
                f"the price source is unreachable: {type(exc).__name__}: {exc}"
            ) from None
        if resp.status_code != 200:
            raise Unavailable(f"the price source answered HTTP {resp.status_code}")
        try:
            payload = orjson.loads(bytes(body))
        except orjson.JSONDecodeError:
            raise Unavailable("the price source did not answer with JSON") from None
        return parse_prices(payload, self.coin)
