"""Order of collection listings (``sort=``) and the cursors that page through them (``after=``).

Every listing is in a total order: the ``sort`` fields, then the object id.  A cursor
names a position in that order by value (the last item's sort values and id), not by
index, so paging stays exact while objects come and go between pages: nothing is
skipped, and nothing is returned twice.

Values compare by kind first (numbers, then strings, then booleans, then lists and
objects, then missing or ``null``), then by value; strings compare case-insensitively,
then exactly, on their first ``KEY_CHARS`` characters (lists and objects by their JSON
text, likewise), so that a cursor stays short enough for a URL whatever the values.
``-field`` reverses a field's order.
"""
import base64
import bisect
import binascii
import json
import re

from ..errors import BadRequest

MAX_SORT_FIELDS = 8
KEY_CHARS = 256  # of a string or JSON text that take part in the order (ties go by id)
BAD_CURSOR = "invalid after cursor: use the one from the previous page's Link header"
_FIELD = re.compile(r"-?[A-Za-z0-9_$@:][A-Za-z0-9_$@:\-]*(\.[A-Za-z0-9_$@:\-]+)*")


def _value(obj, path):
    for name in path:
        if not isinstance(obj, dict) or name not in obj:
            return None
        obj = obj[name]
    return obj


def _sort_value(value):
    """``[kind rank, value]``: a JSON value as it takes part in the order and in cursors."""
    if isinstance(value, bool):
        return [2, value]
    if isinstance(value, (int, float)):
        return [0, value]
    if isinstance(value, str):
        return [1, value[:KEY_CHARS]]
    if value is None:
        return [4, 0]
    return [3, json.dumps(value, sort_keys=True)[:KEY_CHARS]]


_PAYLOAD_TYPES = {0: (int, float), 1: str, 2: bool, 3: str, 4: int}


def _valid_sort_value(item):
    """Whether a value read back from a cursor is one :func:`_sort_value` could give."""
    if not (isinstance(item, list) and len(item) == 2 and item[0] in _PAYLOAD_TYPES):
        return False
    rank, value = item
    return isinstance(value, _PAYLOAD_TYPES[rank]) and (rank == 2 or not isinstance(value, bool))


def _comparable(sort_value):
    rank, value = sort_value
    return (rank, (value.casefold(), value)) if rank == 1 else (rank, value)


class _Descending:
    """Wraps a comparable so that tuples holding it order it backwards."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return self.value == other.value

    def __lt__(self, other):
        return other.value < self.value


class SortOrder:
    """A parsed ``sort`` parameter: dotted field paths, each possibly descending.

    :raises BadRequest: on a malformed parameter.
    """

    def __init__(self, text=None):
        self.text = (text or "").strip()
        self.fields = []  # [(path tuple, descending)]
        for item in filter(None, (part.strip() for part in self.text.split(","))):
            if not _FIELD.fullmatch(item):
                raise BadRequest(f"invalid sort field {item!r}: use dotted names, '-' in front to reverse",
                                 parameter="sort")
            self.fields.append((tuple(item.lstrip("-").split(".")), item.startswith("-")))
        if len(self.fields) > MAX_SORT_FIELDS:
            raise BadRequest(f"sort takes at most {MAX_SORT_FIELDS} fields", parameter="sort")

    def __bool__(self):
        return bool(self.fields)

    def _key_of_values(self, sort_values, key):
        parts = [_Descending(_comparable(v)) if descending else _comparable(v)
                 for v, (_, descending) in zip(sort_values, self.fields)]
        return (*parts, key)

    def _sort_values(self, obj):
        return [_sort_value(_value(obj, path)) for path, _ in self.fields]

    def key(self, obj):
        """The position of ``obj`` in this order."""
        return self._key_of_values(self._sort_values(obj), obj["id"])

    def sort(self, objects):
        """``objects`` (a list, in id order) in this order; the list itself when unsorted."""
        return sorted(objects, key=self.key) if self.fields else objects

    # cursors -----------------------------------------------------------------

    def cursor(self, obj):
        """The opaque text that resumes a listing after ``obj``: its id when unsorted."""
        if not self.fields:
            return obj["id"]
        raw = json.dumps([self.text, self._sort_values(obj), obj["id"]], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def _cursor_key(self, cursor):
        if not self.fields:
            return cursor
        try:
            text, values, key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except (ValueError, TypeError, binascii.Error):
            raise BadRequest(BAD_CURSOR, parameter="after") from None
        if text != self.text:
            raise BadRequest("this after cursor belongs to another sort order", parameter="after")
        if not (isinstance(values, list) and len(values) == len(self.fields) and isinstance(key, str)
                and all(map(_valid_sort_value, values))):
            raise BadRequest(BAD_CURSOR, parameter="after")
        return self._key_of_values(values, key)

    def after(self, ordered, cursor):
        """The part of ``ordered`` (in this order) that comes after the ``cursor``."""
        if cursor is None:
            return ordered
        position = self._cursor_key(cursor)
        key = self.key if self.fields else (lambda obj: obj["id"])
        return ordered[bisect.bisect_right(ordered, position, key=key):]


__all__ = ["SortOrder"]
