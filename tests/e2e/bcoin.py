"""A real bcoin 1.0.2 full node on regtest: Bitcoin's segwit rules, a second validator.

Installed with npm once into the cache (leveldown pinned to 6.1.1, whose prebuilt
binaries ship inside the package), started in a scratch HOME and prefix on free ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from hashquarry.chain.regtest import cache_dir, free_port

PACKAGE_JSON = {
    "name": "hashquarry-bcoin",
    "private": True,
    "dependencies": {"bcoin": "1.0.2"},
    "overrides": {"leveldown": "6.1.1"},
}


class BcoinUnavailable(RuntimeError):
    pass


def ensure_bcoin() -> Path:
    base = cache_dir() / "bcoin"
    entry = base / "node_modules" / "bcoin" / "bin" / "node"
    if entry.is_file():
        return entry
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise BcoinUnavailable("node and npm are needed to install bcoin")
    base.mkdir(parents=True, exist_ok=True)
    (base / "package.json").write_text(json.dumps(PACKAGE_JSON))
    proc = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund"],
        cwd=base,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if proc.returncode != 0 or not entry.is_file():
        raise BcoinUnavailable(f"npm install bcoin failed: {proc.stderr[-800:]}")
    return entry


class BcoinNode:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hashquarry-bcoin-"))
        self.rpc_port = free_port()
        self.p2p_port = free_port()
        self.api_key = secrets.token_hex(16)
        self.proc: subprocess.Popen[bytes] | None = None
        self._client = httpx.Client(auth=("x", self.api_key), timeout=60)

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}"

    def start(self, timeout: float = 60) -> BcoinNode:
        entry = ensure_bcoin()
        home = self.dir / "home"
        (home / ".bcoin" / "wallet").mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, HOME=str(home))
        log = open(self.dir / "bcoin.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                "node",
                str(entry),
                "--network=regtest",
                f"--prefix={self.dir / 'data'}",
                "--http-host=127.0.0.1",
                f"--http-port={self.rpc_port}",
                f"--port={self.p2p_port}",
                f"--api-key={self.api_key}",
                "--workers=false",
                "--listen=false",
                "--no-wallet",
                "--log-level=warning",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BcoinUnavailable(
                    "bcoin exited: " + (self.dir / "bcoin.log").read_text(errors="replace")[-800:]
                )
            try:
                self.call("getblockcount")
                return self
            except (httpx.HTTPError, RuntimeError):
                if time.monotonic() > deadline:
                    self.close()
                    raise BcoinUnavailable("bcoin did not answer in time") from None
                time.sleep(0.3)

    def call(self, method: str, *params: Any) -> Any:
        resp = self._client.post(self.rpc_url, json={"method": method, "params": list(params)})
        body = resp.json()
        if body.get("error"):
            raise RuntimeError(f"bcoin {method}: {body['error']}")
        return body["result"]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        with contextlib.suppress(Exception):
            self._client.close()
        shutil.rmtree(self.dir, ignore_errors=True)
