"""What happens around a VM's power changes on a real host, besides the operation itself.

xenopsd creates a running VM's console and removes it when the domain goes; a started VM
gets its disks' device names and its vGPU a physical GPU; the guest agent reports again a
few seconds after boot (here: at once, with what it reported before); XAPI drops the guest
metrics of a halted VM.  Operations only change ``power_state`` (and what they own); this
module follows them through :meth:`Database.watch`, so every way of starting or stopping
a VM (an API call, the churn, a test) keeps the pool consistent.
"""
from .state import NULL_REF, now

LIVE = ("Running", "Paused")
DEVICE_LETTERS = "abcdefghijklmnopqrstuvwxyz"


class GuestLifecycle:
    """Follows VMs' power changes (:meth:`Database.watch`) as xenopsd and guest agents do."""

    def __init__(self, db, agents):
        self.db = db
        self.agents = dict(agents)  # VM ref -> guest metrics fields its agent reports
        db.watch("VM", "power_state", self._power_changed)

    def _power_changed(self, vm, old, new):
        if new["is_control_domain"]:
            return
        was, live = old["power_state"] in LIVE, new["power_state"] in LIVE
        if live and not was:
            self._started(vm, new)
        elif was and not live:
            self._stopped(vm, new)

    def _started(self, vm, record):
        db = self.db
        host = record["resident_on"]
        address = db.tables["host"][host]["address"] if host in db.tables["host"] else "127.0.0.1"
        if not record["consoles"]:
            uuid = db.new_uuid()
            db.create("console", {"uuid": uuid, "protocol": "rfb", "VM": vm, "other_config": {},
                                  "location": f"https://{address}/console?uuid={uuid}"})
        for vbd in record["VBDs"]:
            vbd_record = db.tables["VBD"].get(vbd)
            if vbd_record is not None and not vbd_record["device"]:
                try:
                    position = int(vbd_record["userdevice"])
                except ValueError:
                    continue
                if position < len(DEVICE_LETTERS):
                    db.update("VBD", vbd, device=f"xvd{DEVICE_LETTERS[position]}")
        for vgpu in record["VGPUs"]:
            self._attach_vgpu(vgpu, host)
        for vtpm in record["VTPMs"]:
            if vtpm in db.tables["VTPM"]:
                db.update("VTPM", vtpm, allowed_operations=[])
        if record["metrics"] in db.tables["VM_metrics"]:
            db.update("VM_metrics", record["metrics"], current_domain_type=record["domain_type"]
                      if record["domain_type"] != "unspecified" else "hvm",
                      hvm=record["domain_type"] in ("hvm", "unspecified"),
                      nested_virt=record["platform"].get("nested-virt") == "true")
        report = self.agents.get(vm)
        if report is not None and record["guest_metrics"] not in db.tables["VM_guest_metrics"]:
            guest = db.create("VM_guest_metrics", {**report, "live": True, "last_updated": now()})
            db.update("VM", vm, guest_metrics=guest)
        elif record["guest_metrics"] in db.tables["VM_guest_metrics"]:
            db.update("VM_guest_metrics", record["guest_metrics"], live=True, last_updated=now())

    def _stopped(self, vm, record):
        db = self.db
        for console in list(record["consoles"]):
            if console in db.tables["console"]:
                db.destroy("console", console)
        for vgpu in record["VGPUs"]:
            if vgpu in db.tables["VGPU"]:
                db.update("VGPU", vgpu, currently_attached=False, resident_on=NULL_REF)
        for vtpm in record["VTPMs"]:
            if vtpm in db.tables["VTPM"]:
                db.update("VTPM", vtpm, allowed_operations=["destroy"])
        guest = record["guest_metrics"]
        if guest in db.tables["VM_guest_metrics"]:
            if record["power_state"] == "Halted":
                # XAPI drops a halted VM's guest metrics; the agent reports again at the next boot
                keep = db.tables["VM_guest_metrics"][guest]
                self.agents[vm] = {k: v for k, v in keep.items() if k not in ("uuid", "live", "last_updated")}
                db.update("VM", vm, guest_metrics=NULL_REF)
                db.destroy("VM_guest_metrics", guest)
            else:
                db.update("VM_guest_metrics", guest, live=False)
        if record["metrics"] in db.tables["VM_metrics"] and record["power_state"] == "Halted":
            db.update("VM_metrics", record["metrics"], current_domain_type="unspecified", hvm=False,
                      nested_virt=False)

    def _attach_vgpu(self, vgpu, host):
        db = self.db
        record = db.tables["VGPU"].get(vgpu)
        if record is None:
            return
        for pgpu in db.tables["GPU_group"].get(record["GPU_group"], {}).get("PGPUs", ()):
            pgpu_record = db.tables["PGPU"][pgpu]
            if pgpu_record["host"] != host or record["type"] not in pgpu_record["enabled_VGPU_types"]:
                continue
            room = pgpu_record["supported_VGPU_max_capacities"].get(record["type"], 0)
            if len(pgpu_record["resident_VGPUs"]) < room:
                db.update("VGPU", vgpu, currently_attached=True, resident_on=pgpu)
                return
        db.update("VGPU", vgpu, currently_attached=True)
