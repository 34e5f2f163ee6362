"""Log output that cannot be forged: control characters in messages are escaped.

Messages carry text xorest does not control (request paths, pool object names, errors
quoted from pools).  A newline in such text would start what looks like a new log
record; an escape sequence could rewrite a terminal.  Every handler xorest sets up
formats through :class:`SafeFormatter`: a record is one line, and the lines of a
traceback are indented, so nothing but a real record starts a line.  XAPI session
references are redacted too (see :func:`xorest.errors.redact`).
"""
import logging
import re

from .errors import redact

#: C0 controls, DEL, C1 controls and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _escape_one(match):
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape_controls(text):
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``...)."""
    return _CONTROL.sub(_escape_one, text)


class SafeFormatter(logging.Formatter):
    """A formatter whose records are one line each; tracebacks follow, indented."""

    def formatMessage(self, record):  # noqa: N802 (logging's name)
        return escape_controls(redact(super().formatMessage(record)))

    def formatException(self, ei):  # noqa: N802
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info):  # noqa: N802
        return _indented(super().formatStack(stack_info))


def _indented(text):
    lines = text.split("\n")
    return "\n".join("    " + escape_controls(redact(line)) for line in lines)


def make_safe(handlers):
    """Give every handler in ``handlers`` a :class:`SafeFormatter` with its own format."""
    for handler in handlers:
        current = handler.formatter
        fmt = current._fmt if current is not None else None  # noqa: SLF001 (no public accessor)
        datefmt = current.datefmt if current is not None else None
        handler.setFormatter(SafeFormatter(fmt, datefmt))


def configure(level=logging.WARNING):
    """Root logging for the CLI and the server: one stderr handler, safe formatting."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        handler.setFormatter(SafeFormatter(FORMAT))
    root.setLevel(level)
