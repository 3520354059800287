"""Test helpers for users of fstore: the pytest plugin that runs ``fstore validate``'s gates
as tests (``pytest --fstore-repo PATH``; fstore.testing.pytest_plugin)."""
from .._lazy import lazy_exports

_EXPORTS: dict[str, str] = {}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
