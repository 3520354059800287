"""Serving: the wire protocol, the feature server (a worker per process, a supervisor
over them), its metrics, and the clients inference services use.

The top of the library's layers (docs/architecture.md): it reads through
fstore.online and never the other way round.
"""
from .._lazy import lazy_exports

_EXPORTS = {
    "Client": ".client", "AsyncClient": ".async_client", "wait_until_ready": ".client", "DEFAULT_PORT": ".client",
    "client_context": ".tls", "Limits": ".state", "ServerState": ".state", "serve": ".supervisor",
    "serve_repo": ".supervisor",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
