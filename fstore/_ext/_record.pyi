"""The served-read recorders' base (fstore.monitoring.events, "Recorders")."""

from typing import Any, Callable

class Recorder:
    """A compiled listener of served reads, called inside the compiled read with the raw
    stored rows, statuses and event times it holds (its ``record`` is a C method: subclass
    it in Cython). ``on_error`` is told the recorder when a record raised."""

    on_error: Callable[[Any], None] | None
    def __init__(self, *args: Any, **kwargs: Any) -> None: ...
