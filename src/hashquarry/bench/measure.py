"""What the bench measures of processes, and how latencies are summarised.

CPU and memory come from /proc, never from wall time: a pool that is fast because
it got two cores for itself must not look like a pool that is cheap. A pool may be a
tree of processes (`serve --processes N`, or another pool's workers), so every
figure is summed over the process and all its live descendants; a descendant that
has already exited and been reaped is still counted through its parent's
cutime/cstime.
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


class ProcessGone(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    ppid: int
    utime: int  # clock ticks
    stime: int
    cutime: int  # of reaped children
    cstime: int

    @property
    def user_seconds(self) -> float:
        return (self.utime + self.cutime) / CLOCK_TICKS

    @property
    def system_seconds(self) -> float:
        return (self.stime + self.cstime) / CLOCK_TICKS

    @property
    def cpu_seconds(self) -> float:
        return (self.utime + self.stime + self.cutime + self.cstime) / CLOCK_TICKS


def parse_stat(text: str) -> ProcStat:
    """Parse /proc/PID/stat. The command name is in parentheses and may itself contain
    spaces and parentheses, so the fields are split after its last ')'."""
    open_at = text.index("(")
    close_at = text.rindex(")")
    pid = int(text[:open_at])
    comm = text[open_at + 1 : close_at]
    rest = text[close_at + 2 :].split()
    # rest[0] is field 3 (state); utime..cstime are fields 14..17.
    return ProcStat(
        pid=pid,
        comm=comm,
        state=rest[0],
        ppid=int(rest[1]),
        utime=int(rest[11]),
        stime=int(rest[12]),
        cutime=int(rest[13]),
        cstime=int(rest[14]),
    )


def parse_status_rss_kib(text: str) -> int:
    """VmRSS from /proc/PID/status in KiB (0 for a zombie, which has no memory)."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            value, unit = line.split()[1:3]
            if unit.lower() != "kb":
                raise ValueError(f"unexpected VmRSS unit {unit!r}")
            return int(value)
    return 0


def read_stat(pid: int) -> ProcStat:
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text())
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(f"process {pid} is gone") from None


def read_rss_kib(pid: int) -> int:
    try:
        return parse_status_rss_kib((PROC / str(pid) / "status").read_text())
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(f"process {pid} is gone") from None


def parse_schedstat(text: str) -> tuple[int, int]:
    """(ns on a CPU, ns runnable but waiting for one) from /proc/.../schedstat."""
    on_cpu, waiting, _slices = text.split()[:3]
    return int(on_cpu), int(waiting)


def schedstat_seconds(pid: int) -> tuple[float, float]:
    """(on a CPU, runnable but waiting for one) summed over the process's threads, in
    seconds with ns resolution (utime/stime only tick every 10 ms). The wait is not CPU
    time, but it is latency: a figure taken while it grows was taken on a contended
    machine (other load, or more busy threads than cores)."""
    on_cpu = waiting = 0
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(f"process {pid} is gone") from None
    for task in tasks:
        try:
            run, wait = parse_schedstat((task / "schedstat").read_text())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        on_cpu += run
        waiting += wait
    return on_cpu / 1e9, waiting / 1e9


def runqueue_wait_seconds(pid: int) -> float:
    return schedstat_seconds(pid)[1]


def _all_stats() -> Iterable[ProcStat]:
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                yield parse_stat((entry / "stat").read_text())
            except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
                continue  # exited while we looked


def process_tree(root: int) -> list[int]:
    """`root` and every live descendant, root first."""
    children: dict[int, list[int]] = {}
    for st in _all_stats():
        children.setdefault(st.ppid, []).append(st.pid)
    tree = [root]
    i = 0
    while i < len(tree):
        tree.extend(children.get(tree[i], ()))
        i += 1
    return tree


@dataclass(frozen=True, slots=True)
class TreeSample:
    """CPU (seconds, since each process started) and resident memory of a process tree."""

    cpu_seconds: float
    rss_kib: int
    pids: tuple[int, ...]
    system_seconds: float = 0.0  # the kernel's share of cpu_seconds (syscalls: socket writes)
    wait_seconds: float = 0.0  # runnable but waiting for a CPU, all threads of the tree
    run_seconds: float = 0.0  # on a CPU per schedstat: ns resolution, live threads only


def sample_tree(root: int) -> TreeSample:
    read_stat(root)  # raises ProcessGone if the root itself is gone
    cpu = system = wait = run = 0.0
    rss = 0
    pids: list[int] = []
    for pid in process_tree(root):
        try:
            st = read_stat(pid)
            if st.state == "Z":
                continue
            cpu += st.cpu_seconds
            system += st.system_seconds
            rss += read_rss_kib(pid)
            on_cpu, waiting = schedstat_seconds(pid)
            run += on_cpu
            wait += waiting
            pids.append(pid)
        except ProcessGone:
            continue
    return TreeSample(cpu, rss, tuple(pids), system, wait, run)


def self_cpu_seconds() -> float:
    """This process's own user+system CPU time."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def raise_nofile_limit() -> int:
    """Raise the soft open-files limit to the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


# --- percentiles -----------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values: the smallest value with at least
    q% of the values at or below it (no interpolation, so it is always a measured value).
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(values: Iterable[float]) -> dict[str, float]:
    """count, min, p50, p90, p99, max and mean of some latencies (in their own unit)."""
    data = sorted(values)
    if not data:
        return {"count": 0}
    return {
        "count": len(data),
        "min": data[0],
        "p50": percentile(data, 50),
        "p90": percentile(data, 90),
        "p99": percentile(data, 99),
        "max": data[-1],
        "mean": sum(data) / len(data),
    }
