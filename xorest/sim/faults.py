"""Faults the simulator can inject for reliability tests, set by flags or ``POST /_sim/faults``."""
import time
from dataclasses import asdict, dataclass, fields


@dataclass
class Faults:
    latency: float = 0.0  # seconds added before every RPC answer
    rrd_latency: float = 0.0  # seconds added before every /rrd_updates, /host_rrd, /vm_rrd answer
    refuse: float = 0.0  # seconds during which every new connection is dropped unanswered
    export_stall_after: int = -1  # bytes of an export body after which it stalls
    export_stall_seconds: float = 3600.0
    export_drop_after: int = -1  # bytes of an export body after which the connection is cut
    export_html_error_after: int = -1  # bytes after which XAPI's 500 page is written in-band
    export_rate: float = 0.0  # bytes per second an export body is held to (0: as fast as it goes)
    transfer_redirect: str = ""  # a base URL every transfer is redirected to (a compromised host)
    storage_io_error: bool = False  # disk writes of uploads fail as a broken storage fails them

    refuse_until: float = 0.0  # monotonic deadline derived from ``refuse``

    def refusing(self):
        return time.monotonic() < self.refuse_until

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
        self.refuse_until = time.monotonic() + self.refuse if self.refuse > 0 else 0.0

    def to_dict(self):
        return asdict(self)


class StreamFaults:
    """Applies the export faults to one body as its bytes go out."""

    def __init__(self, faults, stop_event, cancelled=lambda: False):
        self.faults = faults
        self.sent = 0
        self.stop = stop_event
        self.cancelled = cancelled
        self.started = time.monotonic()

    def before_write(self, size):
        """Return ``"drop"`` or ``"html"`` when the next write crosses a fault threshold.

        A stall ends early when the transfer's task is cancelled, as XAPI checks for
        cancellation while it waits.
        """
        f = self.faults
        after = self.sent + size
        if 0 <= f.export_stall_after < after:
            deadline = time.monotonic() + f.export_stall_seconds
            while time.monotonic() < deadline and not self.cancelled() and not self.stop.is_set():
                self.stop.wait(0.1)
        if 0 <= f.export_drop_after < after:
            return "drop"
        if 0 <= f.export_html_error_after < after:
            return "html"
        if f.export_rate > 0:  # a pool bound by its storage: pace the body
            delay = self.started + after / f.export_rate - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
        self.sent = after
        return None

