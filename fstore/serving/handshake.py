"""The client's side of HELLO: what it sends, and how it tells that what answered is an
fstore server of the wanted project (docs/protocol.md, "Handshake").

A client pointed at the wrong port must learn it at once and in words, not as a
FrameError about 1213486160 bytes (b"HTTP" read as a length) or a timeout:

* The HELLO a client sends ends with CR LF CR LF (the end of its ``client`` name, the
  last field), so an HTTP server reached by mistake reads it as a malformed request
  and answers ``HTTP/1.x 400`` at once instead of waiting for more.
* The first four bytes that come back are checked before they are read as a length:
  ``HTTP`` or ``<`` (a status line, an HTML page), any other text, a TLS record, or a
  length no HELLO reply has, mean "not an fstore server".
* The reply must be a protocol reply; its result must carry the protocol version, and
  the ``project`` the client asked for, if it asked.
"""
from __future__ import annotations

import os
import ssl
from typing import Any

from ..errors import FstoreError, NotAnFstoreServer, WrongProject
from .protocol import VERSION, unpack

HELLO_REPLY_MAX = 1 << 16  # a HELLO reply is ~100 bytes; a first frame longer than this is not one
_CRLF2 = "\r\n\r\n"


def hello_args(client: str, token: str | None) -> dict[str, Any]:
    """HELLO's arguments; ``client`` goes last (it ends the frame with CR LF CR LF)."""
    args: dict[str, Any] = {"version": VERSION}
    if token is not None:
        args["token"] = token
    args["client"] = client + _CRLF2
    return args


def not_fstore(head: bytes, where: str) -> NotAnFstoreServer | None:
    """The error for the first four bytes a server sent, when they cannot begin an fstore reply."""
    n = int.from_bytes(head[:4], "big")
    if head[:4] == b"HTTP" or head[:1] == b"<":  # a status line, or an HTML page alone (an HTTP/0.9 reply)
        what = f"it answers in HTTP (a web or metrics port?): {bytes(head[:12])!r}"
    elif all(32 <= b < 127 for b in head[:4]):
        what = f"it answers in text: {bytes(head[:12])!r}"
    elif head[0] in (0x15, 0x16) and head[1] == 3:
        what = "it answers in TLS (connect with a TLS context: ssl=, or fstore get --tls-ca)"
    elif n == 0 or n > HELLO_REPLY_MAX:
        what = f"its first reply would be {n} bytes long"
    else:
        return None
    return NotAnFstoreServer(f"not an fstore server at {where}: {what}")


def decode_first(body: bytes, where: str) -> Any:
    """The first reply's body decoded; anything but MessagePack is not an fstore server."""
    try:
        return unpack(body)
    except Exception:  # noqa: BLE001 - whatever the bytes are, they are not a reply
        raise NotAnFstoreServer(f"not an fstore server at {where}: its first reply is not MessagePack") from None


def greeting(reply: Any, rid: int, where: str, project: str | None) -> dict[str, Any]:
    """HELLO's result, checked: a protocol reply from an fstore server of ``project`` (if
    given). A refusal (UNAUTHENTICATED, UNSUPPORTED_VERSION, OVERLOADED...) raises its class."""
    if type(reply) is not list or len(reply) != 3 or reply[0] not in (rid, 0) or type(reply[1]) is not bool:
        raise NotAnFstoreServer(f"not an fstore server at {where}: its first reply is not a protocol reply")
    if not reply[1]:
        if type(reply[2]) is dict and type(reply[2].get("code")) is str:
            raise FstoreError.from_wire(reply[2])
        raise NotAnFstoreServer(f"not an fstore server at {where}: its first reply is not a protocol reply")
    result = reply[2]
    if type(result) is not dict or result.get("version") != VERSION:
        raise NotAnFstoreServer(f"not an fstore server at {where}: its HELLO reply is not fstore's")
    if project is not None and result.get("project") != project:
        raise WrongProject(f"the fstore server at {where} serves project {result.get('project')!r}, "
                           f"not {project!r}")
    return result


def reason(exc: BaseException) -> str:
    """An OS error as people read it: "Connection refused", "timed out" (asyncio's "Connect
    call failed ('127.0.0.1', 6571)" says its errno the same way)."""
    if isinstance(exc, ssl.SSLError):  # its errno is OpenSSL's, not the OS's
        return str(getattr(exc, "verify_message", None) or exc.reason or exc)
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    return str(exc) or type(exc).__name__
