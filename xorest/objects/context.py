"""What mappers may ask about the rest of the pool while building one object.

Xen Orchestra follows refs through xen-api's ``$<field>`` getters and names the target by
its ``$id`` (the record's uuid, the ref when it has none); a ref to a record that is not
cached gives ``undefined``, which is :data:`ABSENT` here, or ``null`` inside a list.
"""
from .values import ABSENT, compact, num, parse_datetime, timestamp, to_float, to_int, truthy

NULL_REF = "OpaqueRef:NULL"

__all__ = ["ABSENT", "Context", "NULL_REF", "compact", "is_default_template", "num", "parse_datetime",
           "timestamp", "to_int", "to_float", "truthy"]


class Context:
    """Read access to one pool's raw records during mapping.

    :param records: ``ref -> (xapi class, record)`` of the pool.
    :param pool_uuid: the pool's uuid (``$pool`` of every object).
    :param by_uuid: ``uuid -> ref`` of ``records``, when the caller keeps one; otherwise
        :meth:`find` builds it on first use, a pass over every record.
    """

    def __init__(self, records, pool_uuid, by_uuid=None):
        self.records = records
        self.pool_uuid = pool_uuid
        self._by_uuid = by_uuid
        self._master = ABSENT

    def record(self, ref):
        """The record behind ``ref``, or ``None``."""
        try:
            item = self.records.get(ref)
        except TypeError:  # not a ref: unhashable
            return None
        return item[1] if item else None

    def item(self, ref):
        """``(class, record)`` behind ``ref``, or ``None``."""
        return self.records.get(ref) if isinstance(ref, str) else None

    def link(self, ref):
        """The ``$id`` of the object behind ``ref``; :data:`ABSENT` for the null ref and
        for records that are not cached (``link(obj, field)`` in Xen Orchestra)."""
        try:
            item = self.records.get(ref)
        except TypeError:  # not a ref: unhashable
            return ABSENT
        if item is None:
            return ABSENT
        return item[1].get("uuid") or ref

    def links(self, refs):
        """``link`` over a ref list: unknown refs are ``None`` (``null``), as in Xen
        Orchestra; a missing field is :data:`ABSENT`."""
        if refs is None or refs is ABSENT:
            return ABSENT
        get = self.records.get  # link() inlined: VMs, VDIs and SRs list 300,000 refs in a 10k-VM pool
        try:
            return [None if (item := get(ref)) is None else (item[1].get("uuid") or ref) for ref in refs]
        except TypeError:  # something unhashable in the list (no ref of XAPI's): not a record
            return [self.link(ref) or None for ref in refs]

    def uuid(self, ref):
        """The uuid behind ``ref``, or ``None`` for the null or an unknown ref."""
        target = self.link(ref)
        return None if target is ABSENT else target

    def uuids(self, refs):
        return [u for u in (self.uuid(r) for r in refs or ()) if u]

    def find(self, key):
        """``(ref, class, record)`` by uuid or ref, as xen-api's ``getObject``; or ``None``."""
        item = self.records.get(key) if isinstance(key, str) else None
        if item is not None:
            return key, item[0], item[1]
        if self._by_uuid is None:
            self._by_uuid = {record.get("uuid"): ref for ref, (_, record) in self.records.items()}
        ref = self._by_uuid.get(key)
        if ref is None:
            return None
        item = self.records.get(ref)
        return (ref, item[0], item[1]) if item else None

    def pool(self):
        """The pool record, or ``None`` before it is known."""
        for cls, record in self.records.values():
            if cls == "pool":
                return record
        return None

    def master(self):
        """The pool master's host record (``$pool.$master``), looked up once per context."""
        if self._master is ABSENT:
            pool = self.pool()
            self._master = self.record(pool.get("master")) if pool else None
        return self._master


def is_default_template(record):
    """Default templates get the id ``<pool uuid>-<uuid>`` in Xen Orchestra."""
    return truthy(record.get("is_default_template")) or \
        (record.get("other_config") or {}).get("default_template") == "true"

