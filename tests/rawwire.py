"""Raw wire messages over plain sockets, for tests that must send what drivers never do."""

from __future__ import annotations

import socket
import struct
from typing import Any

import bson

OP_MSG = 2013


def op_msg(command: dict[str, Any], request_id: int = 1) -> bytes:
    """An OP_MSG holding ``command`` as its body, no flags, no sequences."""
    payload = struct.pack("<I", 0) + b"\x00" + bson.encode(command)
    return struct.pack("<iiii", 16 + len(payload), request_id, 0, OP_MSG) + payload


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """``n`` bytes, or ``ConnectionError`` if the peer closes first."""
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed by the proxy")
        buf += chunk
    return buf


def read_reply(sock: socket.socket) -> dict[str, Any]:
    """The body of the next OP_MSG reply (a single body section)."""
    header = recv_exact(sock, 16)
    length = struct.unpack("<i", header[:4])[0]
    return dict(bson.decode(recv_exact(sock, length - 16)[5:]))


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Whether the peer closes the connection within ``timeout`` seconds."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
