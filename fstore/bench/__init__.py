"""``fstore bench``: SLA benchmarks of a running server, driven by the compiled load generator
(fstore._ext._loadgen), beside Redis holding the same rows (docs/benchmarks.md, "fstore bench").

``run(...)`` returns a BenchResult (``to_json()``, ``met``); ``write_html`` writes its page.
"""
from .._lazy import lazy_exports

_EXPORTS = {"run": ".runner", "BenchResult": ".result", "Sla": ".result", "write_html": ".html"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
