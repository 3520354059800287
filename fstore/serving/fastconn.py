"""The plain-TCP connection of the feature server: uvloop reads into the connection's
own buffer (asyncio.BufferedProtocol) and frames are cut and fast GETs answered in C
(fstore._ext._conn.FrameProtocol); every other request goes through the same Python
logic as on a TLS connection (fstore.serving.connection.ConnectionBase).

TLS connections keep ``Connection`` (asyncio.Protocol): uvloop's SSL protocol decrypts into
its own buffer and would copy into get_buffer's room anyway (not measured), and that path is
the one TLS has always been tested with.
"""
from __future__ import annotations

import asyncio

from .._ext._conn import FrameProtocol
from .connection import ConnectionBase
from .state import ServerState


class FastConnection(FrameProtocol, ConnectionBase, asyncio.BufferedProtocol):  # type: ignore[misc]
    """One plain-TCP client connection (see the module's docstring)."""

    def __init__(self, state: ServerState) -> None:
        ConnectionBase.__init__(self, state)
        self._set_max_frame(state.limits.max_frame)
        self._set_raw(state.raw_gets)
