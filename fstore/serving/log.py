"""The server's log: the ``fstore.serve`` logger of the supervisor and every worker.

It says when a server starts (address, project, registry version, workers) and stops
(requests drained, seconds taken), when a worker is restarted, and each step of a
takeover. ``fstore serve`` sends it to stderr at INFO (``setup_logging``); a program that
runs ``fstore.serving.serve`` itself configures the logger as it likes. It never holds
a token or a secret.
"""
from __future__ import annotations

import logging
import sys

LOGGER = "fstore.serve"
log = logging.getLogger(LOGGER)
_FORMAT = "%(asctime)s fstore[%(process)d] %(levelname)s %(message)s"


def setup_logging(level: int = logging.INFO) -> None:
    """One handler to stderr (not added twice), at ``level``."""
    if not any(getattr(h, "_fstore", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._fstore = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(level)


def configured_level() -> int | None:
    """The level workers should set up, or None when the CLI did not configure the log."""
    return log.level if any(getattr(h, "_fstore", False) for h in log.handlers) else None
