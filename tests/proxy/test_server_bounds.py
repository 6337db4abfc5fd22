"""The server's per-client bounds, in-process over Trio memory streams on a mock clock."""

from __future__ import annotations

import struct
from typing import Any, cast

import trio
import trio.testing

from argon_proxy.config import Settings
from argon_proxy.engine import Engine
from argon_proxy.protocol import ClientProtocol
from argon_proxy.server import ProxyServer, _Client
from argon_proxy.upstream import UpstreamPool
from argon_proxy.upstream_target import Address

_HEADER = struct.pack("<iiii", 1000, 1, 0, 2013)  # an OP_MSG announcing 1000 bytes


class _NoRequests:
    """Stands in for the protocol: these clients never complete a frame."""

    async def handle(self, frame: object) -> None:
        raise AssertionError("no frame should complete")


def _server(**settings: Any) -> ProxyServer:
    pool = UpstreamPool(Address("127.0.0.1", 9))
    return ProxyServer(Settings(**settings), pool, cast(Engine, None))


async def _serve(
    server: ProxyServer, stream: trio.abc.ReceiveStream, client: _Client, done: dict[int, float]
) -> None:
    await server._serve_client(stream, cast(ClientProtocol, _NoRequests()), client, id(client))
    done[id(client)] = trio.current_time()


async def test_the_frame_deadline_does_not_restart_with_each_byte(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = _server(frame_timeout=10.0)
    send, receive = trio.testing.memory_stream_one_way_pair()
    client = _Client()
    done: dict[int, float] = {}
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve, server, receive, client, done)
        await send.send_all(_HEADER)
        for _ in range(60):  # a byte a second for a minute, far past 10 s
            await trio.sleep(1)
            if id(client) in done:
                break
            await send.send_all(b"\x00")
        nursery.cancel_scope.cancel()
    assert id(client) in done, "a trickling client kept its partial frame"
    assert done[id(client)] - started <= 11


async def test_incomplete_frames_of_all_clients_share_one_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = _server(max_partial_bytes=1500, frame_timeout=100.0)
    clients = [_Client() for _ in range(3)]
    done: dict[int, float] = {}
    async with trio.open_nursery() as nursery:
        for client in clients:
            send, receive = trio.testing.memory_stream_one_way_pair()
            nursery.start_soon(_serve, server, receive, client, done)
            await send.send_all(_HEADER + b"\x00" * 700)  # 716 bytes of 1000
            await trio.sleep(1)
        # Two fit in 1500 bytes; the third would go over and is closed.
        assert [id(c) in done for c in clients] == [False, False, True]
        assert [c.held for c in clients[:2]] == [716, 716]
        nursery.cancel_scope.cancel()


async def test_idle_clients_are_closed_only_when_idle_timeout_is_set(
    autojump_clock: trio.testing.MockClock,
) -> None:
    for idle_timeout, closed in ((0.0, False), (30.0, True)):
        server = _server(idle_timeout=idle_timeout)
        _send, receive = trio.testing.memory_stream_one_way_pair()
        client = _Client()
        done: dict[int, float] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve, server, receive, client, done)
            await trio.sleep(3600)
            nursery.cancel_scope.cancel()
        assert (id(client) in done) is closed
