"""Figures 1 and 5: share throughput, pool CPU per share, acknowledgement latency.

Both run the same load: connections submitting valid precomputed shares at a fixed
total rate, open loop (a share is sent when its time comes, not when the previous
answer arrives), with at most `max_inflight` unanswered shares per connection so a
saturated pool shows up as a lower accepted rate instead of an ever-growing queue.
Figures are taken over a window after a warm-up; pool CPU is read from /proc at the
window's two edges.
"""

from __future__ import annotations

import array
import base64
import math
import time
from typing import TYPE_CHECKING, Any

from hashquarry.bench.control import processes_for
from hashquarry.bench.measure import summarize
from hashquarry.bench.poolproc import supports_static_template
from hashquarry.bench.report import Figure, check
from hashquarry.bench.template import branch_length, write_static_template

if TYPE_CHECKING:
    from hashquarry.bench.runner import BenchEnv, Target

TAIL = 0.3  # seconds of load after the window, so its end is still steady
# The pool drops a connection above 500 messages/s; stay well below.
MAX_RATE_PER_CONNECTION = 300.0
STATIC_TX = 4000


def _sleep_until(ns: int) -> None:
    delay = (ns - time.time_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


def run_rate(env: BenchEnv, target: Target, *, connections: int, rate: float) -> dict[str, Any]:
    """One load run; returns everything measured (rates, CPU, latencies in ms)."""
    o = env.opts
    if rate / connections > MAX_RATE_PER_CONNECTION:
        raise ValueError(
            f"{rate:g} shares/s over {connections} connections is more than "
            f"{MAX_RATE_PER_CONNECTION:g}/s each; the pool would ban them as flooding — "
            "use more --connections"
        )
    with env.loadgens(processes_for(connections)) as group:
        conn = group.connect(
            "share", target.host, target.port, connections, user=o.user,
            password=o.stratum_password,
        )  # fmt: skip
        if conn["ready"] == 0:
            raise RuntimeError(f"no connection became ready: {conn['errors']}")
        ready = [s["share_ready"] for s in group.all({"cmd": "status"}, 30)]
        per_conn = rate / sum(ready)
        shares = math.ceil(per_conn * (o.warmup + o.seconds + TAIL) * 1.1) + 4
        prep = group.all({"cmd": "prepare", "shares": shares}, 1800)
        start = time.time_ns() + 500_000_000
        w0 = start + int(o.warmup * 1e9)
        w1 = w0 + int(o.seconds * 1e9)
        group.send_each([
            {"cmd": "rate", "rate": rate * r / sum(ready), "start_ns": start,
             "warmup": o.warmup, "seconds": o.seconds, "tail": TAIL,
             "max_inflight": o.max_inflight}
            for r in ready
        ])  # fmt: skip
        _sleep_until(w0)
        before = target.sample()
        _sleep_until(w1)
        after = target.sample()
        replies = group.receive_all(o.warmup + o.seconds + 60)
        group.all({"cmd": "close"}, 60)

    accepted = sum(r["accepted_window"] for r in replies)
    latencies = array.array("q")
    for r in replies:
        latencies.frombytes(base64.b64decode(r["latency_ns"]))
    rejected: dict[str, int] = {}
    for r in replies:
        for code, n in r["rejected"].items():
            rejected[code] = rejected.get(code, 0) + n
    out: dict[str, Any] = {
        "pool": target.label,
        "connections": conn["ready"],
        "connect_errors": conn["errors"],
        "branch_length": conn.get("branch_length"),
        "share_difficulty": conn.get("difficulty"),
        "offered_rate": rate,
        "sent_per_second": sum(r["sent_window"] for r in replies) / o.seconds,
        "accepted_per_second": accepted / o.seconds,
        "accepted_in_window": accepted,
        "rejected": rejected,
        "unanswered": sum(r["unanswered"] for r in replies),
        "held_back": sum(r["held_back"] for r in replies),
        "generated_during_run": sum(r["on_demand"] for r in replies),
        "ack_ms": {k: (v / 1e6 if k != "count" else v)
                   for k, v in summarize(latencies).items()},
        "precompute": {
            "shares": sum(p["shares"] for p in prep),
            "hashes": sum(p["hashes"] for p in prep),
            "seconds": max(p["seconds"] for p in prep),
        },
        "loadgen_cpu_share": [r["cpu_window_seconds"] / o.seconds for r in replies],
        # Worst ack per 100 ms over all generators: where the tail comes from.
        "ack_timeline_max_ms": [
            max(col) for col in zip(*(r["timeline_max_ms"] for r in replies), strict=True)
        ],
        "window_seconds": o.seconds,
    }  # fmt: skip
    if before is not None and after is not None:
        cpu = after.cpu_seconds - before.cpu_seconds
        out["pool_cpu_seconds"] = cpu
        out["pool_cores"] = cpu / o.seconds
        out["pool_rss_mib"] = after.rss_kib / 1024
        out["pool_processes"] = len(after.pids)
        out["pool_cpu_wait_ms"] = (after.wait_seconds - before.wait_seconds) * 1e3
        out["cpu_us_per_share"] = cpu / accepted * 1e6 if accepted else None
        kernel = after.system_seconds - before.system_seconds
        out["kernel_us_per_share"] = kernel / accepted * 1e6 if accepted else None
    return out


def _static_template(env: BenchEnv) -> Any:
    node = env.node("difficulty1")
    tip = node.call("getbestblockhash")
    height = node.call("getblockcount") + 1
    path = env.workdir / "static-template.json"
    return write_static_template(path, STATIC_TX, prev_hash=tip, height=height)


def _rate_rows(fig: Figure, case: str, r: dict[str, Any], *, targets: bool) -> None:
    fig.add(case, "merkle branch length", r["branch_length"], "")
    fig.add(
        case, "accepted shares/s", r["accepted_per_second"], "shares/s",
        "≥ 30,000" if targets else "",
        check(r["accepted_per_second"], at_least=30_000) if targets else None,
        note=f"offered {r['offered_rate']:,.0f}/s, sent {r['sent_per_second']:,.0f}/s",
    )  # fmt: skip
    us = r.get("cpu_us_per_share")
    fig.add(
        case, "pool CPU per accepted share", us, "µs", "≤ 30" if targets else "",
        check(us, at_most=30) if targets else None,
        note=(f"pool used {r['pool_cores']:.2f} cores" if "pool_cores" in r
              else "no --target-pid: CPU not measured"),
    )  # fmt: skip
    kernel = r.get("kernel_us_per_share")
    if us and kernel is not None:
        # Loopback TCP runs the receiving side of every segment in the sender's context,
        # so each ack written costs the pool kernel time a real network would not.
        fig.add(
            case, "of which in the kernel (socket reads and writes)", kernel, "µs",
            note=f"user space {us - kernel:.1f} µs per share",
        )  # fmt: skip
    if "pool_cpu_wait_ms" in r:
        fig.add(
            case,
            "pool waited for a CPU",
            r["pool_cpu_wait_ms"],
            "ms",
            note=f"runnable without a core, over the {r['window_seconds']:g} s window",
        )
    if us:
        # On a shared machine the pool may not get a whole core; this is what one full
        # core would carry at the measured cost per share.
        fig.add(
            case, "ceiling at one full core (1e6 / CPU per share)", 1e6 / us, "shares/s",
            note=f"pool CPU use {r['pool_cores']:.2f} cores during the window",
        )  # fmt: skip
    lg = max(r["loadgen_cpu_share"])
    fig.add(
        case, "load generator CPU (busiest process)", lg * 100, "% of a core",
        note="not the bottleneck" if lg < 0.7 else "near saturation: add --loadgen-processes",
    )  # fmt: skip
    bad = sum(r["rejected"].values())
    if bad:
        fig.add(case, "rejected shares", bad, "", note=f"by error code {r['rejected']}")
    if r["unanswered"]:
        fig.add(
            case, "unanswered when the run ended", r["unanswered"], "",
            note="still queued in a saturated pool 3 s after the load stopped",
        )  # fmt: skip


def figure_rate(env: BenchEnv) -> Figure:
    o = env.opts
    fig = Figure(1, "sustained accepted shares/s and pool CPU per share")
    cases: list[tuple[str, int]] = (
        [(f"target {o.target[0]}:{o.target[1]}", -1)] if o.target
        else [(f"branch {b}", b) for b in o.branches]
    )  # fmt: skip
    for case, branch in cases:
        static = None
        if branch == 12:
            if not supports_static_template():
                fig.skip(case, "needs the pool option node.static_template (not there yet)")
                continue
            static = _static_template(env)
            source = f"static template, {STATIC_TX:,} transactions (node.static_template)"
        elif branch == 0:
            source = "difficulty-1 node's own template (no transactions)"
        else:
            source = "the target pool's own work"
        with env.pool("difficulty1", f"rate-b{max(branch, 0)}", static_template=static) as t:
            r = run_rate(env, t, connections=o.connections, rate=o.rate)
        r["template_source"] = source
        if branch == 12 and r["branch_length"] != branch_length(STATIC_TX):
            fig.notes.append(f"expected branch length 12, the notify had {r['branch_length']}")
        fig.data[case] = r
        _rate_rows(fig, case, r, targets=branch in (12, -1))
        fig.notes.append(f"{case}: work from the {source}; pool under test: {r['pool']}")
        if r["accepted_per_second"] < 0.97 * o.rate:
            starved = r.get("pool_cores", 1.0) < 0.9
            fig.notes.append(
                f"{case}: the pool accepted {r['accepted_per_second']:,.0f}/s of the "
                f"{o.rate:,.0f}/s offered: that is its ceiling here"
                + (f", but it got only {r['pool_cores']:.2f} of a core (other load on the "
                   "machine): read the one-core ceiling" if starved else "")
            )  # fmt: skip
        else:
            fig.notes.append(
                f"{case}: everything offered was accepted; the ceiling is higher (raise --rate)"
            )
    fig.notes.append(
        f"shares at difficulty {o.difficulty:g} (password {o.stratum_password!r}); the pool's "
        "cost per share does not depend on it, the generator's precompute does"
    )
    return fig


def figure_ack(env: BenchEnv) -> Figure:
    o = env.opts
    fig = Figure(5, "share acknowledgement latency at a sustained rate")
    with env.pool("difficulty1", "ack") as t:
        r = run_rate(env, t, connections=o.connections, rate=o.ack_rate)
    fig.data["run"] = r
    case = f"{o.ack_rate:,.0f} shares/s, branch {r['branch_length']}"
    ack = r["ack_ms"]
    on_target = abs(o.ack_rate - 10_000) < 1
    fig.add(case, "ack latency p50", ack.get("p50"), "ms")
    fig.add(
        case, "ack latency p99", ack.get("p99"), "ms", "≤ 20 at 10,000/s" if on_target else "",
        check(ack.get("p99"), at_most=20) if on_target else None,
        note=f"{ack.get('count', 0):,} samples, max {ack.get('max', 0):.2f} ms",
    )  # fmt: skip
    fig.add(
        case,
        "accepted shares/s",
        r["accepted_per_second"],
        "shares/s",
        note=f"offered {o.ack_rate:,.0f}/s",
    )
    if "pool_cpu_wait_ms" in r:
        fig.add(
            case, "pool waited for a CPU", r["pool_cpu_wait_ms"], "ms",
            note=f"over the {o.seconds:g} s window: other load on the machine delays acks",
        )  # fmt: skip
    fig.notes.append(f"pool under test: {r['pool']}")
    fig.notes.append(
        "time from the submit line written to its answer read, in the load generator "
        "(includes its own scheduling delay, so an upper bound)"
    )
    return fig
