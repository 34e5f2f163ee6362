"""The live-filter grammar in pyparsing: an exact transcription of complex-matcher's PEG.

The parser works on UTF-16 code units (one Python character each) so that positions,
raw-character decisions and errors are those of the JavaScript reference.  Ordered
choice everywhere (``|``), no implicit whitespace skipping: ``WS`` appears exactly where
the reference has it.
"""
import contextlib
import math

import pyparsing as pp

from . import nodes
from .jsvalues import JS_WHITESPACE, RAW_CHAR_CLASS, from_utf16, to_number


class HardError(Exception):
    """A failure that escapes backtracking (bad comparison number, invalid regex)."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


class _End:
    """Where the top-level term loop stopped."""

    def __init__(self, loc):
        self.loc = loc


class JsRegexLiteral(pp.Token):
    """``/body/`` or ``/body/i`` with the reference's scanning quirk: a backslash protects
    the next ``/`` even when it is itself escaped, and a scan that runs off the end is
    accepted if the last character read was ``/``."""

    def __init__(self):
        super().__init__()
        self.mayReturnEmpty = False
        self.errmsg = "expected a regular expression"

    def parseImpl(self, instring, loc, do_actions=True):
        if loc >= len(instring) or instring[loc] != "/":
            raise pp.ParseException(instring, loc, self.errmsg, self)
        pos, end, escaped, last, pattern = loc + 1, len(instring), False, None, []
        while pos < end:
            char = instring[pos]
            pos += 1
            last = char
            if char == "/" and not escaped:
                break
            escaped = char == "\\"
            pattern.append(char)
        if last != "/":
            raise pp.ParseException(instring, loc, self.errmsg, self)
        flags = ""
        if pos < end and instring[pos] == "i":
            flags, pos = "i", pos + 1
        return pos, [("".join(pattern), flags)]


@contextlib.contextmanager
def _no_default_whitespace():
    saved = "".join(pp.ParserElement.DEFAULT_WHITE_CHARS)
    pp.ParserElement.set_default_whitespace_chars("")
    try:
        yield
    finally:
        pp.ParserElement.set_default_whitespace_chars(saved)


def _unquote(text):
    body = text[1:-1] if len(text) > 1 and text.endswith('"') and not _ends_escaped(text) else text[1:]
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append(body[i + 1])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return from_utf16("".join(out))


def _ends_escaped(text):
    # '"a\"' ends with an escaped quote: the string is unterminated and runs to the end.
    backslashes = len(text) - 1 - len(text[:-1].rstrip("\\"))
    return backslashes % 2 == 1


def _comparison(coerce):
    def action(_text, _loc, tokens):
        op, raw = tokens[0], tokens[1]
        value = to_number(raw)
        if math.isnan(value):
            raise HardError("TypeError", "value must be a number")
        return nodes.Comparison(op, value, coerce)
    return action


def _regexp(_text, _loc, tokens):
    pattern, flags = tokens[0]
    try:
        return nodes.RegExp(from_utf16(pattern), flags)
    except ValueError as exc:
        raise HardError("SyntaxError", str(exc)) from None


def _classify(_text, _loc, tokens):
    word = from_utf16(tokens[0])
    if not math.isnan(to_number(word)):
        return nodes.NumberOrString(word)
    return nodes.make_glob(word)


def build(coerce=True):
    """The top-level parser: ``WS Term*`` followed by an end-position marker.

    Every parse action takes ``(text, loc, tokens)``: pyparsing then never probes arities,
    a probe whose shared state is not thread-safe.
    """
    with _no_default_whitespace():
        ws = pp.Optional(pp.Regex(f"[{JS_WHITESPACE}]+")).suppress()
        raw = pp.Regex(f"{RAW_CHAR_CLASS}+")
        glob_word = pp.Regex(f"(?:{RAW_CHAR_CLASS}|\\*)+")
        quoted = pp.Regex(r'"(?:\\[\s\S]|[^"\\])*(?:"|\Z)')
        name = (quoted.copy().set_parse_action(lambda s, loc, t: _unquote(t[0]))
                | raw.copy().set_parse_action(lambda s, loc, t: from_utf16(t[0])))
        term = pp.Forward()
        terms = pp.Group(pp.OneOrMore(term))
        group = (pp.Suppress("(") + ws + terms + pp.Suppress(")")).set_parse_action(
            lambda s, loc, t: nodes.make_and(list(t[0])))
        or_group = (pp.Suppress("|") + ws + pp.Suppress("(") + ws + terms + pp.Suppress(")")
                    ).set_parse_action(lambda s, loc, t: nodes.make_or(list(t[0])))
        negation = (pp.Suppress("!") + ws + term).set_parse_action(lambda s, loc, t: nodes.Not(t[0]))
        comparison = (pp.Regex(r"[<>]=?") + raw).set_parse_action(_comparison(coerce))
        prop = (name + ws + pp.Suppress(":") + ws + term).set_parse_action(
            lambda s, loc, t: nodes.Property(t[0], t[1]))
        truthy = (name + pp.Suppress("?")).set_parse_action(lambda s, loc, t: nodes.TruthyProperty(t[0]))
        value = (quoted.copy().set_parse_action(lambda s, loc, t: nodes.String(_unquote(t[0])))
                 | JsRegexLiteral().set_parse_action(_regexp)
                 | glob_word.copy().set_parse_action(_classify))
        term <<= (group | or_group | negation | comparison | prop | truthy | value) + ws
        end = pp.Empty().set_parse_action(lambda s, loc, t: _End(loc))
        top = ws + pp.ZeroOrMore(term) + end
    top.parse_with_tabs()
    top.streamline()
    return top
