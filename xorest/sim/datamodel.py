"""The XAPI classes, fields, enums and messages the simulator serves.

The data comes from XAPI's published datamodel (``doc/data/xenapi.json``), reduced
to the classes the simulator implements and shipped as ``datamodel.json`` beside
this module.  ``python -m xorest.sim.datamodel REFERENCE.json`` regenerates it.
"""
import json
import os
import sys
from dataclasses import dataclass, field

#: Classes with records in the simulated database (XAPI's case-sensitive names).
SERVED_CLASSES = (
    "pool", "host", "host_metrics", "host_cpu", "VM", "VM_metrics", "VM_guest_metrics",
    "VBD", "VDI", "SR", "PBD", "SM", "VIF", "network", "PIF", "PIF_metrics", "task",
    "message", "console", "Bond", "VLAN",
)
#: Classes whose messages are dispatched but which have no records to list.
EXTRA_CLASSES = ("session", "event")

DATA_FILE = os.path.join(os.path.dirname(__file__), "datamodel.json")


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    qualifier: str
    default: object = None


@dataclass
class ClassModel:
    name: str
    fields: dict = field(default_factory=dict)
    messages: dict = field(default_factory=dict)  # name -> parameter count, session excluded


@dataclass
class Datamodel:
    classes: dict
    enums: dict

    def enum_values(self, type_name):
        """Values of ``enum NAME`` or ``None`` for a non-enum type."""
        if type_name.startswith("enum "):
            return self.enums.get(type_name[5:], [])
        return None


def load(path=DATA_FILE):
    """Load the reduced datamodel shipped with the simulator."""
    with open(path, encoding="utf-8") as fh:
        raw = json.load(fh)
    classes = {}
    for name, spec in raw["classes"].items():
        model = ClassModel(name)
        for fname, ftype, qualifier, default in spec["fields"]:
            model.fields[fname] = Field(fname, ftype, qualifier, default)
        model.messages = dict(spec["messages"])
        classes[name] = model
    return Datamodel(classes, raw["enums"])


def reduce_reference(reference):
    """Reduce XAPI's full ``xenapi.json`` (already parsed) to what the simulator needs."""
    wanted = set(SERVED_CLASSES) | set(EXTRA_CLASSES)
    classes, enums = {}, {}
    for cls in reference["classes"]:
        for enum in cls.get("enums", []):
            enums[enum["name"]] = [v["name"] for v in enum["values"]]
        if cls["name"] not in wanted:
            continue
        # Removed fields stay: XAPI still serves some (host_metrics.memory_free) and XO reads them.
        fields = [[f["name"], f["type"], f["qualifier"], f.get("default")] for f in cls["fields"]]
        messages = {}
        for msg in cls["messages"]:
            params = msg["params"]
            has_session = bool(params) and params[0]["name"] == "session_id"
            messages[msg["name"]] = len(params) - (1 if has_session else 0)
        classes[cls["name"]] = {"fields": fields, "messages": messages}
    return {"_source": reference.get("_source", ""), "classes": classes, "enums": enums}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0], encoding="utf-8") as fh:
        reduced = reduce_reference(json.load(fh))
    with open(DATA_FILE, "w", encoding="utf-8") as fh:
        json.dump(reduced, fh, separators=(",", ":"), sort_keys=True)
    print(f"wrote {DATA_FILE}: {len(reduced['classes'])} classes")


if __name__ == "__main__":
    main()
