"""How long the simulated pool takes for its operations: base durations scaled by a pace.

A real pool takes seconds to start a VM and minutes to move a disk; clients must cope
with that (asynchronous tasks, progress, concurrent calls refused meanwhile).  The
durations below are of the order a small XCP-ng pool shows; ``pace`` scales them all
(``0`` makes every operation instant), and per-method overrides give exact seconds,
so a test can make one operation long enough to be cancelled.
"""
from dataclasses import dataclass, field

#: Seconds each XAPI method takes at pace 1 (methods not listed are instant).
BASE_SECONDS = {
    "VM.start": 3.0, "VM.start_on": 3.0, "VM.clean_shutdown": 2.5, "VM.shutdown": 2.5,
    "VM.hard_shutdown": 0.6, "VM.clean_reboot": 4.0, "VM.hard_reboot": 2.0, "VM.suspend": 3.0,
    "VM.resume": 2.5, "VM.resume_on": 2.5, "VM.pause": 0.2, "VM.unpause": 0.2, "VM.snapshot": 1.5,
    "VM.clone": 0.8, "VM.copy": 4.0, "VM.revert": 1.5, "VM.destroy": 0.5, "VM.pool_migrate": 5.0,
    "VM.provision": 0.5, "VM.set_memory_dynamic_range": 0.3, "VM.set_VCPUs_number_live": 0.3,
    "host.evacuate": 0.5, "host.reboot": 0.5, "host.shutdown": 0.5, "host.power_on": 5.0,
    "host.restart_agent": 0.3, "host.destroy": 0.5, "host.management_reconfigure": 2.0,
    "host.call_plugin": 1.0, "PIF.scan": 1.0, "pool.management_reconfigure": 2.0, "pool.eject": 2.0,
    "SR.scan": 1.5, "SR.create": 3.0, "SR.destroy": 1.0, "SR.forget": 0.5, "PBD.plug": 1.0,
    "PBD.unplug": 1.0, "VDI.pool_migrate": 5.0, "VDI.copy": 4.0, "VDI.resize": 0.5, "VDI.destroy": 0.5,
    "VBD.plug": 0.5, "VBD.unplug": 0.5, "VBD.unplug_force": 0.3, "VIF.plug": 0.3, "VIF.unplug": 0.3,
    "VIF.unplug_force": 0.2, "VIF.destroy": 0.1, "network.destroy": 0.3, "Bond.create": 1.0,
    "VLAN.destroy": 0.3,
    # not calls: how long a host stays down while rebooting, and a toolstack restart
    "host.reboot:down": 8.0, "host.restart_agent:down": 2.0,
}

#: The longest a task waits between two progress updates.
PROGRESS_INTERVAL = 0.2


@dataclass
class Timing:
    """The pace of the pool; changed at run time by ``POST /_sim/timing``."""

    pace: float = 1.0
    seconds_of: dict = field(default_factory=dict)  # method -> exact seconds (overrides the pace)

    def seconds(self, method):
        """How long ``method`` takes now."""
        if method in self.seconds_of:
            return self.seconds_of[method]
        return BASE_SECONDS.get(method, 0.0) * self.pace

    def update(self, changes):
        """Apply ``{"pace": P, "seconds": {method: S}, "reset": true}``; raises ValueError."""
        if not isinstance(changes, dict):
            raise ValueError("the body must be a JSON object")
        unknown = set(changes) - {"pace", "seconds", "reset"}
        if unknown:
            raise ValueError(f"unknown setting {sorted(unknown)[0]!r}")
        if changes.get("reset"):
            self.pace, self.seconds_of = 1.0, {}
        if "pace" in changes:
            self.pace = _seconds(changes["pace"], "pace")
        for method, value in (changes.get("seconds") or {}).items():
            self.seconds_of[str(method)] = _seconds(value, method)

    def to_dict(self):
        return {"pace": self.pace, "seconds": dict(self.seconds_of)}


def _seconds(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3600:
        raise ValueError(f"{name} must be a number of seconds between 0 and 3600")
    return float(value)
