"""Validation gates (``fstore validate``): rules that check a repository's definitions and
its offline data for point-in-time errors, leakage and hygiene problems (docs/validation.md).

Each rule is one function in its own module, named in ``rules.RULES`` by its stable id.
"""
from .._lazy import lazy_exports

_EXPORTS = {"Finding": ".findings", "Report": ".findings", "validate_repository": ".run", "RULES": ".rules"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
