"""The broadcast fan-out (stratum/_fanout.c, stratum/fanout.py) on real sockets.

Socket pairs stand in for miners: every byte counted here went through the kernel.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Iterator

import pytest

from hashquarry.stratum import fanout
from hashquarry.stratum.fanout import Fanout

try:
    from hashquarry.stratum import _fanout as ext
except ImportError:
    ext = None  # type: ignore[assignment]

needs_ext = pytest.mark.skipif(ext is None, reason="hashquarry.stratum._fanout not built")


def test_ci_builds_the_extension() -> None:
    # Without it broadcasts still work (through the transports), only slower: CI must
    # not let a broken build hide behind that.
    if os.environ.get("CI"):
        assert ext is not None, "hashquarry.stratum._fanout was not built"
    assert (ext is not None) == fanout.NATIVE


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = [socket.socketpair() for _ in range(40)]
    for a, b in made:
        a.setblocking(False)
        b.setblocking(False)
    yield made
    for a, b in made:
        a.close()
        b.close()


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(1 << 16)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def _fill(sock: socket.socket) -> int:
    """Write until the socket takes nothing more; the bytes written."""
    n = 0
    block = b"f" * 4096
    while True:
        try:
            n += sock.send(block)
        except BlockingIOError:
            return n


@needs_ext
def test_every_payload_reaches_its_own_socket(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    payloads = [f"notify {i}\n".encode() * (i + 1) for i in range(len(pairs))]
    assert ext.send_each([a.fileno() for a, _ in pairs], payloads) == []
    for (_, b), payload in zip(pairs, payloads, strict=True):
        assert _read_all(b) == payload


@needs_ext
def test_what_a_socket_did_not_take_is_reported(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    (full, _), (partial, partial_peer), (closed, closed_peer), (fine, fine_peer) = pairs[:4]
    _fill(full)
    # Room for part of the payload only: fill, then let the reader take a little.
    partial.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    _fill(partial)
    drained = len(partial_peer.recv(6000))
    closed_peer.close()
    big = b"x" * 200_000
    short = dict(
        ext.send_each(
            [full.fileno(), partial.fileno(), closed.fileno(), fine.fileno()],
            [b"a" * 100, big, b"c" * 100, b"d" * 100],
        )
    )
    assert short[0] == -errno.EAGAIN
    assert drained > 0 and 0 < short[1] < len(big)
    assert short[2] == -errno.EPIPE
    assert 3 not in short
    assert _read_all(fine_peer) == b"d" * 100


@needs_ext
def test_a_closed_descriptor_is_an_error_not_a_crash() -> None:
    a, b = socket.socketpair()
    fd = a.fileno()
    a.close()
    b.close()
    assert ext.send_each([fd], [b"x"]) == [(0, -errno.EBADF)]


@needs_ext
@pytest.mark.parametrize(
    ("fds", "payloads", "error", "text"),
    [
        ([1, 2], [b"x"], ValueError, "2 fds but 1 payloads"),
        (["3"], [b"x"], TypeError, "fds[0] must be an int"),
        ([-1], [b"x"], ValueError, "fds[0] = -1 is not a descriptor"),
        ([3], ["text"], TypeError, "payloads[0] must be bytes, not str"),
        ([3], [bytearray(b"x")], TypeError, "payloads[0] must be bytes, not bytearray"),
        (5, [b"x"], TypeError, "fds must be a sequence"),
        ([3], None, TypeError, "payloads must be a sequence"),
    ],
)
def test_bad_input_names_the_field(
    fds: object, payloads: object, error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text.replace("[", r"\[").replace("]", r"\]")):
        ext.send_each(fds, payloads)  # type: ignore[arg-type]


@needs_ext
def test_bad_input_sends_nothing(pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    (a, b), (c, _) = pairs[:2]
    with pytest.raises(TypeError, match=r"payloads\[1\]"):
        ext.send_each([a.fileno(), c.fileno()], [b"first", "second"])
    assert _read_all(b) == b""


@needs_ext
@pytest.mark.parametrize("threads", [0, 1, 3])
def test_a_batch_sends_every_chunk_and_returns_the_leftovers(
    pairs: list[tuple[socket.socket, socket.socket]], threads: int
) -> None:
    fan = Fanout(threads, chunk=3)
    try:
        _fill(pairs[7][0])
        pairs[11][1].close()
        batch = fan.batch()
        for i, (a, _) in enumerate(pairs):
            batch.add(a.fileno(), f"job {i}\n".encode(), i)
        short = {owner: (payload, result) for owner, payload, result in batch.finish()}
        assert short == {7: (b"job 7\n", -errno.EAGAIN), 11: (b"job 11\n", -errno.EPIPE)}
        for i, (_, b) in enumerate(pairs):
            if i not in (7, 11):
                assert _read_all(b) == f"job {i}\n".encode()
        # A batch is single use, but the fan-out takes the next broadcast.
        again = fan.batch()
        again.add(pairs[0][0].fileno(), b"next\n", 0)
        assert again.finish() == []
        assert _read_all(pairs[0][1]) == b"next\n"
    finally:
        fan.close()


def test_switch_interval_is_restored() -> None:
    before = sys.getswitchinterval()
    fan = Fanout(2)
    try:
        with fan.handing_off():
            if fanout.NATIVE:
                assert sys.getswitchinterval() == pytest.approx(fanout.HANDOFF_SWITCH_INTERVAL)
        assert sys.getswitchinterval() == before
    finally:
        fan.close()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="threads must be >= 0"):
        Fanout(-1)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        Fanout(1, chunk=0)
