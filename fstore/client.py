"""The clients of the feature server, for inference services (``fstore.serving.client``).

``import fstore.client`` imports neither pyarrow nor LMDB: a service that only reads
features over the network pays for MessagePack and NumPy alone.
"""
from .serving.client import DEFAULT_PORT, AsyncClient, Client, wait_until_ready
from .serving.tls import client_context

__all__ = ["DEFAULT_PORT", "AsyncClient", "Client", "client_context", "wait_until_ready"]
