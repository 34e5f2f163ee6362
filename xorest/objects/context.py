"""What mappers may ask about the rest of the pool while building one object."""
from .values import parse_datetime, to_float, to_int

NULL_REF = "OpaqueRef:NULL"

__all__ = ["Context", "NULL_REF", "is_default_template", "parse_datetime", "to_int", "to_float"]


class Context:
    """Read access to one pool's raw records during mapping.

    :param records: ``ref -> (xapi class, record)`` of the pool.
    :param pool_uuid: the pool's uuid (``$pool`` of every object).
    """

    def __init__(self, records, pool_uuid):
        self.records = records
        self.pool_uuid = pool_uuid

    def record(self, ref):
        item = self.records.get(ref)
        return item[1] if item else None

    def uuid(self, ref):
        """The id of the object behind ``ref``, or ``None`` for the null or an unknown ref."""
        if not ref or ref == NULL_REF:
            return None
        item = self.records.get(ref)
        if item is None:
            return None
        cls, record = item
        if cls == "VM" and is_default_template(record):
            return f"{self.pool_uuid}-{record['uuid']}"
        return record.get("uuid")

    def uuids(self, refs):
        return [u for u in (self.uuid(r) for r in refs or ()) if u]

    def master(self):
        for cls, record in self.records.values():
            if cls == "pool":
                return self.record(record.get("master"))
        return None


def is_default_template(record):
    """Default templates get the id ``<pool uuid>-<uuid>`` in Xen Orchestra."""
    return bool(record.get("is_default_template")) or \
        (record.get("other_config") or {}).get("default_template") == "true"

