"""Xen Orchestra's live-filter language (npm ``complex-matcher``), on pyparsing.

``parse(text)`` returns a node whose ``match(value)`` takes any JSON value and whose
``str()`` is the canonical text; invalid input raises :class:`FilterError` with the
reference's message and UTF-16 ``position``.  Semantics are those of complex-matcher 1.x,
which current Xen Orchestra uses (comparisons coerce their operand like JavaScript);
``parse(text, coerce=False)`` gives 0.7.0's number-only comparisons.

Deliberate differences from the JavaScript reference:

- Inherited prototype members are not properties: ``constructor?``, ``toString?``,
  ``tags:map?`` and ``__proto__:...`` see only the JSON object's own keys.
- Comparisons whose number is 1e21 or more print as ``>1e+21`` like JavaScript, which does
  not parse back (the reference has the same round-trip failure).
- Regular expressions run on Python's ``regex`` engine after translation of JavaScript's
  syntax (``$``, ``.``, ``\\d \\w \\s \\b``, back-references versus octal escapes, named
  groups, identity escapes); with the ``i`` flag, case folding is Unicode simple folding
  rather than JavaScript's ``Canonicalize`` (differs for a few letters such as the Kelvin
  sign, dotted capital I and sharp s).  Globs follow ``Canonicalize`` exactly.
- Limits instead of crashes: filters longer than ``MAX_LENGTH`` characters, nesting deeper
  than Python's stack allows, and regexes longer than 1000 characters give a
  ``FilterError``; regex evaluation shares a time budget (see :func:`evaluation_budget`).
- Astral letters in names and quoted strings are quoted by ``str()`` when they are not raw,
  so the canonical text always parses back (the reference prints cased astral letters raw).
"""
import functools

import pyparsing as pp

from ..errors import FilterError
from . import nodes
from .grammar import HardError, build
from .jsvalues import to_utf16
from .regex import RegexTimeout, budget as evaluation_budget

__all__ = ["parse", "FilterError", "RegexTimeout", "evaluation_budget", "nodes", "MAX_LENGTH"]

MAX_LENGTH = 4096
# Built once at import: building lazily from several request threads would race.
_PARSERS = {True: build(True), False: build(False)}


@functools.lru_cache(maxsize=512)
def parse(text, coerce=True):
    """Parse a filter into a node tree (cached: nodes are immutable).

    :raises FilterError: with ``message`` and ``position`` for any invalid filter.
    """
    if not isinstance(text, str):
        raise FilterError("the filter must be a string")
    if len(text) > MAX_LENGTH:
        raise FilterError(f"the filter is longer than {MAX_LENGTH} characters", position=MAX_LENGTH)
    units = to_utf16(text)
    try:
        result = _PARSERS[bool(coerce)].parse_string(units, parse_all=False)
    except HardError as exc:
        raise FilterError(str(exc)) from None
    except RecursionError:
        raise FilterError("the filter is nested too deeply") from None
    except pp.ParseBaseException as exc:  # the top rule cannot fail, but be safe
        raise FilterError(f"parse error: expected end of input at position {exc.loc}", exc.loc) from None
    *terms, end = result
    if end.loc != len(units):
        raise FilterError(f"parse error: expected end of input at position {end.loc}", end.loc)
    if not terms:
        return nodes.Null()
    return nodes.make_and(terms)
