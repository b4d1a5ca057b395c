"""The runner's side of the load generators: start them, send commands, gather answers."""

from __future__ import annotations

import contextlib
import math
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

# One process may hold fewer than 20,000 open files; leave room for everything else.
CONNECTIONS_PER_PROCESS = 15_000
SOURCE_ADDRESSES = [f"127.0.0.{i}" for i in range(2, 10)]


class LoadgenError(RuntimeError):
    pass


class Loadgen:
    """One `python -m hashquarry.bench.loadgen` process."""

    def __init__(self, index: int, log_path: Path) -> None:
        self.index = index
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hashquarry.bench.loadgen"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(orjson.dumps(cmd) + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise LoadgenError(self._died()) from None

    def receive(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, timeout))
        if not ready:
            raise LoadgenError(f"load generator {self.index} did not answer in {timeout:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            raise LoadgenError(self._died())
        reply: dict[str, Any] = orjson.loads(line)
        if "error" in reply and len(reply) == 1:
            raise LoadgenError(f"load generator {self.index}: {reply['error']}")
        return reply

    def _died(self) -> str:
        self.proc.poll()
        tail = self.log_path.read_text(errors="replace")[-1500:]
        return f"load generator {self.index} exited ({self.proc.returncode}):\n{tail}"

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.send({"cmd": "exit"})
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(Exception):
                stream.close()  # type: ignore[union-attr]


class LoadgenGroup:
    """Several load generators that get their share of one command at the same time."""

    def __init__(self, processes: int, log_dir: Path) -> None:
        self.members: list[Loadgen] = []
        try:
            for i in range(processes):
                self.members.append(Loadgen(i, log_dir / f"loadgen-{i}.log"))
        except Exception:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self.members)

    def send_each(self, cmds: list[dict[str, Any]]) -> None:
        if len(cmds) != len(self.members):
            raise ValueError("one command per load generator")
        for member, cmd in zip(self.members, cmds, strict=True):
            member.send(cmd)

    def receive_all(self, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        return [m.receive(deadline - time.monotonic()) for m in self.members]

    def each(self, cmds: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
        """Send cmds[i] to member i (all first, so they run in parallel), then collect."""
        self.send_each(cmds)
        return self.receive_all(timeout)

    def all(self, cmd: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        return self.each([cmd] * len(self.members), timeout)

    def connect(
        self,
        kind: str,
        host: str,
        port: int,
        count: int,
        *,
        user: str,
        password: str,
        timeout: float = 120.0,
    ) -> dict[str, Any]:
        """Open `count` connections spread evenly over the members; sums their answers."""
        counts = split(count, len(self.members))
        cmds, first = [], 0
        for n in counts:
            cmds.append({
                "cmd": "connect", "kind": kind, "host": host, "port": port, "count": n,
                "first": first, "sources": SOURCE_ADDRESSES, "user": user,
                "password": password, "timeout": timeout,
            })  # fmt: skip
            first += n
        replies = self.each(cmds, timeout + 30 + count / 500)
        total: dict[str, Any] = {"opened": 0, "ready": 0, "failed": 0, "errors": {}}
        for r in replies:
            for key in ("opened", "ready", "failed"):
                total[key] += r[key]
            for err, n in r["errors"].items():
                total["errors"][err] = total["errors"].get(err, 0) + n
            for key in ("branch_length", "difficulty", "extranonce2_size"):
                if key in r:
                    total[key] = r[key]
        total["seconds"] = max(r["seconds"] for r in replies)
        total["per_process"] = counts
        return total

    def close(self) -> None:
        for m in self.members:
            m.close()


def split(total: int, parts: int) -> list[int]:
    """`total` spread over `parts` as evenly as integers allow."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def processes_for(connections: int, minimum: int = 1) -> int:
    return max(minimum, math.ceil(connections / CONNECTIONS_PER_PROCESS))
