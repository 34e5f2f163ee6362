"""task and message records to their XO objects."""
from .context import parse_datetime, to_float

#: Record fields read here, per XAPI class (records are stored with these only).
FIELDS = {
    "task": ("uuid", "name_label", "name_description", "status", "progress", "result", "error_info",
             "created", "finished", "current_operations", "allowed_operations", "other_config",
             "resident_on"),
    "message": ("uuid", "name", "body", "timestamp", "priority", "obj_uuid"),
}


def task(record, ctx, ref=None):
    other = record.get("other_config") or {}
    return {
        "type": "task",
        "name_label": record.get("name_label", ""),
        "name_description": record.get("name_description", ""),
        "status": record.get("status"),
        "progress": to_float(record.get("progress")),
        "result": record.get("result", ""),
        "error_info": list(record.get("error_info") or []),
        "created": parse_datetime(record.get("created")),
        "finished": parse_datetime(record.get("finished")),
        "current_operations": record.get("current_operations") or {},
        "allowedOperations": list(record.get("allowed_operations") or []),
        "applies_to": ctx.uuid(other.get("applies_to")) or other.get("applies_to"),
        "$host": ctx.uuid(record.get("resident_on")),
    }


def message(record, ctx, ref=None):
    return {
        "type": "message",
        "name": record.get("name", ""),
        "body": record.get("body", ""),
        "time": parse_datetime(record.get("timestamp")),
        "priority": record.get("priority"),
        "$object": record.get("obj_uuid"),
    }
