"""Figure 2: idle connections held, and the pool's resident memory per connection.

RSS is summed over the pool's process tree; the baseline is taken after the pool
has started and before the first miner connects, so the figure is what each miner
adds: (RSS after - RSS before) / connections, once every miner is subscribed,
authorized and has its first job, and the pool has had a moment to settle.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from hashquarry.bench.control import processes_for
from hashquarry.bench.poolproc import supports_processes
from hashquarry.bench.report import Figure, check

if TYPE_CHECKING:
    from hashquarry.bench.runner import BenchEnv

# Fewer than the 20,000 open files one process may have, with room for the rest.
POOL_CONNECTIONS_PER_PROCESS = 15_000
SETTLE_SECONDS = 2.0


def figure_memory(env: BenchEnv) -> Figure:
    o = env.opts
    fig = Figure(2, "idle connections and resident memory per connection")
    for count, wanted in o.idle:
        processes = wanted or math.ceil(count / POOL_CONNECTIONS_PER_PROCESS)
        case = f"{count:,} idle" + (f", {processes} pool processes" if processes > 1 else "")
        if processes > 1 and not env.target_mode and not supports_processes():
            fig.skip(case, "needs `hashquarry serve --processes N` (not there yet)")
            continue
        with env.pool("difficulty1", f"idle-{count}", processes=processes) as t:
            time.sleep(1.0)  # let the pool finish starting before the baseline
            before = t.sample()
            with env.loadgens(processes_for(count)) as group:
                conn = group.connect(
                    "share", t.host, t.port, count, user=o.user, password=o.stratum_password,
                    timeout=60 + count / 200,
                )  # fmt: skip
                time.sleep(SETTLE_SECONDS)
                status = group.all({"cmd": "status"}, 30)
                held = sum(s["share_ready"] for s in status)
                after = t.sample()
                group.all({"cmd": "close"}, 120)
        data = {
            "connections": count, "pool_processes": processes, "ready": conn["ready"],
            "held_after_settle": held, "connect_seconds": conn["seconds"],
            "connect_errors": conn["errors"], "loadgen_processes": len(conn["per_process"]),
        }  # fmt: skip
        fig.add(
            case, "connections held", held, f"of {count:,}",
            note=f"all up in {conn['seconds']:.1f} s" if held == count else str(conn["errors"]),
        )  # fmt: skip
        if before is not None and after is not None:
            per_kib = (after.rss_kib - before.rss_kib) / max(held, 1)
            data.update(
                rss_before_kib=before.rss_kib, rss_after_kib=after.rss_kib,
                rss_per_connection_kib=per_kib, measured_pids=list(after.pids),
            )  # fmt: skip
            at_50k = count >= 50_000
            fig.add(
                case, "pool RSS per connection", per_kib, "KiB",
                "≤ 4 at 50,000" if at_50k else "", check(per_kib, at_most=4) if at_50k else None,
                note=(f"{before.rss_kib / 1024:.1f} → {after.rss_kib / 1024:.1f} MiB over "
                      f"{len(after.pids)} process(es)"),
            )  # fmt: skip
        else:
            fig.add(case, "pool RSS per connection", None, "KiB", note="no --target-pid")
        if after is not None and len(after.pids) < processes:
            fig.notes.append(
                f"{case}: only {len(after.pids)} of {processes} pool processes were running "
                f"(see {env.workdir}/pool-idle-{count}.log)"
            )
        fig.data[case] = data
    return fig
