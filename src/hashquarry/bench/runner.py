"""Runs the selected figures: provisions nodes and pools (or uses --target), cleans up.

Each figure gets a fresh pool process, so one figure's leftovers (memory, parked
extranonces, share history) never show up in the next one's numbers.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from hashquarry.bench.control import LoadgenGroup
from hashquarry.bench.measure import TreeSample, raise_nofile_limit, sample_tree
from hashquarry.bench.poolproc import PoolProcess, PoolSpec, free_port
from hashquarry.bench.relay import ZmqStamps
from hashquarry.bench.report import Figure
from hashquarry.chain.regtest import RegtestNode

log = logging.getLogger(__name__)

ALL_FIGURES = (1, 2, 3, 4, 5)
TITLES = {
    1: "sustained accepted shares/s and pool CPU per share",
    2: "idle connections and resident memory per connection",
    3: "job broadcast latency, node's new block to the last miner",
    4: "block submit latency, winning share to submitblock",
    5: "share acknowledgement latency at a sustained rate",
}


class BenchError(RuntimeError):
    pass


class NodeLike(Protocol):
    def call(self, method: str, *params: Any) -> Any: ...


@dataclass
class BenchOptions:
    connections: int = 1000
    # Figure 1 offers more than the 30,000/s target so the pool runs at its ceiling: below
    # it, each wake-up of the event loop finds fewer shares, and the per-share kernel time
    # of reads, writes and epoll (loopback TCP) triples (measured 3.9 µs at capacity,
    # 10.5-11.6 µs at 30,000/s offered), which says nothing about what a core can carry.
    rate: float = 45_000.0
    ack_rate: float = 10_000.0
    seconds: float = 10.0
    warmup: float = 2.0
    idle: list[tuple[int, int | None]] = field(
        default_factory=lambda: [(10_000, None), (50_000, None)]
    )  # (connections, pool processes or None for automatic)
    miners: list[int] = field(default_factory=lambda: [1_000, 10_000])
    blocks: int = 10
    # Figure 3: the watching miners read only after the broadcast (their kernel receive
    # stamps are the same either way), so the generator's CPU and wake-ups stay off the
    # pool's two cores, as with miners on other machines. True: they read as it arrives.
    watch_reading: bool = False
    only: tuple[int, ...] = ALL_FIGURES
    branches: tuple[int, ...] = (0, 12)
    target: tuple[str, int] | None = None
    target_pid: int | None = None
    node_rpc: str | None = None
    node_zmq: str | None = None
    difficulty: float = 1e-9
    user: str = "bench"
    password: str | None = None
    max_inflight: int = 32
    accounting: bool = True
    loadgen_processes: int = 1
    workdir: Path | None = None
    keep_workdir: bool = False
    smoke: bool = False

    @property
    def stratum_password(self) -> str:
        return self.password if self.password is not None else f"d={self.difficulty:g}"

    @classmethod
    def smoke_sized(cls, **kw: Any) -> BenchOptions:
        """Tiny sizes that run every figure in well under a minute (for CI)."""
        base: dict[str, Any] = {
            "connections": 50, "rate": 2_000.0, "ack_rate": 1_000.0, "seconds": 2.0,
            "warmup": 0.5, "idle": [(300, None), (600, 2)], "miners": [50, 200], "blocks": 3,
            "smoke": True,
        }  # fmt: skip
        base.update(kw)
        return cls(**base)


@dataclass
class Target:
    """A Stratum endpoint under test and what can be measured of it."""

    host: str
    port: int
    pid: int | None
    label: str
    metrics_port: int | None = None
    accounting: bool | None = None  # None: unknown (another pool)

    def sample(self) -> TreeSample | None:
        return sample_tree(self.pid) if self.pid else None


class RemoteNode:
    """The node behind a --target pool, for figures 3 and 4 (http://user:pass@host:port)."""

    def __init__(self, url: str, zmq_url: str | None) -> None:
        parts = urlsplit(url)
        netloc = parts.hostname or "127.0.0.1"
        if parts.port:
            netloc += f":{parts.port}"
        self.url = urlunsplit((parts.scheme, netloc, parts.path or "/", "", ""))
        auth = (parts.username or "", parts.password or "")
        self.zmq_url = zmq_url
        self._client = httpx.Client(auth=auth, timeout=30)

    def call(self, method: str, *params: Any) -> Any:
        body = {"jsonrpc": "1.0", "id": 1, "method": method, "params": list(params)}
        reply = self._client.post(self.url, json=body).json()
        if reply.get("error"):
            raise BenchError(f"{method} failed: {reply['error']}")
        return reply["result"]

    def close(self) -> None:
        self._client.close()


class BenchEnv:
    def __init__(self, opts: BenchOptions) -> None:
        self.opts = opts
        self.workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="hashquarry-bench-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._nodes: dict[str, RegtestNode] = {}
        self._remote: RemoteNode | None = None
        self._zmq: dict[str, ZmqStamps] = {}

    @property
    def target_mode(self) -> bool:
        return self.opts.target is not None

    def node(self, chain: str) -> RegtestNode:
        """Our own node on `chain` ("difficulty1" or "regtest"), started on first use."""
        if chain not in self._nodes:
            log.info("starting a %s node", chain)
            self._nodes[chain] = RegtestNode(chain=chain).start()
        return self._nodes[chain]

    def block_node(self) -> tuple[NodeLike, str] | None:
        """A node the bench can mine blocks on, and its ZMQ endpoint; None if there is none."""
        if not self.target_mode:
            node = self.node("regtest")
            return node, node.zmq_url
        if self.opts.node_rpc and self.opts.node_zmq:
            if self._remote is None:
                self._remote = RemoteNode(self.opts.node_rpc, self.opts.node_zmq)
            return self._remote, self.opts.node_zmq
        return None

    def zmq(self, endpoint: str) -> ZmqStamps:
        if endpoint not in self._zmq:
            self._zmq[endpoint] = ZmqStamps(endpoint).start()
        return self._zmq[endpoint]

    @contextlib.contextmanager
    def pool(
        self,
        chain: str,
        name: str,
        *,
        static_template: Path | None = None,
        processes: int = 1,
        rpc_port: int | None = None,
        metrics: bool = False,
    ) -> Iterator[Target]:
        """The pool under test: ours, freshly started, or the --target one."""
        if self.opts.target is not None:
            host, port = self.opts.target
            yield Target(host, port, self.opts.target_pid, f"target {host}:{port}")
            return
        node = self.node(chain)
        spec = PoolSpec(
            node_url=f"http://127.0.0.1:{rpc_port or node.rpc_port}",
            node_user=node.user,
            node_password=node.password,
            address=node.call("getnewaddress"),
            network=node.network,
            difficulty=self.opts.difficulty,
            zmq_hashblock=node.zmq_url,
            static_template=static_template,
            processes=processes,
            metrics_port=free_port() if metrics else None,
            accounting=self.opts.accounting and processes == 1,
        )
        proc = PoolProcess(spec, self.workdir, name).start()
        source = "static template" if static_template else f"{chain} node"
        accounting = "share log + accounting" if spec.accounting else "no accounting"
        try:
            yield Target(
                "127.0.0.1", proc.port, proc.pid, f"hashquarry ({source}, {accounting})",
                metrics_port=spec.metrics_port, accounting=spec.accounting,
            )  # fmt: skip
        finally:
            proc.stop()

    @contextlib.contextmanager
    def loadgens(self, processes: int) -> Iterator[LoadgenGroup]:
        group = LoadgenGroup(max(processes, self.opts.loadgen_processes), self.workdir)
        try:
            yield group
        finally:
            group.close()

    def close(self) -> None:
        for z in self._zmq.values():
            z.stop()
        for node in self._nodes.values():
            with contextlib.suppress(Exception):
                node.close()
        if self._remote is not None:
            self._remote.close()
        if not self.opts.keep_workdir and self.opts.workdir is None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def figure_functions() -> dict[int, Callable[[BenchEnv], Figure]]:
    from hashquarry.bench.fig_latency import figure_block_submit, figure_broadcast
    from hashquarry.bench.fig_memory import figure_memory
    from hashquarry.bench.fig_rate import figure_ack, figure_rate

    return {
        1: figure_rate, 2: figure_memory, 3: figure_broadcast, 4: figure_block_submit,
        5: figure_ack,
    }  # fmt: skip


def run(
    opts: BenchOptions, progress: Callable[[str], None] | None = None
) -> tuple[list[Figure], dict[str, Any]]:
    """Run the chosen figures; a figure that fails is reported as such, the others still run."""
    raise_nofile_limit()  # the pool and load generators inherit it
    say = progress or (lambda _msg: None)
    env = BenchEnv(opts)
    functions = figure_functions()
    figures: list[Figure] = []
    meta: dict[str, Any] = {
        "started": time.time(),
        "pool": f"target {opts.target[0]}:{opts.target[1]}" if opts.target else "hashquarry",
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
        "machine": {"cpus": _cpus(), "python": platform.python_version(),
                    "kernel": platform.release()},
        "workdir": str(env.workdir),
    }  # fmt: skip
    try:
        for n in opts.only:
            say(f"figure {n}: {TITLES[n]}")
            started = time.monotonic()
            try:
                fig = functions[n](env)
            except Exception as exc:
                log.debug("figure %d failed", n, exc_info=True)
                fig = Figure(n, TITLES[n])
                fig.skip("—", f"failed: {exc}"[:300])
                fig.data["traceback"] = traceback.format_exc()
            fig.data["seconds"] = round(time.monotonic() - started, 2)
            figures.append(fig)
    finally:
        env.close()
    meta["seconds"] = round(time.time() - meta["started"], 2)
    return figures, meta


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))
