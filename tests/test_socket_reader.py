"""SocketReader on real ZMQ sockets: nothing waiting is missed, a flood does not starve the
loop, and a message is not left waiting when our own send took the descriptor's signal."""
from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import zmq

from kernels.socket_reader import BATCH, SocketReader


@contextlib.contextmanager
def pair(ours: int, theirs: int):
    context = zmq.Context()
    address = f"inproc://{uuid.uuid4().hex}"
    peer = context.socket(theirs)
    peer.bind(address)
    sock = context.socket(ours)
    sock.connect(address)
    try:
        yield sock, peer
    finally:
        sock.close(linger=0)
        peer.close(linger=0)
        context.term()


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.001)


def test_what_waits_before_the_reader_starts_is_read_in_order_and_a_flood_yields_to_the_loop():
    async def main() -> None:
        with pair(zmq.PULL, zmq.PUSH) as (sock, peer):
            count = BATCH * 3 + 5
            for n in range(count):
                peer.send_multipart([b"m", str(n).encode()])
            await asyncio.sleep(0.05)               # all of them queued at our socket
            got: list[int] = []
            other: list[int] = []
            reader = SocketReader(sock, lambda frames: got.append(int(frames[1])))
            asyncio.get_running_loop().call_soon(lambda: other.append(len(got)))
            await until(lambda: len(got) == count)
            assert got == list(range(count))
            assert other and other[0] < count       # another callback ran amid the flood
            reader.close()
            peer.send_multipart([b"m", b"-1"])
            await asyncio.sleep(0.05)
            assert got[-1] == count - 1             # closed: nothing more is handed on
    asyncio.run(main())


def test_a_message_that_arrived_just_before_our_send_is_not_left_waiting():
    async def main() -> None:
        with pair(zmq.DEALER, zmq.ROUTER) as (sock, peer):
            got: list[bytes] = []
            reader = SocketReader(sock, lambda frames: got.append(frames[-1]))
            sock.send_multipart([b"hello"])
            reader.after_send()
            ident, _ = await asyncio.to_thread(peer.recv_multipart)
            for n in range(100):
                peer.send_multipart([ident, str(n).encode()])
                time.sleep(0.0005)                   # it is at our socket; the loop has not looked
                sock.send_multipart([b"next"])       # and our send takes the descriptor's signal
                reader.after_send()
                await until(lambda: len(got) == n + 1, timeout=2.0)
            reader.close()
    asyncio.run(main())
