"""OP_COMPRESSED (2012): another message, compressed.

Theory of operation: int32 originalOpcode, int32 uncompressedSize (the
wrapped message without its header), uint8 compressorId, then the compressed
bytes. The header's requestID/responseTo are the wrapped message's own.
Compressors are negotiated in ``hello``; the handshake and authentication
commands are never compressed. Decompression is bounded by the announced
size and by the maximum message size, so a small message cannot expand into
gigabytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import zstandard

from .errors import FrameTooLarge, MalformedMessage, UnsupportedCompressor
from .header import HEADER, HEADER_LEN, MAX_MESSAGE_SIZE, OpCode, pack_header

NOOP, SNAPPY, ZLIB, ZSTD = 0, 1, 2, 3
COMPRESSOR_IDS = {"noop": NOOP, "snappy": SNAPPY, "zlib": ZLIB, "zstd": ZSTD}
COMPRESSOR_NAMES = {v: k for k, v in COMPRESSOR_IDS.items()}

_PREFIX = struct.Struct("<iiB")
_UNCOMPRESSIBLE = frozenset(
    {
        "hello",
        "ismaster",
        "saslstart",
        "saslcontinue",
        "getnonce",
        "authenticate",
        "createuser",
        "updateuser",
        "copydbsaslstart",
        "copydbgetnonce",
        "copydb",
    }
)


def _load_snappy() -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]] | None:
    try:
        import cramjam

        def compress(data: bytes) -> bytes:
            return bytes(cramjam.snappy.compress_raw(data))

        def decompress(data: bytes) -> bytes:
            return bytes(cramjam.snappy.decompress_raw(data))

        return compress, decompress
    except ImportError:
        pass
    try:
        import snappy

        return snappy.compress, snappy.uncompress
    except ImportError:
        return None


_SNAPPY = _load_snappy()
_ZSTD_C = zstandard.ZstdCompressor()
_ZSTD_D = zstandard.ZstdDecompressor()


def available_compressors() -> tuple[str, ...]:
    """Compressors this side can use, in order of preference."""
    return ("zstd", "zlib", "snappy") if _SNAPPY else ("zstd", "zlib")


def must_not_compress(command_name: str) -> bool:
    """The handshake and authentication commands travel uncompressed (compression spec)."""
    return command_name.lower() in _UNCOMPRESSIBLE


@dataclass(frozen=True, slots=True)
class OpCompressed:
    """The fields of an OP_COMPRESSED payload."""

    original_op_code: int
    uncompressed_size: int
    compressor_id: int
    compressed: bytes


def decompress_payload(payload: bytes | bytearray | memoryview) -> tuple[int, bytes]:
    """``(original opcode, uncompressed message bytes after the header)``."""
    buf = memoryview(payload)
    if len(buf) < _PREFIX.size:
        raise MalformedMessage("OP_COMPRESSED too short")
    op_code, size, compressor = _PREFIX.unpack_from(buf, 0)
    if size < 0:
        raise MalformedMessage(f"OP_COMPRESSED uncompressedSize {size} is negative")
    if size + HEADER_LEN > MAX_MESSAGE_SIZE:
        raise FrameTooLarge(f"OP_COMPRESSED announces {size} bytes, over the maximum")
    if op_code == OpCode.COMPRESSED:
        raise MalformedMessage("OP_COMPRESSED may not wrap another OP_COMPRESSED")
    data = bytes(buf[_PREFIX.size :])
    out = _decompress(compressor, data, size)
    if len(out) != size:
        raise MalformedMessage(f"OP_COMPRESSED decompressed to {len(out)} bytes, announced {size}")
    return op_code, out


def _decompress(compressor: int, data: bytes, size: int) -> bytes:
    try:
        if compressor == NOOP:
            return data
        if compressor == ZLIB:
            # One byte past the announced size is enough to tell a lie; never more.
            return zlib.decompressobj().decompress(data, size + 1)
        if compressor == ZSTD:
            return _zstd_bounded(data, size)
        if compressor == SNAPPY and _SNAPPY is not None:
            return _SNAPPY[1](data)
    except (zlib.error, zstandard.ZstdError) as exc:
        raise MalformedMessage(f"corrupt compressed message: {exc}") from None
    except Exception as exc:  # snappy libraries raise their own types
        raise MalformedMessage(f"corrupt compressed message: {exc}") from None
    raise UnsupportedCompressor(f"compressor id {compressor} is not available")


def _zstd_bounded(data: bytes, size: int) -> bytes:
    with _ZSTD_D.stream_reader(data) as reader:
        return bytes(reader.read(size + 1))


def compress_message(
    message: bytes | bytearray | memoryview, compressor: str, *, level: int | None = None
) -> bytes:
    """Wrap a whole message in OP_COMPRESSED with the same request id and responseTo."""
    buf = memoryview(message)
    _length, request_id, response_to, op_code = HEADER.unpack_from(buf, 0)
    body = bytes(buf[HEADER_LEN:])
    cid = COMPRESSOR_IDS.get(compressor)
    compressed: bytes
    if cid == ZSTD:
        compressed = (_ZSTD_C if level is None else zstandard.ZstdCompressor(level)).compress(body)
    elif cid == ZLIB:
        compressed = zlib.compress(body, -1 if level is None else level)
    elif cid == SNAPPY and _SNAPPY is not None:
        compressed = _SNAPPY[0](body)
    elif cid == NOOP:
        compressed = body
    else:
        raise UnsupportedCompressor(f"compressor {compressor!r} is not available")
    payload = _PREFIX.pack(op_code, len(body), cid) + compressed
    return (
        pack_header(HEADER_LEN + len(payload), request_id, response_to, OpCode.COMPRESSED) + payload
    )
