"""task and message records to their XO objects, and alarm messages to Xen Orchestra's
REST ``alarms``."""
import decimal
import math
import re

from .context import ABSENT, compact, num, timestamp
from .kinds import xo_id, xo_type
from .values import js_number

#: Record fields read here, per XAPI class (records are stored with these only).
FIELDS = {
    "task": ("uuid", "name_label", "name_description", "status", "progress", "result", "error_info",
             "created", "finished", "current_operations", "allowed_operations", "other_config",
             "resident_on"),
    "message": ("uuid", "name", "body", "timestamp", "priority", "obj_uuid"),
}

#: Message names Xen Orchestra's REST API serves as alarms rather than messages; it
#: matches them as a live filter does (``name:|(ALARM …)``: case-insensitive substrings).
ALARM_NAMES = ("ALARM", "BOND_STATUS_CHANGED", "MULTIPATH_PERIODIC_ALERT")
# perfmon's body: "value: 0.95\nconfig:\n<variable>\n<name value="cpu_usage"/>…"
_ALARM_BODY = re.compile(r'value:\s*(Infinity|NaN|-Infinity|[0-9]+(?:\.[0-9]+)?)\s*config:\s*<variable>\s*'
                         r'<name value="(.*?)"')


def task(record, ctx, ref=None):
    """The XO object of an XAPI task; ``applies_to`` is the uuid of the object named by
    ``other_config.applies_to`` (a ref or a uuid), when it is cached."""
    target = (record.get("other_config") or {}).get("applies_to")
    applies_to = ABSENT
    if target:
        found = ctx.find(target)
        if found is not None:
            applies_to = found[2].get("uuid", ABSENT)
    return compact({
        "allowedOperations": record.get("allowed_operations", ABSENT),
        "created": timestamp(record.get("created")),
        "current_operations": record.get("current_operations", ABSENT),
        "finished": timestamp(record.get("finished")),
        "name_description": record.get("name_description", ABSENT),
        "name_label": record.get("name_label", ABSENT),
        "progress": num(record.get("progress")),
        "result": record.get("result", ABSENT),
        "status": record.get("status", ABSENT),
        "xapiRef": ref if ref is not None else ABSENT,
        "applies_to": applies_to,
        "$host": ctx.link(record.get("resident_on")),
        # not in Xen Orchestra: why a task failed (XAPI's error code and parameters)
        "error_info": record.get("error_info", ABSENT),
    })


def message(record, ctx, ref=None):
    """The XO object of a message (``$object`` is the uuid of what it is about)."""
    return compact({
        "body": record.get("body", ABSENT),
        "name": record.get("name", ABSENT),
        "time": timestamp(record.get("timestamp")),
        "$object": record.get("obj_uuid", ABSENT),
        # not in Xen Orchestra: XAPI's priority (1 most urgent … 5 informational)
        "priority": num(record["priority"]) if "priority" in record else ABSENT,
    })


def is_alarm(obj):
    """Whether Xen Orchestra's REST API serves this message object as an alarm."""
    name = obj.get("name")
    return isinstance(name, str) and any(n.lower() in name.lower() for n in ALARM_NAMES)


def alarm(obj, ctx):
    """Xen Orchestra's REST alarm made of a message object: ``body`` parsed from
    perfmon's text (``value`` in percent, one decimal, as a string), ``object`` the type,
    uuid and URL of what it is about, ``time`` in milliseconds."""
    body = obj.get("body")
    about = obj.get("$object")
    result = {key: value for key, value in obj.items() if key not in ("$object", "body", "time")}
    match = _ALARM_BODY.match(body) if isinstance(body, str) else None
    value = ABSENT
    if match:
        number = js_number(match.group(1)) * 100
        value = _fixed1(number) if math.isfinite(number) else match.group(1)
    name = match.group(2) if match else (body if body is not None else ABSENT)  # other bodies: all of it
    result["body"] = compact({"value": value, "name": name})
    found = ctx.find(about) if isinstance(about, str) else None
    kind = xo_type(found[1], found[2], ctx) if found else None
    if kind is None or xo_id(found[1], found[2], ctx) != about:
        result["object"] = compact({"type": "unknown", "uuid": about if about is not None else ABSENT})
    else:
        uuid = found[2].get("uuid")
        result["object"] = {"type": kind, "uuid": uuid, "href": f"/rest/v0/{kind.lower()}s/{uuid}"}
    time = obj.get("time")
    result["time"] = (time or 0) * 1000  # null * 1000 is 0 in JavaScript
    return result


def _fixed1(number):
    """JavaScript's ``number.toFixed(1)``: the exact binary value, ties away from zero
    (Python's formatting rounds ties to even)."""
    exact = decimal.Decimal(number)
    if exact == 0:
        return "0.0"
    if abs(number) >= 1e21:
        return repr(number)  # JavaScript writes an exponent there; no perfmon value is that big
    return str(exact.quantize(decimal.Decimal("0.1"), rounding=decimal.ROUND_HALF_UP))
