"""Faults the simulator can inject for reliability tests, set by flags or ``POST /_sim/faults``."""
import threading
from dataclasses import asdict, dataclass, fields


@dataclass
class Faults:
    latency: float = 0.0  # seconds added before every RPC answer
    refuse: bool = False  # drop every new connection without an answer
    export_stall_after: int = -1  # bytes of an export body after which it stalls
    export_stall_seconds: float = 3600.0
    export_drop_after: int = -1  # bytes of an export body after which the connection is cut
    export_html_error_after: int = -1  # bytes after which XAPI's 500 page is written in-band

    def update(self, changes):
        """Apply a JSON mapping of field -> value; ``{"reset": true}`` restores the defaults."""
        if changes.get("reset"):
            for f in fields(self):
                setattr(self, f.name, f.default)
        names = {f.name: f.type for f in fields(self)}
        for key, value in changes.items():
            if key == "reset":
                continue
            if key not in names:
                raise ValueError(f"unknown fault {key!r}")
            setattr(self, key, type(getattr(Faults, key))(value))

    def to_dict(self):
        return asdict(self)


class StreamFaults:
    """Applies the export faults to one body as its bytes go out."""

    def __init__(self, faults, stop_event):
        self.faults = faults
        self.sent = 0
        self.stop = stop_event

    def before_write(self, size):
        """Return ``"drop"`` or ``"html"`` when the next write crosses a fault threshold."""
        f = self.faults
        after = self.sent + size
        if 0 <= f.export_stall_after < after:
            self.stop.wait(f.export_stall_seconds)
        if 0 <= f.export_drop_after < after:
            return "drop"
        if 0 <= f.export_html_error_after < after:
            return "html"
        self.sent = after
        return None


def new_stop_event():
    return threading.Event()
