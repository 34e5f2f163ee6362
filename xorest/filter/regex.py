"""JavaScript regular expressions and complex-matcher globs, run with Python's ``regex`` module.

Patterns are user input evaluated on the server, so they are bounded: a length cap at
parse time, and every search runs with a timeout taken from the evaluation's budget
(:func:`budget`), so no filter can hold a worker for long.
"""
import contextlib
import contextvars
import re
import time

import regex

from .jsvalues import CANONICALIZE, JS_WHITESPACE, to_utf16

MAX_PATTERN_LENGTH = 1000
DEFAULT_BUDGET = 1.0  # seconds, for evaluations outside an explicit budget()
_deadline = contextvars.ContextVar("xorest_filter_deadline", default=None)

_WS_CLASS = "".join(f"\\u{ord(c):04x}" for c in JS_WHITESPACE)
_CLASS_ESCAPES = {"d": "0-9", "w": "A-Za-z0-9_", "s": _WS_CLASS}
_ESCAPES = {
    "d": "[0-9]", "D": "[^0-9]", "w": "[A-Za-z0-9_]", "W": "[^A-Za-z0-9_]",
    "s": f"[{_WS_CLASS}]", "S": f"[^{_WS_CLASS}]",
    "b": r"(?:(?<=[A-Za-z0-9_])(?![A-Za-z0-9_])|(?<![A-Za-z0-9_])(?=[A-Za-z0-9_]))",
    "B": r"(?:(?<=[A-Za-z0-9_])(?=[A-Za-z0-9_])|(?<![A-Za-z0-9_])(?![A-Za-z0-9_]))",
    "n": r"\n", "r": r"\r", "t": r"\t", "f": r"\f", "v": r"\v",
}
_DOT = "[^\\n\\r\\u2028\\u2029]"
_HEX2 = re.compile(r"[0-9a-fA-F]{2}")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")


class RegexTimeout(Exception):
    """The filter's regular expressions used up the evaluation budget."""


@contextlib.contextmanager
def budget(seconds):
    """Bound the total regex time of everything evaluated inside the block."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _count_groups(pattern):
    count, i, in_class = 0, 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(" and (pattern[i + 1:i + 2] != "?" or pattern[i + 1:i + 3] == "?<"
                           and pattern[i + 3:i + 4] not in ("=", "!")):
            count += 1
        i += 1
    return count


def _literal(char):
    return regex.escape(char, special_only=True) if char not in "\n" else "\\n"


def _escape(pattern, i, groups, in_class):
    """Translate the escape at ``pattern[i] == '\\'``; returns (text, next index)."""
    if i + 1 >= len(pattern):
        return "\\\\", i + 1
    c = pattern[i + 1]
    if in_class and c in _CLASS_ESCAPES:
        return _CLASS_ESCAPES[c], i + 2
    if in_class and c == "b":
        return "\\x08", i + 2
    if not in_class and c in _ESCAPES:
        return _ESCAPES[c], i + 2
    if c in "nrtfv":
        return _ESCAPES[c], i + 2
    if c.isdigit() and c.isascii():
        j = i + 1
        while j < len(pattern) and pattern[j].isdigit() and pattern[j].isascii():
            j += 1
        number = pattern[i + 1:j]
        if not in_class and c != "0" and int(number) <= groups:
            return f"(?:\\{int(number)})", j
        octal = re.match(r"[0-3][0-7]{0,2}|[4-7][0-7]?", pattern[i + 1:])
        if octal:
            return f"\\x{{{int(octal.group(), 8):x}}}", i + 1 + len(octal.group())
        return _literal(c), i + 2  # \8 and \9 are the digits themselves
    if c == "x" and _HEX2.match(pattern, i + 2):
        return f"\\x{pattern[i + 2:i + 4]}", i + 4
    if c == "u" and _HEX4.match(pattern, i + 2):
        return f"\\u{pattern[i + 2:i + 6]}", i + 6
    if c == "c" and i + 2 < len(pattern) and pattern[i + 2].isascii() and pattern[i + 2].isalpha():
        return f"\\x{ord(pattern[i + 2]) % 32:02x}", i + 3
    if c == "k" and not in_class and pattern[i + 2:i + 3] == "<" and ">" in pattern[i:]:
        end = pattern.index(">", i)
        return f"(?P={pattern[i + 3:end]})", end + 1
    return _literal(c), i + 2  # identity escape: \p is p, \a is a


def translate(pattern):
    """A Python ``regex`` pattern with JavaScript's meaning (non-unicode mode, Annex B)."""
    groups = _count_groups(pattern)
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            text, i = _escape(pattern, i, groups, in_class)
            out.append(text)
            continue
        if in_class:
            if c == "]":
                in_class = False
                out.append("]")
            elif c == "[":
                out.append("\\[")
            else:
                out.append(c)
        elif c == "[":
            if pattern.startswith("[^]", i):
                out.append("[\\s\\S]")
                i += 3
                continue
            if pattern.startswith("[]", i):
                out.append("(?!)")
                i += 2
                continue
            in_class = True
            out.append("[")
            if pattern.startswith("[^", i):
                out.append("^")
                i += 1
        elif c == ".":
            out.append(_DOT)
        elif c == "$":
            out.append("\\Z")
        elif c == "(" and pattern.startswith("(?<", i) and pattern[i + 3:i + 4] not in ("=", "!"):
            out.append("(?P<")
            i += 3
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


