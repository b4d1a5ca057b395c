"""`hashquarry bench ...`: the typer sub-app (mounted by the main CLI as `bench`)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from hashquarry.bench.runner import ALL_FIGURES, BenchOptions, run

bench_app = typer.Typer(help="Measure a Stratum pool: throughput, memory, latencies.",
                        no_args_is_help=True)  # fmt: skip


@bench_app.callback()
def _group() -> None:
    """Measure a Stratum pool: throughput, memory, latencies."""
    # A callback keeps `stratum` a subcommand even while it is the only one.


def parse_only(text: str | None) -> tuple[int, ...]:
    if not text:
        return ALL_FIGURES
    try:
        chosen = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise typer.BadParameter("a comma list of figure numbers, e.g. 1,3") from None
    if not chosen or any(n not in ALL_FIGURES for n in chosen):
        raise typer.BadParameter(f"figures are {', '.join(map(str, ALL_FIGURES))}")
    return tuple(chosen)


def parse_idle(text: str) -> list[tuple[int, int | None]]:
    """Figure 2 sizes like "10000,50000/4": counts, each optionally /pool processes."""
    out: list[tuple[int, int | None]] = []
    try:
        for part in text.split(","):
            count, _, procs = part.strip().partition("/")
            out.append((int(count), int(procs) if procs else None))
    except ValueError:
        raise typer.BadParameter("e.g. 10000,50000 or 10000,50000/4") from None
    if any(c < 1 or (p is not None and p < 1) for c, p in out):
        raise typer.BadParameter("counts must be positive")
    return out


def parse_ints(text: str, name: str) -> list[int]:
    try:
        values = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise typer.BadParameter(f"{name}: a comma list of integers") from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"{name}: positive integers")
    return values


def parse_branches(text: str) -> list[int]:
    try:
        values = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise typer.BadParameter("--branches: 0, 12 or both") from None
    if not values or any(v not in (0, 12) for v in values):
        raise typer.BadParameter("--branches: 0, 12 or both")
    return values


def parse_target(text: str | None) -> tuple[str, int] | None:
    if text is None:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise typer.BadParameter("--target takes host:port")
    return host, int(port)


@bench_app.command()
def stratum(
    connections: Annotated[
        int | None, typer.Option(min=1, help="connections of the rate runs (1, 5)")
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            min=1,
            help="figure 1 offered shares/s (default 45,000: the pool at its ceiling)",
        ),
    ] = None,
    ack_rate: Annotated[float | None, typer.Option(min=1, help="shares/s in figure 5")] = None,
    seconds: Annotated[
        float | None, typer.Option(min=0.5, help="measured window of a rate run")
    ] = None,
    idle: Annotated[
        str | None, typer.Option(help="figure 2 sizes, e.g. 10000,50000/4 (/pool processes)")
    ] = None,
    miners: Annotated[str | None, typer.Option(help="figure 3 sizes, e.g. 1000,10000")] = None,
    blocks: Annotated[
        int | None, typer.Option(min=1, help="blocks per size (figures 3, 4)")
    ] = None,
    watch_reading: Annotated[
        bool,
        typer.Option(
            help="figure 3: miners read as notifies arrive, not after the broadcast "
            "(adds the generator's CPU and wake-ups to the pool's cores)"
        ),
    ] = False,
    only: Annotated[str | None, typer.Option(help="figures to run, e.g. 1,3")] = None,
    branches: Annotated[str, typer.Option(help="figure 1 merkle branch lengths (0, 12)")] = "0,12",
    smoke: Annotated[
        bool, typer.Option(help="tiny sizes, every figure in well under a minute")
    ] = False,
    target: Annotated[
        str | None, typer.Option(help="measure another Stratum pool, host:port")
    ] = None,
    target_pid: Annotated[
        int | None, typer.Option(help="its PID, for CPU and memory figures")
    ] = None,
    node_rpc: Annotated[
        str | None, typer.Option(help="with --target: its regtest node, http://user:pass@host:port")
    ] = None,
    node_zmq: Annotated[
        str | None, typer.Option(help="with --target: that node's ZMQ hashblock")
    ] = None,
    difficulty: Annotated[
        float, typer.Option(min=1e-12, help="share difficulty asked with d=")
    ] = 1e-9,
    user: Annotated[
        str, typer.Option(help="account part of the worker names (account.wN)")
    ] = "bench",
    password: Annotated[
        str | None, typer.Option(help="Stratum password (default d=DIFFICULTY)")
    ] = None,
    loadgen_processes: Annotated[
        int, typer.Option(min=1, help="at least this many load generators")
    ] = 1,
    accounting: Annotated[
        bool, typer.Option(help="our pool with its durable share log and accounting")
    ] = True,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the figures here")] = None,
    workdir: Annotated[Path | None, typer.Option(help="keep logs and templates here")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Load a Stratum pool and print its figures (see issue 6)."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    given: dict[str, Any] = {
        "connections": connections, "rate": rate, "ack_rate": ack_rate, "seconds": seconds,
        "blocks": blocks,
        "idle": parse_idle(idle) if idle else None,
        "miners": parse_ints(miners, "--miners") if miners else None,
        "branches": tuple(parse_branches(branches)),
    }  # fmt: skip
    kw: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    kw.update(
        only=parse_only(only), target=parse_target(target), target_pid=target_pid,
        node_rpc=node_rpc, node_zmq=node_zmq, difficulty=difficulty, user=user,
        password=password, loadgen_processes=loadgen_processes, workdir=workdir,
        accounting=accounting, watch_reading=watch_reading,
        keep_workdir=workdir is not None,
    )  # fmt: skip
    opts = BenchOptions.smoke_sized(**kw) if smoke else BenchOptions(**kw)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # CI logs: one wide table rather than wrapped cells
    err = Console(stderr=True)
    figures, meta = run(opts, progress=lambda msg: err.print(f"[dim]… {msg}[/]"))

    from hashquarry.bench.report import render, write_json

    render(figures, meta, console)
    if json_path is not None:
        write_json(json_path, figures, meta)
        err.print(f"[dim]figures written to {json_path}[/]")
    if any(r.metric == "skipped" and r.note.startswith("failed") for f in figures for r in f.rows):
        raise typer.Exit(1)


def main() -> None:
    """`python -m hashquarry.bench.cli stratum ...` works before the CLI mounts bench_app."""
    bench_app()


if __name__ == "__main__":
    main()
