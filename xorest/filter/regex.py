"""JavaScript regular expressions and complex-matcher globs, run with Python's ``regex`` module.

Patterns are user input evaluated on the server, so they are bounded: a length cap at
parse time, and every search (regexes and globs alike) runs with a timeout taken from
the evaluation's budget (:func:`budget`), so no filter can hold a worker for long.
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


_SPECIAL = set("\\^$.|?*+()[]{}")
_BRACES = re.compile(r"\{\d+(?:,\d*)?\}")


def required_literals(pattern):
    """Literal texts every match of the JavaScript ``pattern`` contains, as far as a plain
    reading of its top level shows (``()`` when it shows none).

    Only characters outside groups and classes count, and only those no quantifier can
    remove; a top-level ``|`` means nothing is required.  Missing one of them proves a
    text cannot match, so the search is skipped; it is never a reason to search unbounded.
    """
    runs, run, depth, i = [], [], 0, 0
    groups = _count_groups(pattern)
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i = _escape(pattern, i, groups, False)[1]  # past the whole escape (\x41, \u0041, \k<n>...)
            runs.append(run)
            run = []
            continue
        quantifier = _BRACES.match(pattern, i) if c == "{" else None
        if quantifier:
            if run:
                run.pop()  # {0,}, {0}: the character before it may be absent
            i = quantifier.end()
            runs.append(run)
            run = []
            continue
        if c == "[":  # skip the class: ] right after [ or [^ belongs to it in JS only as []/[^]
            j = i + 1
            while j < len(pattern) and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            i = j + 1
            runs.append(run)
            run = []
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth = max(0, depth - 1)
        elif c == "|" and depth == 0:
            return ()
        if c in "?*" and run:
            run.pop()  # the character before an optional quantifier may be absent
        if depth == 0 and c not in _SPECIAL:
            run.append(c)
        else:
            runs.append(run)
            run = []
        i += 1
    runs.append(run)
    return tuple(sorted({"".join(r) for r in runs if r}, key=len, reverse=True)[:3])


class JsPattern:
    """A compiled JavaScript regex and the literals any match must contain."""

    __slots__ = ("compiled", "literals", "ignore_case")

    def __init__(self, compiled, literals, ignore_case):
        self.compiled = compiled
        self.ignore_case = ignore_case
        self.literals = tuple(text.lower() for text in literals) if ignore_case else literals

    def cannot_match(self, units):
        """Cheap proof that ``units`` has no match (a required literal is absent)."""
        if not self.literals:
            return False
        if self.ignore_case:
            if not units.isascii():
                return False  # case folding beyond ASCII is the engine's business
            units = units.lower()
        return any(literal not in units for literal in self.literals)


def compile_js(pattern, flags):
    """Compile a JavaScript regex; raises ``ValueError`` with a V8-like message."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(f"Invalid regular expression: /{pattern[:40]}…/: longer than "
                         f"{MAX_PATTERN_LENGTH} characters")
    try:
        re.compile(_validation_form(pattern))
        ignore_case = "i" in flags
        compiled = regex.compile(translate(pattern), regex.V0 | (regex.IGNORECASE if ignore_case else 0))
    except (re.error, regex.error) as exc:
        raise ValueError(f"Invalid regular expression: /{pattern}/: {exc}") from None
    literals = required_literals(pattern) if set(flags) <= set("gimsy") else ()
    if ignore_case:
        literals = tuple(text for text in literals if text.isascii())
    return JsPattern(compiled, tuple(to_utf16(text) for text in literals), ignore_case)


def _validation_form(pattern):
    # Python's re rejects a few things JavaScript rejects too (unbalanced groups, bad
    # quantifiers); named groups need Python's spelling to be checked.
    return translate(pattern)


def search(pattern, text):
    """Search on UTF-16 code units, within the evaluation's time budget.

    Every search is bounded: which patterns backtrack badly cannot be told reliably from
    their text (an empty class ``[]`` once hid an exponential group), so none is trusted.
    Outside :func:`budget`, each search gets :data:`DEFAULT_BUDGET` on its own.
    """
    units = text if text.isascii() else to_utf16(text)
    if pattern.cannot_match(units):
        return False
    deadline = _deadline.get()
    remaining = DEFAULT_BUDGET if deadline is None else deadline - time.monotonic()
    if remaining <= 0:
        raise RegexTimeout("the filter's regular expressions took too long")
    try:
        return pattern.compiled.search(units, timeout=remaining) is not None
    except TimeoutError:
        raise RegexTimeout("the filter's regular expressions took too long") from None


