"""Every fact of cm-cases.json (live-filter.md §10), against xorest.filter."""
import datetime
import json
import os

import pytest

from xorest.filter import FilterError, parse
from xorest.filter.clauses import property_clauses_strings, set_property_clause

from .filter_ast import build

CASES_FILE = os.path.join(os.path.dirname(__file__), "data", "cm-cases.json")
with open(CASES_FILE, encoding="utf-8") as fh:
    CASES = json.load(fh)["cases"]

CURRENT, LEGACY = (1, 1, 1), (0, 7, 0)


def _version(text):
    return tuple(int(p) for p in text.split("."))


def _in_range(version, spec):
    for part in spec.split():
        for op in (">=", "<=", ">", "<", ""):
            if part.startswith(op):
                bound = _version(part[len(op):])
                break
        ok = {">=": version >= bound, "<=": version <= bound, ">": version > bound,
              "<": version < bound, "": version == bound}[op]
        if not ok:
            return False
    return True


def _semantics(case):
    """``coerce`` flag to run a case with, or a skip reason."""
    if _in_range(CURRENT, case["versions"]):
        return True
    if _in_range(LEGACY, case["versions"]):
        return False
    pytest.skip(f"fact of complex-matcher {case['versions']} only (xorest follows 0.7.0/1.x)")


def _value(value):
    if isinstance(value, dict) and set(value) == {"$date"}:
        return datetime.datetime.fromtimestamp(value["$date"] / 1000, datetime.timezone.utc)
    if isinstance(value, dict):
        return {k: _value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_value(v) for v in value]
    return value


def _check_error(case, coerce):
    with pytest.raises(FilterError) as info:
        parse(case["filter"], coerce)
    message = str(info.value)
    if case["error_type"] == "SyntaxError":
        prefix = case["error"].split(":")[0]
        assert message.startswith(prefix), message
    else:
        assert message == case["error"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case):
    coerce = _semantics(case)
    kind = case["kind"]
    if kind == "match":
        assert parse(case["filter"], coerce).match(_value(case["value"])) is case["expected"]
    elif kind == "node_match":
        assert build(case["node"], coerce).match(_value(case["value"])) is case["expected"]
    elif kind == "parse":
        assert parse(case["filter"], coerce).to_ast() == case["ast"]
    elif kind == "serialize":
        node = parse(case["filter"], coerce) if "filter" in case else build(case["node"], coerce)
        assert str(node) == case["expected"]
    elif kind == "eval":
        if "error" in case:
            return _check_error(case, coerce)
        node = parse(case["filter"], coerce)
        if "ast" in case:
            assert node.to_ast() == case["ast"]
        if "canonical" in case:
            assert str(node) == case["canonical"]
            if case.get("roundtrip_ok"):
                assert parse(str(node), coerce) == node
        for value, expected in zip(case.get("values", []), case.get("expected", [])):
            assert node.match(_value(value)) is expected, value
    elif kind == "property_clauses":
        assert property_clauses_strings(parse(case["filter"], coerce)) == case["expected"]
    elif kind == "set_property_clause":
        node = None if case["filter"] is None else parse(case["filter"], coerce)
        result = set_property_clause(node, case["name"], case["child"])
        assert (None if result is None else str(result)) == case["expected"]
    elif kind == "node_construct":
        build(case["node"], coerce)
    elif kind == "node_construct_error":
        with pytest.raises(TypeError, match=case["error"]):
            build(case["node"], coerce)
    else:
        pytest.fail(f"unknown kind {kind}")
