"""Reading XAPI values as Xen Orchestra's JavaScript reads them (IO-free).

Mappers build objects with :data:`ABSENT` for keys JavaScript leaves ``undefined``
(dropped by :func:`compact`, as ``JSON.stringify`` drops them) and ``None`` for ``null``.
"""
import calendar
import functools
import math
import re

_DATETIME = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})T(\d{2}):?(\d{2}):?(\d{2})(?:\.\d+)?"
                       r"(Z|[+-]\d{2}:?\d{2})?$")
# The decimal literals JavaScript's unary ``+`` accepts (after trimming white space).
_JS_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_JS_RADIX = re.compile(r"0([xXoObB])([0-9a-fA-F]+)")


class _Absent:
    """The ``undefined`` of a key: :func:`compact` leaves the key out."""

    __slots__ = ()

    def __repr__(self):
        return "ABSENT"

    def __bool__(self):
        return False


ABSENT = _Absent()


def compact(obj):
    """``obj`` without its :data:`ABSENT` values, removed in place (order kept): mappers
    pass dicts they just made, and deleting the few absent keys costs half of copying the
    rest (60-key VM objects)."""
    for key in [key for key, value in obj.items() if value is ABSENT]:
        del obj[key]
    return obj


def js_number(value):
    """JavaScript's ``+value`` for the values XAPI records hold: a float, possibly NaN."""
    if value is None or value is ABSENT:
        return math.nan  # +undefined
    if isinstance(value, (bool, int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0.0
        if _JS_DECIMAL.fullmatch(text):
            return float(text.replace("Infinity", "inf"))
        radix = _JS_RADIX.fullmatch(text)
        if radix:
            try:
                return float(int(radix.group(2), {"x": 16, "o": 8, "b": 2}[radix.group(1).lower()]))
            except ValueError:
                return math.nan
    return math.nan


def json_number(number):
    """A float as ``JSON.stringify`` writes it: ``null`` when not finite, an int when integral."""
    if math.isnan(number) or math.isinf(number):
        return None
    return int(number) if number.is_integer() else number


def num(value):
    """JavaScript's ``+value``, ready for JSON (``null`` for NaN, ints when integral)."""
    kind = type(value)
    if kind is int:  # the usual cases first: JSON-RPC numbers, XML-RPC decimal strings
        return value
    if kind is str and value.isascii() and value.isdigit():
        return int(value)
    return json_number(js_number(value))


def truthy(value):
    """JavaScript truthiness (maps and lists are always true)."""
    if value is None or value is ABSENT:
        return False
    if isinstance(value, (dict, list)):
        return True
    if isinstance(value, float) and math.isnan(value):
        return False
    return bool(value)


def timestamp(value):
    """Xen Orchestra's ``toTimestamp``: seconds, ``None`` for the epoch, unset or unreadable
    values; a number-like string is already seconds (``boot_time``), possibly fractional."""
    if value is None or value is ABSENT:
        return None
    if isinstance(value, str):
        fields = _xapi_datetime(value)
        if fields is not None:  # the usual case, a pool's own dates: no number to try first
            return _utc_seconds(fields, None)
        number = js_number(value)
        if not math.isnan(number):
            return json_number(number) or None
        return parse_datetime(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return json_number(float(value)) or None
    return None


def to_int(value, default=0):
    """An int from a JSON number or an XML-RPC decimal string."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return default


def to_float(value, default=0.0):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def parse_datetime(value):
    """Unix seconds from ``20250319T04:16:24Z`` or RFC 3339; ``None`` for the epoch or junk.

    XAPI's JSON-RPC writes the first form; XML-RPC clients may hand over either, with or
    without a zone (UTC then)."""
    if isinstance(value, (int, float)):
        return int(value) or None
    text = str(value or "")
    fields = _xapi_datetime(text)
    if fields is not None:
        return _utc_seconds(fields, None)
    match = _DATETIME.match(text)
    if not match:
        return None
    return _utc_seconds([int(g) for g in match.groups()[:6]], match.group(7))


def _xapi_datetime(text):
    """``[year, month, day, hour, minute, second]`` of a date in XAPI's exact JSON-RPC
    form (``20250319T04:16:24Z``), without a regular expression (a 10k-VM pool has 80,000
    of them); ``None`` for any other text."""
    if len(text) != 18 or text[8] != "T" or text[11] != ":" or text[14] != ":" or text[17] != "Z":
        return None
    digits = text[:8] + text[9:11] + text[12:14] + text[15:17]
    if not (digits.isascii() and digits.isdigit()):
        return None
    return [int(digits[:4]), int(digits[4:6]), int(digits[6:8]), int(digits[8:10]), int(digits[10:12]),
            int(digits[12:])]


def _utc_seconds(fields, zone):
    """Unix seconds of ``[year, month, day, hour, minute, second]`` in ``zone`` (``Z``,
    ``+hh:mm``, ``-hhmm`` or ``None`` for UTC); ``None`` for the epoch and impossible dates."""
    try:
        seconds = calendar.timegm((*fields, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return seconds or None


# node-semver: ``major.minor.patch[-pre][+build]``, no leading zeros, optional ``v``.
_SEMVER = re.compile(r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")


def semver_at_least(version, minimum):
    """``semver.satisfies(String(version), '>=' + minimum)``: a prerelease never satisfies
    a plain range, and anything that is not a full semver does not either."""
    return isinstance(version, str) and _semver_at_least(version, minimum)


@functools.lru_cache(maxsize=64)  # a pool has a handful of versions, read for every VM
def _semver_at_least(version, minimum):
    match = _SEMVER.fullmatch(version.strip())
    if match is None or match.group(4):
        return False
    return tuple(int(g) for g in match.groups()[:3]) >= minimum
