"""JavaScript value semantics the filter language depends on: ToNumber, Number#toString,
truthiness, UTF-16 code units and the reference's character tables."""
import json
import math
import os
import re

with open(os.path.join(os.path.dirname(__file__), "charclasses.json"), encoding="utf-8") as _fh:
    _TABLES = json.load(_fh)

RAW_RANGES = tuple(tuple(r) for r in _TABLES["raw_char_ranges"])
JS_WHITESPACE = "".join(chr(c) for c in _TABLES["js_whitespace"])
#: RegExp non-unicode ``Canonicalize`` as a ``str.translate`` table.
CANONICALIZE = {a: b for a, b in _TABLES["regexp_i_canonicalize"]}


class Missing:
    """JavaScript ``undefined``: an absent property."""

    __slots__ = ()

    def __repr__(self):
        return "MISSING"


MISSING = Missing()

_RAW_CLASS = "".join(
    re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in RAW_RANGES
)
#: One raw code unit (BMP only: a surrogate is never raw).
RAW_CHAR_CLASS = f"[{_RAW_CLASS}]"
_RAW_STRING = re.compile(f"{RAW_CHAR_CLASS}*")

_DECIMAL = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|Infinity)")
_RADIX = re.compile(r"0([xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)")


def to_utf16(text):
    """``text`` with one Python character per UTF-16 code unit (astral -> surrogate pair)."""
    if text.isascii() or max(text) <= "\uffff":
        return text
    data = text.encode("utf-16-le", "surrogatepass")
    return "".join(chr(data[i] | data[i + 1] << 8) for i in range(0, len(data), 2))


def from_utf16(units):
    """Inverse of :func:`to_utf16` (pairs join back into code points)."""
    if units.isascii():
        return units
    return units.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def utf16_length(text):
    return len(text) + sum(1 for c in text if c > "\uffff") if not text.isascii() else len(text)


def to_number(text):
    """ECMAScript ToNumber of a string (``nan`` when JavaScript gives NaN)."""
    stripped = text.strip(JS_WHITESPACE)
    if stripped == "":
        return 0.0
    if _DECIMAL.fullmatch(stripped):
        return float(stripped.replace("Infinity", "inf"))
    match = _RADIX.fullmatch(stripped)
    if match:
        return float(int(match.group(1)[1:], {"x": 16, "o": 8, "b": 2}[match.group(1)[0].lower()]))
    return math.nan


def is_number(value):
    """``typeof value === 'number'`` for JSON values (``bool`` is not a number)."""
    return (type(value) is int or type(value) is float)


def number_to_string(value):
    """JavaScript ``Number.prototype.toString()`` (shortest round-trip digits)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    digits, exponent = _shortest(abs(value))
    k, n = len(digits), exponent
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        exp = n - 1
        mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
        body = f"{mantissa}e{'+' if exp >= 0 else '-'}{abs(exp)}"
    return sign + body


def _shortest(value):
    """Digits and decimal exponent n such that value = 0.d1d2... x 10^n."""
    mantissa, _, exp = repr(float(value)).partition("e")
    exp = int(exp) if exp else 0
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    leading_zeros = len(whole + frac) - len((whole + frac).lstrip("0"))
    n = len(whole) + exp - leading_zeros
    return digits.rstrip("0") or "0", n


def truthy(value):
    """JavaScript truthiness: ``[]`` and ``{}`` are truthy, unlike in Python."""
    if value is None or value is MISSING or value is False:
        return False
    if type(value) is str:
        return value != ""
    if is_number(value):
        return value != 0 and not (type(value) is float and math.isnan(value))
    return True


def is_raw_string(text):
    """Every code point raw (BMP via the table; astral if cased), as ``formatString`` tests it."""
    for char in text:
        if char > "\uffff":
            if char.upper() == char and char.lower() == char:
                return False
        elif not _RAW_STRING.fullmatch(char):
            return False
    return True


def format_string(text):
    """complex-matcher's ``formatString``: quote numbers, quote and escape non-raw text."""
    if not math.isnan(to_number(text)):
        return f'"{text}"'
    if text and is_raw_string(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def array_like_length(obj):
    """lodash ``isArrayLike`` for a dict: its ``length`` if a valid integer length, else None."""
    length = obj.get("length", MISSING)
    if is_number(length) and length == int(length) and 0 <= length <= 2**53 - 1:
        return int(length)
    return None


def values_of(value):
    """What lodash ``some`` visits for a list or a plain object (array-likes by index)."""
    if type(value) is list:
        return value
    length = array_like_length(value)
    if length is None:
        return value.values()
    return [value.get(str(i), MISSING) for i in range(length)]


def to_primitive_number(value):
    """The number JavaScript's relational operators compare ``value`` as (1.x Comparison)."""
    if is_number(value):
        return float(value)
    if value is None:
        return 0.0
    if value is True or value is False:
        return float(value)
    if type(value) is str:
        return to_number(value)
    if type(value) is list:
        return to_number(_join(value))
    if hasattr(value, "timestamp"):  # a Date compares as its milliseconds
        return value.timestamp() * 1000
    return math.nan


def _join(items):
    parts = []
    for item in items:
        if item is None or item is MISSING:
            parts.append("")
        elif type(item) is list:
            parts.append(_join(item))
        elif item is True or item is False:
            parts.append("true" if item else "false")
        elif is_number(item):
            parts.append(number_to_string(float(item)) if type(item) is float else str(item))
        elif type(item) is str:
            parts.append(item)
        else:
            parts.append("[object Object]")
    return ",".join(parts)
