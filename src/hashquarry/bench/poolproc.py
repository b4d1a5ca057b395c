"""The pool under test as its own process: `python -m hashquarry serve` with env overrides.

A separate process so that its CPU and memory can be read from /proc without the
bench's own work in them, and so that it runs exactly as an operator runs it.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

# Large enough for every connection of a run to come from one source address.
PER_IP_CAP = 1_000_000


class PoolStartError(RuntimeError):
    pass


def supports_static_template() -> bool:
    """Whether this pool's config has `node.static_template` (needed for branch length 12)."""
    from hashquarry.config import NodeConfig

    return "static_template" in NodeConfig.model_fields


def supports_processes() -> bool:
    """Whether `hashquarry serve` takes --processes (needed above ~15,000 connections)."""
    from hashquarry.cli.main import serve

    return "processes" in inspect.signature(serve).parameters


@dataclass
class PoolSpec:
    node_url: str
    node_user: str
    node_password: str
    address: str
    network: str
    difficulty: float
    zmq_hashblock: str | None = None
    static_template: Path | None = None
    processes: int = 1
    metrics_port: int | None = None
    # The durable share log and accounting (acks wait for the fsync); the pool refuses
    # it with --processes > 1 for now, so several front ends run without it.
    accounting: bool = True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PoolProcess:
    def __init__(self, spec: PoolSpec, workdir: Path, name: str) -> None:
        self.spec = spec
        self.workdir = workdir
        self.log_path = workdir / f"pool-{name}.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def env(self) -> dict[str, str]:
        s = self.spec
        env = dict(os.environ)
        env.update({
            "HASHQUARRY_NODE__URL": s.node_url,
            "HASHQUARRY_NODE__USER": s.node_user,
            "HASHQUARRY_NODE__PASSWORD": s.node_password,
            "HASHQUARRY_POOL__ADDRESS": s.address,
            "HASHQUARRY_POOL__NETWORK": s.network,
            "HASHQUARRY_STRATUM__PORTS": orjson.dumps(
                [{"port": self.port, "difficulty": s.difficulty, "host": "127.0.0.1"}]
            ).decode(),
            # The fixed difficulty asked for with d= is clamped to this minimum.
            "HASHQUARRY_STRATUM__VARDIFF__MIN_DIFFICULTY": repr(min(s.difficulty, 1e-6)),
            # All bench miners come from 8 loopback addresses.
            "HASHQUARRY_STRATUM__DEFENCES__MAX_CONNECTIONS_PER_IP": str(PER_IP_CAP),
            "HASHQUARRY_DATA_DIR": str(self.workdir / "pool-data"),
            # INFO logs a line per closed connection: 50,000 of them at teardown.
            "HASHQUARRY_LOG_LEVEL": "WARNING",
            # The Stratum path is what is measured; the HTTP API would only add noise.
            "HASHQUARRY_API__ENABLED": "false",
            # Payouts have nothing to pay in a benchmark.
            "HASHQUARRY_PAYOUTS__ENABLED": "false",
        })  # fmt: skip
        if s.zmq_hashblock:
            env["HASHQUARRY_NODE__ZMQ_HASHBLOCK"] = s.zmq_hashblock
        if s.static_template is not None:
            env["HASHQUARRY_NODE__STATIC_TEMPLATE"] = str(s.static_template)
        if s.metrics_port is not None:
            env["HASHQUARRY_METRICS__PORT"] = str(s.metrics_port)
        env["HASHQUARRY_ACCOUNTING__ENABLED"] = "true" if s.accounting else "false"
        return env

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "hashquarry", "serve"]
        if self.spec.processes > 1:
            cmd += ["--processes", str(self.spec.processes)]
        return cmd

    def start(self, timeout: float = 60.0) -> PoolProcess:
        data = self.workdir / "pool-data"
        if data.exists():
            shutil.rmtree(data)  # every pool starts on an empty store and share log
        data.mkdir(parents=True)
        if self.spec.accounting:
            self._migrate()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), env=self.env(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        # The pool listens only once it has a template, so an open port means work is ready.
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise PoolStartError(f"the pool exited ({self.proc.returncode}):\n{self._tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise PoolStartError(f"the pool did not listen within {timeout:.0f} s")
            time.sleep(0.1)
        return self

    def _migrate(self) -> None:
        with open(self.log_path, "ab") as log:
            done = subprocess.run(
                [sys.executable, "-m", "hashquarry", "db", "upgrade"], env=self.env(),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, timeout=180,
                check=False,
            )  # fmt: skip
        if done.returncode != 0:
            raise PoolStartError(f"`hashquarry db upgrade` failed:\n{self._tail()}")

    def _tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]

    def stop(self, timeout: float = 20.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        # The whole session: with --processes the workers go too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def scrape_histogram(port: int, name: str) -> tuple[float, float] | None:
    """(sum, count) of a Prometheus histogram, or None when it is not exported."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    found: dict[str, float] = {}
    for line in text.splitlines():
        for suffix in ("_sum", "_count"):
            if line.startswith(name + suffix + " ") or line.startswith(name + suffix + "{"):
                found[suffix] = float(line.rsplit(" ", 1)[1])
    if "_sum" not in found or "_count" not in found:
        return None
    return found["_sum"], found["_count"]
