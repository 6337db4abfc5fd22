"""The MongoDB wire protocol, sans I/O.

Everything on a MongoDB connection is a message: a 16-byte little-endian
header (messageLength counting the header, requestID, responseTo naming the
request a reply answers, opCode) and a body whose shape the opcode fixes.

* ``header``: the header, its bounds (16 bytes to 48,000,000) and opcodes.
* ``framer``: ``Framer`` cuts a byte stream into ``Frame``s without reading
  bodies, refusing a bad header before its body is waited for; a frame keeps
  its exact bytes so a proxy can forward it unchanged.
* ``opmsg``: OP_MSG (2013) carries every command and reply: flag bits
  (checksumPresent, moreToCome, exhaustAllowed), one BSON body whose first
  key names the command, optional document sequences (``documents`` of an
  insert, ``updates``...), an optional CRC-32C.
* ``legacy``: OP_QUERY (2004) and OP_REPLY (1), which survive only for the
  first ``hello`` of a connection.
* ``compression``: OP_COMPRESSED (2012) wraps any message in snappy, zlib or
  zstd, with the compressor agreed in the handshake.
* ``messages``: ``decode_frame``/``encode_message`` over all of the above.
* ``peek``: what a proxy routes by (command name, collection, ``$db``, a
  repeated key, ``maxTimeMS``, transaction fields, flags), read in one pass
  over a request that is then forwarded as it came.
* ``bson_raw``: reading a document's structure (the command name, one field)
  without decoding its values.

A typical read loop::

    framer = Framer()
    framer.feed(received_bytes)
    while (frame := framer.next_frame()) is not None:
        decoded = decode_frame(frame)   # or forward frame.data untouched

Nothing here performs I/O. Bytes that are not a valid message raise a
``WireError`` subclass and nothing else, so one ``except`` closes a bad
connection.
"""

from .bson_raw import first_key, get_raw, get_str, iter_elements, validate_document_bounds
from .compression import (
    NOOP,
    SNAPPY,
    ZLIB,
    ZSTD,
    OpCompressed,
    available_compressors,
    compress_message,
    decode_op_compressed,
    decompress_payload,
    must_not_compress,
)
from .errors import (
    BadLength,
    ChecksumMismatch,
    FrameTooLarge,
    InvalidBSON,
    MalformedMessage,
    TruncatedFrame,
    UnknownOpCode,
    UnsupportedCompressor,
    WireError,
)
from .framer import Frame, Framer
from .header import (
    HEADER,
    HEADER_LEN,
    MAX_MESSAGE_SIZE,
    BytesLike,
    Header,
    OpCode,
    pack_header,
    parse_header,
)
from .legacy import (
    OpQuery,
    OpReply,
    decode_op_query,
    decode_op_reply,
    encode_op_query,
    encode_op_reply,
)
from .messages import Decoded, Message, decode_frame, decode_message, encode_message
from .opmsg import (
    CHECKSUM_PRESENT,
    EXHAUST_ALLOWED,
    MORE_TO_COME,
    DocumentSequence,
    OpMsg,
    crc32c,
    decode_op_msg,
    encode_op_msg,
)
from .peek import CommandPeek, Incoming, open_frame, peek_command, reply_more_to_come

__all__ = [
    "CHECKSUM_PRESENT",
    "EXHAUST_ALLOWED",
    "HEADER",
    "HEADER_LEN",
    "MAX_MESSAGE_SIZE",
    "MORE_TO_COME",
    "NOOP",
    "SNAPPY",
    "ZLIB",
    "ZSTD",
    "BadLength",
    "BytesLike",
    "ChecksumMismatch",
    "CommandPeek",
    "Decoded",
    "DocumentSequence",
    "Frame",
    "FrameTooLarge",
    "Framer",
    "Header",
    "Incoming",
    "InvalidBSON",
    "MalformedMessage",
    "Message",
    "OpCode",
    "OpCompressed",
    "OpMsg",
    "OpQuery",
    "OpReply",
    "TruncatedFrame",
    "UnknownOpCode",
    "UnsupportedCompressor",
    "WireError",
    "available_compressors",
    "compress_message",
    "crc32c",
    "decode_frame",
    "decode_message",
    "decode_op_compressed",
    "decode_op_msg",
    "decode_op_query",
    "decode_op_reply",
    "decompress_payload",
    "encode_message",
    "encode_op_msg",
    "encode_op_query",
    "encode_op_reply",
    "first_key",
    "get_raw",
    "get_str",
    "iter_elements",
    "must_not_compress",
    "open_frame",
    "pack_header",
    "parse_header",
    "peek_command",
    "reply_more_to_come",
    "validate_document_bounds",
]
