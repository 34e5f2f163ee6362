"""Filter tree nodes: ``match(value)``, canonical ``str()``, structural equality, AST JSON.

Each node compiles once into a plain closure (``self.match``), so evaluating a filter
over thousands of objects costs only function calls, no tree walking per attribute.
"""
import math
import operator

from . import regex as jsregex
from .jsvalues import (MISSING, format_string, is_number, number_to_string, to_number,
                       to_primitive_number, to_utf16, truthy, utf16_length, values_of)

__all__ = ["Node", "Null", "And", "Or", "Not", "Property", "TruthyProperty", "String",
           "NumberOrString", "Number", "GlobPattern", "RegExp", "Comparison", "get_property"]


def _container(value):
    return type(value) is list or type(value) is dict


def _some(on_string, on_other=None):
    """A matcher with complex-matcher's recursion through arrays and plain objects.

    :param on_string: predicate for string values (the common case, kept tight).
    :param on_other: predicate for numbers, booleans and null (``None``: never).
    """
    def match(value):
        kind = type(value)
        if kind is str:
            return on_string(value)
        if kind is list:
            for item in value:
                if match(item):
                    return True
            return False
        if kind is dict:
            for item in values_of(value):
                if match(item):
                    return True
            return False
        return on_other is not None and on_other(value)
    return match


def get_property(value, name):
    """``value[name]`` with JavaScript's own-property rules (no prototype members)."""
    kind = type(value)
    if kind is dict:
        return value.get(name, MISSING)
    if kind is list:
        if name == "length":
            return len(value)
        if name.isdigit() and (name == "0" or name[0] != "0") and int(name) < len(value):
            return value[int(name)]
        return MISSING
    if kind is str:
        if name == "length":
            return utf16_length(value)
        if name.isdigit() and (name == "0" or name[0] != "0"):
            units = to_utf16(value)
            index = int(name)
            return units[index] if index < len(units) else MISSING
        return MISSING
    return MISSING


class Node:
    """Base class: subclasses set ``self.match`` in ``__init__``."""

    def __eq__(self, other):
        return type(self) is type(other) and self._key() == other._key()

    def __hash__(self):
        return hash((type(self).__name__, self._key()))

    def __repr__(self):
        return f"{type(self).__name__}({str(self)!r})"

    def __str__(self):
        return self.to_string(False)

    def _key(self):
        raise NotImplementedError

    def to_string(self, nested):
        raise NotImplementedError

    def to_ast(self):
        raise NotImplementedError


class Null(Node):
    def __init__(self):
        self.match = lambda value: True

    def _key(self):
        return ()

    def to_string(self, nested):
        return ""

    def to_ast(self):
        return {"type": "Null"}


class And(Node):
    """Every child matches; ``And([x])`` is ``x`` (see :func:`make_and`)."""

    def __init__(self, children):
        self.children = tuple(children)
        matchers = tuple(c.match for c in self.children)

        def match(value):
            for matcher in matchers:
                if not matcher(value):
                    return False
            return True
        self.match = match

    def _key(self):
        return self.children

    def to_string(self, nested):
        text = " ".join(c.to_string(True) for c in self.children)
        return f"({text})" if nested else text

    def to_ast(self):
        return {"type": "And", "children": [c.to_ast() for c in self.children]}


class Or(Node):
    def __init__(self, children):
        self.children = tuple(children)
        matchers = tuple(c.match for c in self.children)

        def match(value):
            for matcher in matchers:
                if matcher(value):
                    return True
            return False
        self.match = match

    def _key(self):
        return self.children

    def to_string(self, nested):
        return "|(" + " ".join(c.to_string(True) for c in self.children) + ")"

    def to_ast(self):
        return {"type": "Or", "children": [c.to_ast() for c in self.children]}


def make_and(children):
    return children[0] if len(children) == 1 else And(children)


def make_or(children):
    return children[0] if len(children) == 1 else Or(children)


class Not(Node):
    def __init__(self, child):
        self.child = child
        inner = child.match
        self.match = lambda value: not inner(value)

    def _key(self):
        return (self.child,)

    def to_string(self, nested):
        return "!" + self.child.to_string(True)

    def to_ast(self):
        return {"type": "Not", "child": self.child.to_ast()}


class Property(Node):
    def __init__(self, name, child):
        self.name, self.child = name, child
        inner = child.match

        def match(value):
            if type(value) is dict:  # fast path for the usual case
                return inner(value.get(name, MISSING))
            if value is None or value is MISSING:
                return False
            return inner(get_property(value, name))
        self.match = match

    def _key(self):
        return (self.name, self.child)

    def to_string(self, nested):
        return format_string(self.name) + ":" + self.child.to_string(True)

    def to_ast(self):
        return {"type": "Property", "name": self.name, "child": self.child.to_ast()}


