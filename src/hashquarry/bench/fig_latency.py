"""Figures 3 and 4: how fast a new block reaches every miner, and a found block the node.

Both need blocks on demand, so they run on a regtest node (every share is a block
there). Everything runs on one machine, so all timestamps are CLOCK_REALTIME
(time.time_ns) and comparable across processes.

Figure 3 starts the clock when the bench's own ZMQ subscriber hears the node's
hashblock (the same message the pool reacts to) and stops it at the kernel receive
time of each miner's clean notify, so it includes the pool's getblocktemplate round
trip and its whole broadcast loop, and excludes the load generator's reading time.

Figure 4 starts the clock when the load generator writes the winning share and
stops it when the submitblock request passes a relay in front of the node's RPC
port: "share arrival to submitblock sent", plus one loopback hop each way.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

from hashquarry.bench.control import processes_for
from hashquarry.bench.measure import summarize
from hashquarry.bench.poolproc import scrape_histogram
from hashquarry.bench.relay import RpcRelay
from hashquarry.bench.report import Figure, check
from hashquarry.bench.sendfloor import loopback_send_floor
from hashquarry.miner.work import prevhash_to_notify

if TYPE_CHECKING:
    from hashquarry.bench.runner import BenchEnv, Target

REACH_TIMEOUT = 15.0
PARK_SECONDS = 1.0
SUBMIT_HISTOGRAM = "hashquarry_block_submit_seconds"


def _notify_prevhash(block_hash: str) -> str:
    return prevhash_to_notify(bytes.fromhex(block_hash)[::-1])


def figure_broadcast(env: BenchEnv) -> Figure:
    o = env.opts
    fig = Figure(3, "job broadcast latency, node's new block to the last miner")
    found = env.block_node()
    if found is None:
        fig.skip("—", "with --target, give --node-rpc and --node-zmq of its (regtest) node")
        return fig
    node, zmq_url = found
    stamps = env.zmq(zmq_url)
    address = node.call("getnewaddress")
    with env.pool("regtest", "broadcast") as t:
        for count in o.miners:
            case = f"{count:,} miners"
            with env.loadgens(processes_for(count)) as group:
                conn = group.connect(
                    "watch", t.host, t.port, count, user=o.user, password=o.stratum_password,
                    timeout=60 + count / 200,
                )  # fmt: skip
                ready = conn["ready"]
                blocks = [
                    _one_block(node, address, stamps, group, ready, t, park=not o.watch_reading)
                    for _ in range(o.blocks)
                ]
                group.all({"cmd": "close"}, 120)
            lasts = [b["last_ms"] for b in blocks if b["last_ms"] is not None]
            summary = summarize(lasts)
            fig.data[case] = {"miners_ready": ready, "blocks": blocks, "last_ms": summary,
                              "connect_errors": conn["errors"]}  # fmt: skip
            reached = min((b["reached"] for b in blocks), default=0)
            at_10k = count >= 10_000
            fig.add(
                case,
                "last miner, p50 over blocks",
                summary.get("p50"),
                "ms",
                note=f"{len(lasts)} blocks",
            )
            fig.add(
                case, "last miner, p99 over blocks", summary.get("p99"), "ms",
                "≤ 50 at 10,000" if at_10k else "",
                check(summary.get("p99"), at_most=50) if at_10k else None,
                note=f"least reached {reached:,} of {ready:,} ready",
            )  # fmt: skip
            firsts = [b["first_ms"] for b in blocks if b["first_ms"] is not None]
            if firsts:
                fig.add(
                    case, "first miner, p50 over blocks", statistics.median(firsts), "ms",
                    note="node's block → template fetched, job built, first write",
                )  # fmt: skip
            medians = [b["median_ms"] for b in blocks if b["median_ms"] is not None]
            if medians:
                fig.add(case, "median miner, p50 over blocks", statistics.median(medians), "ms")
            cpu = [b["pool_cpu_ms"] for b in blocks if "pool_cpu_ms" in b]
            if cpu:
                # The kernel's share from utime/stime ticks, summed over blocks so the
                # 10 ms resolution averages out.
                system = sum(b["pool_system_ms"] for b in blocks if "pool_cpu_ms" in b)
                total = sum(cpu)
                p50 = statistics.median(cpu)
                fig.add(
                    case, "pool CPU per new block, p50", p50, "ms",
                    note=(f"{p50 * 1e3 / count:.1f} µs per miner, ~"
                          f"{min(100.0, 100 * system / total):.0f}% in the kernel"
                          if total else ""),
                )  # fmt: skip
            floor = loopback_send_floor(count, reading=o.watch_reading)
            fig.data[case]["send_floor"] = floor
            fig.add(
                case, "floor: one plain send() per socket", floor["wall_ms_p50"], "ms",
                note=(f"{floor['bytes']} B to {count:,} loopback sockets, kernel "
                      f"{floor['kernel_ms_p50']:.0f} ms: what any sender pays here"),
            )  # fmt: skip
            user = [b["user_last_ms"] for b in blocks if b["user_last_ms"] is not None]
            if user and o.watch_reading:  # parked miners read a second later by design
                fig.add(
                    case,
                    "last miner, user-space read (p50)",
                    statistics.median(user),
                    "ms",
                    note="for comparison: includes the generator's own reading",
                )
    fig.notes.append(
        "clock: bench's ZMQ hashblock arrival → kernel receive time (SO_TIMESTAMPNS) of the "
        "clean notify at each miner; p50/p99 are over blocks of the per-block last arrival"
    )
    fig.notes.append(
        "miners read as notifies arrive (--watch-reading): the generator's CPU and wake-ups "
        "load the pool's cores"
        if o.watch_reading
        else "miners read only after the broadcast, as if on other machines (the kernel "
        "stamps are the same); --watch-reading makes them read as it arrives"
    )
    return fig


def _one_block(
    node: Any, address: str, stamps: Any, group: Any, ready: int, target: Target, *, park: bool
) -> dict[str, Any]:
    if park:
        group.all({"cmd": "park"}, 60)
    before = target.sample()
    called = time.time_ns()
    block_hash = node.call("generatetoaddress", 1, address)[0]
    returned = time.time_ns()
    zmq_ns = stamps.wait(block_hash, 5.0)
    start = zmq_ns or called
    prevhash = _notify_prevhash(block_hash)
    if park:
        # Far longer than a broadcast takes; one still running after it is only slowed
        # by the reading, so the figure can come out worse, never better.
        time.sleep(PARK_SECONDS)
        group.all({"cmd": "unpark"}, 60)
    deadline = time.monotonic() + REACH_TIMEOUT
    while time.monotonic() < deadline:
        counts = group.all({"cmd": "notify_times", "prevhash": prevhash, "count_only": True}, 30)
        if sum(c["received"] for c in counts) >= ready:
            break
        time.sleep(0.05)
    # Sampled before the final query, so the pool's CPU is that of this one block (plus
    # a few idle polls): template fetch, job build and the broadcast.
    after = target.sample()
    replies = group.all({"cmd": "notify_times", "prevhash": prevhash, "forget": True}, 60)
    kernel = [(k - start) / 1e6 for r in replies for k in r["kernel_ns"]]
    user = [(u - start) / 1e6 for r in replies for u in r["user_ns"]]
    time.sleep(0.2)  # let the pool go quiet before the next block
    cpu: dict[str, float] = {}
    if before is not None and after is not None:
        cpu = {
            # schedstat: ns resolution, where utime/stime tick every 10 ms.
            "pool_cpu_ms": (after.run_seconds - before.run_seconds) * 1e3,
            "pool_system_ms": (after.system_seconds - before.system_seconds) * 1e3,
        }
    return {
        **cpu,
        "hash": block_hash, "reached": len(kernel),
        "user_time_fallbacks": sum(r["unstamped"] for r in replies),
        "clock": "zmq" if zmq_ns else "rpc call",
        "rpc_ms": (returned - called) / 1e6,
        "zmq_after_rpc_return_ms": (zmq_ns - returned) / 1e6 if zmq_ns else None,
        "first_ms": min(kernel) if kernel else None,
        "last_ms": max(kernel) if kernel else None,
        "median_ms": statistics.median(kernel) if kernel else None,
        "user_last_ms": max(user) if user else None,
    }  # fmt: skip


def figure_block_submit(env: BenchEnv) -> Figure:
    o = env.opts
    fig = Figure(4, "block submit latency, winning share to submitblock")
    found = env.block_node()
    if found is None:
        fig.skip("—", "with --target, give --node-rpc and --node-zmq of its (regtest) node")
        return fig
    node, zmq_url = found
    stamps = env.zmq(zmq_url)
    relay: RpcRelay | None = None
    if not env.target_mode:
        relay = RpcRelay(env.node("regtest").rpc_port)
        relay.start()
    trials: list[dict[str, Any]] = []
    try:
        with env.pool("regtest", "blocksubmit", rpc_port=relay.port if relay else None,
                      metrics=True) as t, env.loadgens(1) as group:  # fmt: skip
            group.connect("share", t.host, t.port, 1, user=o.user, password=o.stratum_password)
            lg = group.members[0]
            for _ in range(o.blocks):
                tip = node.call("getbestblockhash")
                before = scrape_histogram(t.metrics_port, SUBMIT_HISTOGRAM) if t.metrics_port \
                    else None  # fmt: skip
                lg.send({"cmd": "block_share", "prevhash": _notify_prevhash(tip), "timeout": 10})
                r = lg.receive(30)
                trial: dict[str, Any] = dict(r)
                if "sent_ns" in r and "error" not in r:
                    sent = r["sent_ns"]
                    if relay is not None:
                        stamp = relay.wait_stamp(sent, 5.0)
                        trial["relay_ms"] = (stamp - sent) / 1e6 if stamp else None
                    zmq_ns = stamps.wait(r["block_hash"], 10.0)
                    trial["zmq_ms"] = (zmq_ns - sent) / 1e6 if zmq_ns else None
                    if before is not None and t.metrics_port is not None:
                        trial["histogram_ms"] = _histogram_delta(t.metrics_port, before)
                trials.append(trial)
    finally:
        if relay is not None:
            relay.stop()
    fig.data["trials"] = trials
    case = f"{len(trials)} blocks on regtest"
    relay_ms = [x["relay_ms"] for x in trials if x.get("relay_ms") is not None]
    if relay_ms:
        s = summarize(relay_ms)
        fig.add(
            case,
            "share written → submitblock at the node, p50",
            s["p50"],
            "ms",
            "≤ 2",
            check(s["p50"], at_most=2),
            note=f"max {s['max']:.3f} ms (RPC relay)",
        )
    hist = [x["histogram_ms"] for x in trials if x.get("histogram_ms") is not None]
    if hist:
        fig.add(
            case,
            "pool's own histogram, p50",
            statistics.median(hist),
            "ms",
            note=f"{SUBMIT_HISTOGRAM}: share validated → node's answer to submitblock",
        )
    zmq_ms = [x["zmq_ms"] for x in trials if x.get("zmq_ms") is not None]
    if zmq_ms:
        fig.add(
            case,
            "share written → node's ZMQ hashblock, p50",
            statistics.median(zmq_ms),
            "ms",
            note="end to end, includes the node's validation",
        )
    failed = [x for x in trials if "error" in x or x.get("accepted") is False]
    if failed:
        fig.notes.append(f"{len(failed)} trials failed: {failed[0]}")
    return fig


def _histogram_delta(port: int, before: tuple[float, float]) -> float | None:
    """The one new observation of the submit histogram, in ms (waits for it to appear)."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        now = scrape_histogram(port, SUBMIT_HISTOGRAM)
        if now is not None and now[1] > before[1]:
            return (now[0] - before[0]) / (now[1] - before[1]) * 1000
        time.sleep(0.05)
    return None
