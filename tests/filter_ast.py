"""Build filter nodes from the AST JSON of cm-cases.json (test helper)."""
import math

from xorest.filter import nodes


def number(value):
    if isinstance(value, str):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(value, value)
    return value


def build(ast, coerce=True):
    kind = ast["type"]
    if kind == "Null":
        return nodes.Null()
    if kind == "And":
        return nodes.And([build(c, coerce) for c in ast["children"]])
    if kind == "Or":
        return nodes.Or([build(c, coerce) for c in ast["children"]])
    if kind == "Not":
        return nodes.Not(build(ast["child"], coerce))
    if kind == "Property":
        return nodes.Property(ast["name"], build(ast["child"], coerce))
    if kind == "TruthyProperty":
        return nodes.TruthyProperty(ast["name"])
    if kind == "String":
        return nodes.String(ast["value"])
    if kind == "NumberOrString":
        return nodes.NumberOrString(ast["value"])
    if kind == "Number":
        return nodes.Number(number(ast["value"]))
    if kind == "GlobPattern":
        return nodes.make_glob(ast["value"])
    if kind == "RegExp":
        return nodes.RegExp(ast["source"], ast.get("flags", ""))
    if kind == "Comparison":
        return nodes.Comparison(ast["operator"], number(ast["value"]), coerce)
    raise ValueError(kind)
