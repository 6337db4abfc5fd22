"""The MongoDB wire protocol, sans I/O.

Every message is a 16-byte header (length, requestID, responseTo, opCode)
and a body whose shape the opcode fixes (``header``). A ``Framer`` cuts a byte
stream into ``Frame``s without understanding them (``framer``). Commands travel
as OP_MSG: flag bits, one BSON body, optional document sequences, optional
CRC-32C (``opmsg``). OP_QUERY/OP_REPLY survive only for the first handshake
(``legacy``). OP_COMPRESSED wraps any of them in snappy, zlib or zstd
(``compression``). ``bson_raw`` reads BSON structure without decoding values.
Nothing here performs I/O; bad bytes raise a ``WireError`` subclass.
"""

from .bson_raw import first_key, get_raw, get_str, iter_elements, validate_document_bounds
from .compression import (
    OpCompressed,
    available_compressors,
    compress_message,
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
from .header import HEADER_LEN, MAX_MESSAGE_SIZE, Header, OpCode, pack_header, parse_header
from .legacy import (
    OpQuery,
    OpReply,
    decode_op_query,
    decode_op_reply,
    encode_op_query,
    encode_op_reply,
)
from .messages import Decoded, Message, decode_frame, encode_message
from .opmsg import (
    CHECKSUM_PRESENT,
    EXHAUST_ALLOWED,
    MORE_TO_COME,
    DocumentSequence,
    OpMsg,
    decode_op_msg,
    encode_op_msg,
)

__all__ = [
    "CHECKSUM_PRESENT",
    "EXHAUST_ALLOWED",
    "HEADER_LEN",
    "MAX_MESSAGE_SIZE",
    "MORE_TO_COME",
    "BadLength",
    "ChecksumMismatch",
    "Decoded",
    "DocumentSequence",
    "Frame",
    "FrameTooLarge",
    "Framer",
    "Header",
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
    "decode_frame",
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
    "pack_header",
    "parse_header",
    "validate_document_bounds",
]
