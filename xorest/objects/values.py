"""Reading XAPI values the same way whichever protocol delivered them (IO-free)."""
import calendar
import re

_DATETIME = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})T(\d{2}):?(\d{2}):?(\d{2})(?:\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")


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
    """Unix seconds from ``20250319T04:16:24Z`` or RFC 3339; ``None`` for the epoch or junk."""
    if isinstance(value, (int, float)):
        return int(value) or None
    match = _DATETIME.match(str(value or ""))
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = match.group(7)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return seconds or None
