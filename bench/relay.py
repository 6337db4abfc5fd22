"""A minimal byte relay: the floor any MongoDB proxy is measured against.

It copies bytes both ways and understands nothing, so clients must connect
with ``directConnection=true`` (it relays the upstream's replica-set hello).

Usage: python -m bench.relay LISTEN_PORT UPSTREAM_PORT
"""

from __future__ import annotations

import sys
from functools import partial

import trio


async def _pump(src: trio.SocketStream, dst: trio.SocketStream) -> None:
    try:
        while data := await src.receive_some(256 * 1024):
            await dst.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await dst.aclose()


async def _handle(upstream_port: int, client: trio.SocketStream) -> None:
    try:
        upstream = await trio.open_tcp_stream("127.0.0.1", upstream_port)
    except OSError:
        await client.aclose()
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_pump, client, upstream)
        nursery.start_soon(_pump, upstream, client)


async def main(listen_port: int, upstream_port: int) -> None:
    await trio.serve_tcp(partial(_handle, upstream_port), listen_port, host="127.0.0.1")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), int(sys.argv[2]))
