"""Xen Orchestra's helpers for property clauses (used by its UI, covered by the reference tests)."""
import re

from .nodes import And, Or, Property, RegExp, String, make_and

_LODASH_SPECIALS = re.compile(r"[\\^$.*+?()[\]{}|]")


def _escape_regexp(text):
    return _LODASH_SPECIALS.sub(lambda m: "\\" + m.group(), text)


def _strings(node):
    if isinstance(node, String):
        return [node.value]
    if isinstance(node, RegExp):
        source = node.source
        if len(source) >= 2 and source.startswith("^") and source.endswith("$"):
            inner = source[1:-1]
            literal = re.sub(r"\\(.)", r"\1", inner)
            if _escape_regexp(literal) == inner:
                return [literal]
        return []
    if isinstance(node, Or):
        return [s for child in node.children for s in _strings(child)]
    return []


def property_clauses_strings(node):
    """``{name: [strings]}`` of the top-level property clauses (``getPropertyClausesStrings``)."""
    children = node.children if isinstance(node, And) else (node,)
    result = {}
    for child in children:
        if isinstance(child, Property):
            result.setdefault(child.name, []).extend(_strings(child.child))
    return result


def set_property_clause(node, name, child):
    """Replace the top-level clauses on ``name`` with ``name:child`` (``setPropertyClause``).

    ``child`` may be a node, a string (a String node) or ``None`` (only remove).
    """
    prop = None
    if child is not None:
        prop = Property(name, String(child) if isinstance(child, str) else child)
    if node is None:
        return prop
    children = list(node.children) if isinstance(node, And) else [node]
    children = [c for c in children if not (isinstance(c, Property) and c.name == name)]
    if prop is not None:
        children.append(prop)
    return make_and(children) if children else And(())