class BoundedPattern:
    """A compiled pattern and whether it needs the (costly) per-search timeout."""

    __slots__ = ("compiled", "risky")

    def __init__(self, compiled, risky):
        self.compiled = compiled
        self.risky = risky


def is_risky(pattern):
    """Shapes that can backtrack exponentially: a repeated group that itself repeats or
    alternates, or back-references.  Other patterns run without the per-search timeout."""
    if re.search(r"\\[1-9k]", pattern):
        return True
    if len(re.findall(r"(?<!\\)[*+]|(?<!\\)\{\d+,\}", pattern)) > 3:
        return True  # many unbounded repeats in a row backtrack polynomially
    stack, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if stack:
                stack[-1] |= pattern[i + 1:i + 2] in ("d", "w", "s", "D", "W", "S", ".")
            i += 2
            continue
        if c == "[":
            end = pattern.find("]", i + 2)
            i = len(pattern) if end < 0 else end + 1
            continue
        if c == "(":
            stack.append(False)
        elif c == ")" and stack:
            inner = stack.pop()
            quantified = pattern[i + 1:i + 2] in ("*", "+", "{")
            if quantified and inner:
                return True
            if stack:
                stack[-1] |= inner or quantified
        elif c in "*+{|" and stack:
            stack[-1] = True
        i += 1
    return False


def compile_js(pattern, flags):
    """Compile a JavaScript regex; raises ``ValueError`` with a V8-like message."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(f"Invalid regular expression: /{pattern[:40]}…/: longer than "
                         f"{MAX_PATTERN_LENGTH} characters")
    try:
        re.compile(_validation_form(pattern))
        compiled = regex.compile(translate(pattern), regex.V0 | (regex.IGNORECASE if "i" in flags else 0))
        return BoundedPattern(compiled, is_risky(pattern))
    except (re.error, regex.error) as exc:
        raise ValueError(f"Invalid regular expression: /{pattern}/: {exc}") from None


def _validation_form(pattern):
    # Python's re rejects a few things JavaScript rejects too (unbalanced groups, bad
    # quantifiers); named groups need Python's spelling to be checked.
    return translate(pattern)


def search(pattern, text):
    """Search on UTF-16 code units; risky patterns run within the evaluation's time budget."""
    units = text if text.isascii() else to_utf16(text)
    if not pattern.risky:
        return pattern.compiled.search(units) is not None
    compiled = pattern.compiled
    deadline = _deadline.get()
    if deadline is None:
        deadline = time.monotonic() + DEFAULT_BUDGET
        _deadline.set(deadline)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise RegexTimeout("the filter's regular expressions took too long")
    try:
        return compiled.search(units, timeout=remaining) is not None
    except TimeoutError:
        raise RegexTimeout("the filter's regular expressions took too long") from None


def canonicalize(text):
    """RegExp ``Canonicalize`` of every code unit (globs, exact JavaScript case rules)."""
    if text.isascii():
        return text.upper()  # Canonicalize is plain upper-casing on ASCII
    return to_utf16(text).translate(CANONICALIZE)


def compile_glob(glob):
    """A glob as complex-matcher builds it: ``*`` is ``.*`` (not crossing line ends), case-insensitive.

    Returns a compiled pattern to be searched on :func:`canonicalize`-d subjects.
    """
    pieces = [regex.escape(canonicalize(piece)) for piece in glob.split("*")]
    # Only literals and ".*": no nested repetition, so no per-search timeout is needed.
    return BoundedPattern(regex.compile(f"{_DOT}*".join(pieces)), False)