class TruthyProperty(Node):
    def __init__(self, name):
        self.name = name
        self.match = lambda value: value is not None and value is not MISSING and \
            truthy(get_property(value, name))

    def _key(self):
        return (self.name,)

    def to_string(self, nested):
        return format_string(self.name) + "?"

    def to_ast(self):
        return {"type": "TruthyProperty", "name": self.name}


class String(Node):
    """Case-insensitive substring of a string, searched recursively."""

    def __init__(self, value):
        self.value = value
        needle = value.lower()
        self.match = _some(lambda v: needle in v.lower())

    def _key(self):
        return (self.value,)

    def to_string(self, nested):
        return format_string(self.value)

    def to_ast(self):
        return {"type": "String", "value": self.value}


class NumberOrString(Node):
    """A number as written: equal to a number, or a substring of a string (the text)."""

    def __init__(self, text):
        self.value = text
        number = to_number(text)
        needle = text.lower()
        self.match = _some(lambda v: needle in v.lower(), lambda v: is_number(v) and v == number)

    def _key(self):
        return (self.value,)

    def to_string(self, nested):
        return self.value

    def to_ast(self):
        return {"type": "NumberOrString", "value": self.value}


class Number(Node):
    """Only built programmatically: equal to a number, searched in any object."""

    def __init__(self, value):
        self.value = float(value) if not isinstance(value, (int, float)) else value

        def match(v):
            if is_number(v) and v == self.value:
                return True
            if _container(v):
                return any(match(item) for item in values_of(v))
            return False
        self.match = match

    def _key(self):
        return (self.value,)

    def to_string(self, nested):
        return number_to_string(float(self.value))

    def to_ast(self):
        return {"type": "Number", "value": _ast_number(self.value)}


class GlobPattern(Node):
    def __init__(self, value):
        self.value = value
        self.glob = compiled = jsregex.compile_glob(value)
        self.match = _some(lambda v: compiled.matches(jsregex.canonicalize(v)))

    def _key(self):
        return (self.value,)

    def to_string(self, nested):
        return self.value

    def to_ast(self):
        return {"type": "GlobPattern", "value": self.value}


def make_glob(value):
    """``new GlobPattern(s)`` returns a String when ``s`` has no ``*``."""
    return GlobPattern(value) if "*" in value else String(value)


def _v8_source(pattern):
    """``RegExp.prototype.source`` as V8 writes it."""
    if pattern == "":
        return "(?:)"
    out, in_class, i = [], False, 0
    names = {"\n": "\\n", "\r": "\\r", "\u2028": "\\u2028", "\u2029": "\\u2029"}
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(names[nxt] if nxt in names else "\\" + nxt)
            i += 2
            continue
        if c in names:
            out.append(names[c])
        elif c == "/" and not in_class:
            out.append("\\/")
        else:
            if c == "[":
                in_class = True
            elif c == "]":
                in_class = False
            out.append(c)
        i += 1
    return "".join(out)


class RegExp(Node):
    def __init__(self, pattern, flags=""):
        self.pattern, self.flags = pattern, flags
        self.compiled = compiled = jsregex.compile_js(pattern, flags)
        self.match = _some(lambda v: jsregex.search(compiled, v))

    def _key(self):
        return (self.source, self.flags)

    @property
    def source(self):
        return _v8_source(self.pattern)

    def to_string(self, nested):
        return f"/{self.source}/{self.flags}"

    def to_ast(self):
        return {"type": "RegExp", "source": self.source, "flags": self.flags}


_OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


class Comparison(Node):
    """``> >= < <=`` against a number.

    :param coerce: ``True`` (default) compares any value as JavaScript would (complex-matcher
        1.x, what current Xen Orchestra uses); ``False`` only numbers (0.7.0).
    """

    def __init__(self, op, value, coerce=True):
        if not is_number(value) or math.isnan(value):
            raise TypeError("value must be a number")
        self.operator, self.value, self.coerce = op, value, coerce
        compare = _OPERATORS[op]
        if coerce:
            self.match = lambda v: v is not MISSING and compare(to_primitive_number(v), value)
        else:
            self.match = lambda v: is_number(v) and compare(v, value)

    def _key(self):
        return (self.operator, self.value)

    def to_string(self, nested):
        return self.operator + number_to_string(float(self.value))

    def to_ast(self):
        return {"type": "Comparison", "operator": self.operator, "value": _ast_number(self.value)}


def _ast_number(value):
    if isinstance(value, float):
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        if value == int(value):
            return int(value)
    return value
