"""multipart/related bodies (RFC 2387) as DICOMweb uses them: one DICOM object per part."""

from __future__ import annotations

import secrets
from email.message import Message

from curata.errors import InputError

Part = tuple[dict[str, str], bytes]


def boundary_of(content_type: str) -> str:
    msg = Message()
    msg["content-type"] = content_type
    if msg.get_content_type() != "multipart/related":
        raise InputError(f"expected multipart/related, got {msg.get_content_type()!r}")
    boundary = msg.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise InputError("multipart/related without a boundary parameter")
    return boundary


def encode(parts: list[Part], media_type: str = "application/dicom") -> tuple[bytes, str]:
    """The body and its Content-Type header."""
    boundary = "curata-" + secrets.token_hex(16)
    chunks: list[bytes] = []
    for headers, data in parts:
        head = {"Content-Type": media_type, **headers}
        chunks.append(f"--{boundary}\r\n".encode())
        chunks.append("".join(f"{k}: {v}\r\n" for k, v in head.items()).encode("latin-1"))
        chunks.append(b"\r\n")
        chunks.append(data)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="{media_type}"; boundary={boundary}'


def decode(body: bytes, content_type: str) -> list[Part]:
    """Split a multipart/related body into (headers, bytes) parts."""
    delimiter = b"--" + boundary_of(content_type).encode("latin-1")
    pieces = body.split(delimiter)
    if len(pieces) < 3:
        raise InputError("multipart/related body has no parts (boundary not found)")
    parts: list[Part] = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break  # closing delimiter
        if piece.startswith(b"\r\n"):
            piece = piece[2:]
        head, sep, data = piece.partition(b"\r\n\r\n")
        if not sep:
            raise InputError("multipart/related part without a header block")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, data))
    return parts
