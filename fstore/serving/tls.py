"""TLS for the feature server and its clients (the ``ssl`` module; docs/protocol.md, "TLS").

The server's files come from ``server.tls`` in fstore.yaml (paths relative to the
repository) or from ``fstore serve --tls-cert --tls-key --tls-client-ca`` (relative to
the working directory), a flag replacing its setting. A client CA means mutual TLS: a
client must show a certificate that CA signed. Each worker builds its own context from
the paths (a context does not cross a process boundary); the supervisor builds one first,
so a file that cannot be loaded is one clear error at start, not a worker crash loop.
"""
from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import RepoConfig
from ..errors import InvalidArgument


@dataclass(frozen=True)
class TlsFiles:
    """The server's certificate chain, its key, and the CA of client certificates (or None)."""

    cert: str
    key: str
    client_ca: str | None = None

    @classmethod
    def resolve(cls, config: RepoConfig, cert: str | None = None, key: str | None = None,
                client_ca: str | None = None) -> "TlsFiles | None":
        """The files of ``server.tls``, each replaced by its flag when given; None for no TLS."""
        conf = config.server.get("tls") or {}

        def pick(flag: str | None, key_: str) -> str | None:
            if flag is not None:
                return str(Path(flag).expanduser().resolve())
            value = conf.get(key_)
            return None if value is None else str(config.root / Path(value).expanduser())

        files = pick(cert, "cert"), pick(key, "key"), pick(client_ca, "client_ca")
        if files == (None, None, None):
            return None
        if files[0] is None or files[1] is None:
            raise InvalidArgument("TLS needs both a certificate and its key (--tls-cert and --tls-key, "
                                  "or server.tls.cert and server.tls.key)")
        return cls(files[0], files[1], files[2])

    def server_context(self) -> ssl.SSLContext:
        """A server context; InvalidArgument naming the file that cannot be loaded."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.num_tickets = 0  # no TLS 1.3 session tickets: unread bytes on an idle pooled connection
        _load(lambda: ctx.load_cert_chain(self.cert, self.key), f"certificate {self.cert} with key {self.key}")
        if self.client_ca is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
            _load(lambda: ctx.load_verify_locations(self.client_ca), f"client CA {self.client_ca}")
        return ctx

    def describe(self) -> str:
        return "TLS with client certificates" if self.client_ca else "TLS"


def client_context(ca: str | None = None, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """A client context trusting ``ca`` (a PEM file; None: the system's CAs), showing
    ``cert``/``key`` when given (for a server with a client CA). The server's name is
    checked against its certificate, as ``ssl.create_default_context`` does."""
    if key is not None and cert is None:
        raise InvalidArgument("a TLS client key needs its certificate (--tls-cert)")
    ctx = ssl.create_default_context()
    if ca is not None:
        _load(lambda: ctx.load_verify_locations(ca), f"CA {ca}")
    if cert is not None:
        _load(lambda: ctx.load_cert_chain(cert, key), f"certificate {cert}" + (f" with key {key}" if key else ""))
    return ctx


def _load(step: Callable[[], object], what: str) -> None:
    try:
        step()
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror and not isinstance(
            exc, ssl.SSLError) else str(exc)
        raise InvalidArgument(f"cannot load the TLS {what}: {reason}") from None
