"""OP_COMPRESSED (2012): another message, compressed.

Theory of operation: int32 originalOpcode, int32 uncompressedSize (the
wrapped message without its header), uint8 compressorId, then the compressed
bytes. The header's requestID/responseTo are the wrapped message's own.
Compressors are negotiated in ``hello``; the handshake and authentication
commands are never compressed (``must_not_compress``). Rules on decode:

* the announced size must fit the maximum message size (``FrameTooLarge``),
  and is checked before any decompression;
* output is bounded by the announced size: zlib and zstd are asked for at
  most one byte more than announced, snappy's and zstd's own size fields are
  compared with it first, so a small message cannot expand into gigabytes;
* the output must be exactly the announced size and the compressed stream
  must end where the message does (``MalformedMessage``).

Codec objects are per thread, since zstd contexts may not be shared.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import zstandard

from .errors import FrameTooLarge, MalformedMessage, UnsupportedCompressor
from .header import HEADER, HEADER_LEN, MAX_MESSAGE_SIZE, BytesLike, OpCode

NOOP, SNAPPY, ZLIB, ZSTD = 0, 1, 2, 3
COMPRESSOR_IDS = {"noop": NOOP, "snappy": SNAPPY, "zlib": ZLIB, "zstd": ZSTD}
COMPRESSOR_NAMES = {v: k for k, v in COMPRESSOR_IDS.items()}

_PREFIX = struct.Struct("<iiB")
_PREFIXED_HEADER = struct.Struct("<iiiiiiB")  # a header, then the OP_COMPRESSED prefix

# Lower-cased; the compression spec names hello/isMaster and the auth commands.
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

_Codec = Callable[[BytesLike], bytes]


def _load_snappy() -> tuple[_Codec, _Codec] | None:
    try:
        import cramjam

        def compress(data: BytesLike) -> bytes:
            return bytes(cramjam.snappy.compress_raw(data))

        def decompress(data: BytesLike) -> bytes:
            return bytes(cramjam.snappy.decompress_raw(data))

        return compress, decompress
    except ImportError:
        pass
    try:
        import snappy

        # python-snappy wants bytes, not other buffers.
        def compress_b(data: BytesLike) -> bytes:
            return bytes(snappy.compress(bytes(data)))

        def decompress_b(data: BytesLike) -> bytes:
            return bytes(snappy.uncompress(bytes(data)))

        return compress_b, decompress_b
    except ImportError:
        return None


_SNAPPY = _load_snappy()
_local = threading.local()


def _zstd_compressor(level: int | None) -> zstandard.ZstdCompressor:
    if level is not None:
        return zstandard.ZstdCompressor(level=level)
    cctx: zstandard.ZstdCompressor | None = getattr(_local, "cctx", None)
    if cctx is None:
        cctx = _local.cctx = zstandard.ZstdCompressor()
    return cctx


def _zstd_decompressor() -> zstandard.ZstdDecompressor:
    dctx: zstandard.ZstdDecompressor | None = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
    return dctx


def available_compressors() -> tuple[str, ...]:
    """Compressors this side can use, in order of preference."""
    return ("zstd", "zlib", "snappy") if _SNAPPY else ("zstd", "zlib")


def must_not_compress(command_name: str) -> bool:
    """Whether the compression spec keeps this command uncompressed (handshake, auth)."""
    return command_name.lower() in _UNCOMPRESSIBLE


@dataclass(frozen=True, slots=True)
class OpCompressed:
    """The fields of an OP_COMPRESSED payload."""

    original_op_code: int
    uncompressed_size: int
    compressor_id: int
    compressed: bytes


def _prefix(buf: BytesLike, max_size: int) -> tuple[int, int, int]:
    if len(buf) < _PREFIX.size:
        raise MalformedMessage("OP_COMPRESSED too short")
    op_code, size, compressor = _PREFIX.unpack_from(buf, 0)
    if size < 0:
        raise MalformedMessage(f"OP_COMPRESSED uncompressedSize {size} is negative")
    if size + HEADER_LEN > max_size:
        raise FrameTooLarge(f"OP_COMPRESSED announces {size} bytes, over the maximum {max_size}")
    if op_code == OpCode.COMPRESSED:
        raise MalformedMessage("OP_COMPRESSED may not wrap another OP_COMPRESSED")
    return op_code, size, compressor


def decode_op_compressed(payload: BytesLike, max_size: int = MAX_MESSAGE_SIZE) -> OpCompressed:
    """The fields of an OP_COMPRESSED payload, without decompressing."""
    op_code, size, compressor = _prefix(payload, max_size)
    return OpCompressed(op_code, size, compressor, bytes(payload[_PREFIX.size :]))


def decompress_payload(payload: BytesLike, max_size: int = MAX_MESSAGE_SIZE) -> tuple[int, bytes]:
    """``(original opcode, uncompressed message bytes after the header)``.

    ``max_size`` bounds the whole uncompressed message, header included.
    """
    op_code, size, compressor = _prefix(payload, max_size)
    data = memoryview(payload)[_PREFIX.size :]
    try:
        out = _decompress(compressor, data, size)
    except (zlib.error, zstandard.ZstdError) as exc:
        raise MalformedMessage(f"corrupt compressed message: {exc}") from None
    if len(out) != size:
        raise MalformedMessage(f"OP_COMPRESSED decompressed to {len(out)} bytes, announced {size}")
    return op_code, out


def _decompress(compressor: int, data: memoryview, size: int) -> bytes:
    if compressor == ZSTD:
        declared = zstandard.frame_content_size(data)
        # A declared size is what the decoder allocates, whatever the cap: compare it first.
        if declared not in (-1, size):
            raise MalformedMessage(f"zstd frame holds {declared} bytes, announced {size}")
        # max_output_size=0 means "no limit" to zstandard; 1 keeps an empty message bounded.
        return _zstd_decompressor().decompress(
            data, max_output_size=max(size, 1), allow_extra_data=False
        )
    if compressor == ZLIB:
        dobj = zlib.decompressobj()
        out = dobj.decompress(data, size + 1)
        if len(out) == size and (not dobj.eof or dobj.unused_data):
            raise MalformedMessage("zlib stream is truncated or followed by extra bytes")
        return out
    if compressor == SNAPPY and _SNAPPY is not None:
        declared = _snappy_length(data)
        if declared != size:
            raise MalformedMessage(f"snappy block holds {declared} bytes, announced {size}")
        try:
            return _SNAPPY[1](data)
        except Exception as exc:  # each snappy library raises its own types
            raise MalformedMessage(f"corrupt snappy data: {exc}") from None
    if compressor == NOOP:
        return data.tobytes()
    raise UnsupportedCompressor(f"compressor id {compressor} is not available")


def _snappy_length(data: memoryview) -> int:
    """The uncompressed length a raw snappy block starts with (a varint of up to 32 bits)."""
    result = 0
    for i in range(min(len(data), 5)):
        byte = data[i]
        result |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return result
    raise MalformedMessage("snappy block has no valid length preamble")


def compress_message(message: BytesLike, compressor: str, *, level: int | None = None) -> bytes:
    """Wrap a whole message in OP_COMPRESSED with the same requestID and responseTo.

    ``level`` applies to zlib and zstd. Whether to compress at all (see
    ``must_not_compress``) is the caller's decision.
    """
    if len(message) < HEADER_LEN:
        raise ValueError("a message is at least its 16-byte header")
    length, request_id, response_to, op_code = HEADER.unpack_from(message, 0)
    if length != len(message):
        raise ValueError(f"header says {length} bytes, message has {len(message)}")
    if op_code == OpCode.COMPRESSED:
        raise ValueError("the message is already compressed")
    body = memoryview(message)[HEADER_LEN:]
    cid = COMPRESSOR_IDS.get(compressor)
    compressed: BytesLike
    if cid == ZSTD:
        compressed = _zstd_compressor(level).compress(body)
    elif cid == ZLIB:
        compressed = zlib.compress(body, -1 if level is None else level)
    elif cid == SNAPPY and _SNAPPY is not None:
        compressed = _SNAPPY[0](body)
    elif cid == NOOP:
        compressed = body
    else:
        raise UnsupportedCompressor(f"compressor {compressor!r} is not available")
    total = HEADER_LEN + _PREFIX.size + len(compressed)
    head = _PREFIXED_HEADER.pack(
        total, request_id, response_to, OpCode.COMPRESSED, op_code, len(body), cid
    )
    return b"".join((head, compressed))