def search_each(pattern, texts):
    """The positions in ``texts`` of the strings with a match (other values never match):
    :func:`search` over many subjects, with its bookkeeping done once, under the same budget."""
    deadline = _deadline.get()
    if deadline is None:
        deadline = time.monotonic() + DEFAULT_BUDGET
    find, clock = pattern.compiled.search, time.monotonic
    found = []
    try:
        for position, text in enumerate(texts):
            if type(text) is not str:
                continue
            units = text if text.isascii() else to_utf16(text)
            if pattern.cannot_match(units):
                continue
            remaining = deadline - clock()
            if remaining <= 0:
                raise TimeoutError
            if find(units, timeout=remaining) is not None:
                found.append(position)
    except TimeoutError:
        raise RegexTimeout("the filter's regular expressions took too long") from None
    return found


def canonicalize(text):
    """RegExp ``Canonicalize`` of every code unit (globs, exact JavaScript case rules)."""
    if text.isascii():
        return text.upper()  # Canonicalize is plain upper-casing on ASCII
    return to_utf16(text).translate(CANONICALIZE)


_LINE_END = re.compile("[\n\r\u2028\u2029]")
#: Cost bound (characters visited) under which a glob scans a whole column unguarded.
_SCAN_STEPS = 4_000_000


class GlobPattern:
    """A complex-matcher glob: its pieces, in order, within one line of the subject.

    Complex-matcher makes ``a*b`` the regex ``/a.*b/i``; ``.`` stops at line ends, so a
    subject matches when one of its lines holds the pieces in order, which ``str.find``
    decides in linear time (leftmost is always best).  Pieces that hold a line end fall
    back to the regex, under the budget like any search.
    """

    __slots__ = ("pieces", "compiled", "_scans")

    def __init__(self, pieces):
        self.pieces = pieces
        self.compiled = None
        self._scans = None
        if any(_LINE_END.search(piece) for piece in pieces):
            self.compiled = regex.compile(f"{_DOT}*".join(regex.escape(piece) for piece in pieces))

    def matches_everything(self):
        """Whether every string matches (the glob is only stars)."""
        return not any(self.pieces)

    def match_starts(self, text, longest):
        """Where matches start in ``text``, :func:`canonicalize`-d subjects joined by
        ``"\n"`` whose longest line has ``longest`` characters: at most one per line.

        One C-speed scan instead of one call per subject.  Each attempt commits to the
        leftmost occurrence of every piece (atomic groups: leftmost is always best), so
        the scan is linear except for retries at later occurrences of the first piece on
        a line that fails; when this text could make those costly, a line that fails is
        consumed whole instead (linear, somewhat slower).  Needs :attr:`compiled` unset
        and a piece that is not empty.
        """
        if self._scans is None:
            first, *rest = [re.escape(piece) for piece in self.pieces if piece]
            tail = "".join(f"(?>{_DOT}*?{piece})" for piece in rest)
            self._scans = (re.compile(f"{first}{tail}{_DOT}*"),
                           re.compile(f"({first}{tail}){_DOT}*|{first}{_DOT}*"),
                           next(piece for piece in self.pieces if piece), sum(map(len, self.pieces)))
        fast, linear, first, length = self._scans
        if text.count(first) * longest * length <= _SCAN_STEPS:
            return [m.start() for m in fast.finditer(text)]
        return [m.start() for m in linear.finditer(text) if m.start(1) >= 0]

    def matches(self, subject):
        """Whether the :func:`canonicalize`-d ``subject`` matches."""
        if self.compiled is not None:
            return search(JsPattern(self.compiled, (), False), subject)
        for line in _LINE_END.split(subject) if _LINE_END.search(subject) else (subject,):
            position = 0
            for piece in self.pieces:
                position = line.find(piece, position)
                if position < 0:
                    break
                position += len(piece)
            else:
                return True
        return False


def compile_glob(glob):
    """A glob as complex-matcher builds it: ``*`` is ``.*`` (not crossing line ends),
    case-insensitive; its :meth:`~GlobPattern.matches` takes :func:`canonicalize`-d subjects."""
    return GlobPattern([canonicalize(piece) for piece in glob.split("*")])
