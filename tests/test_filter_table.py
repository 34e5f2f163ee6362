"""Column-by-column selection (xorest.filter.table) answers exactly what ``node.match``
answers object by object: random filters over random JSON values, the golden objects with
the filters pasted from Xen Orchestra, each with values grouped, never grouped, and as the
table decides, over every row and over a subset of rows."""
import copy
import random

import pytest

from xorest.filter import FilterError, RegexTimeout, evaluation_budget, parse
from xorest.filter import table as tables
from xorest.filter.table import Table, select

from . import golden
from .test_filter_differential import rand_filter, rand_value
from .test_golden_filters import _filters

MODES = {"as decided": {},
         "always grouped": {"_SPREAD_SHARE": 1, "_MIN_GROUPS": 10**9},
         "never grouped": {"_SPREAD_SHARE": 10**9, "_MIN_GROUPS": 0, "_INDEX_AFTER": 0}}


def _expected(node, objects, rows=None):
    return [i for i, obj in enumerate(objects) if (rows is None or i in rows) and node.match(obj)]


def _check(node, objects, text, rng):
    table = Table(objects)  # a fresh table per mode: columns keep their grouping decision
    assert select(node, table) == _expected(node, objects), text
    rows = {i for i in range(len(objects)) if rng.random() < 0.4}
    assert select(node, table, rows) == _expected(node, objects, rows), text
    few = set(rng.sample(range(len(objects)), min(3, len(objects))))
    assert select(node, table, few) == _expected(node, objects, few), text


@pytest.mark.parametrize("mode", MODES)
def test_random_filters_over_random_values(mode, monkeypatch):
    for name, value in MODES[mode].items():
        monkeypatch.setattr(tables, name, value)
    rng = random.Random(20261207)
    distinct = [rand_value(rng) for _ in range(120)]
    # repeated values (equal, not identical) so that grouping has something to group
    objects = distinct + [copy.deepcopy(rng.choice(distinct)) for _ in range(240)]
    rng.shuffle(objects)
    checked = 0
    while checked < 1500:
        text = rand_filter(rng)
        try:
            node = parse(text, coerce=rng.random() < 0.5)
        except FilterError:
            continue
        _check(node, objects, text, rng)
        checked += 1


@pytest.mark.parametrize("mode", MODES)
def test_golden_objects_and_pasted_filters(mode, monkeypatch):
    for name, value in MODES[mode].items():
        monkeypatch.setattr(tables, name, value)
    served, _ = golden.map_records()
    sides = {name: ([served[name][k] for k in sorted(served[name])], [])
             for name in served if served[name]}
    reference = golden.golden_collections()
    for name in sides:
        sides[name] = (sides[name][0], [reference[name][k] for k in sorted(reference.get(name, {}))])
    rng = random.Random(7)
    cases = _filters({n: s for n, s in sides.items() if s[1]}, count=400)
    assert len(cases) == 400
    for name, text in cases:
        node = parse(text)
        _check(node, sides[name][0], text, rng)
        _check(node, sides[name][1], text, rng)


def test_regexes_keep_their_time_budget():
    objects = [{"name_label": "a" * 24 + str(i)} for i in range(200)]  # distinct: read one by one
    node = parse("name_label:/[]|^(a|a)+$/")  # exponential backtracking on every row
    with pytest.raises(RegexTimeout):
        with evaluation_budget(0.2):
            select(node, Table(objects))


def test_a_property_is_false_where_its_path_stops():
    objects = [{"a": None}, {}, {"a": {"b": 1}}, {"a": {}}, {"a": "text"}, {"a": [1, 2]}]
    for text in ("a:!b:1", "a:b:!1", "!a:b:1", "a:!b?", "a:length:2", "a:0:1", "a:b?"):
        node = parse(text)
        assert select(node, Table(objects)) == _expected(node, objects), text


@pytest.mark.parametrize("mode", MODES)
def test_updated_tables_answer_as_new_ones(mode, monkeypatch):
    """A table patched at the rows that changed answers as a table built afresh, whatever
    its columns had learnt (groups, spread columns, indexes) before the change."""
    for name, value in MODES[mode].items():
        monkeypatch.setattr(tables, name, value)
    rng = random.Random(11)
    objects = [rand_value(rng) for _ in range(40)]
    objects = [copy.deepcopy(rng.choice(objects)) for _ in range(300)]
    filters = []
    while len(filters) < 60:
        try:
            filters.append(parse(rand_filter(rng)))
        except FilterError:
            pass
    table = Table(objects)
    for _ in range(25):
        for node in rng.sample(filters, 12):  # read (and group, index) some columns
            assert select(node, table) == _expected(node, objects)
        changed = rng.sample(range(len(objects)), rng.choice([1, 3, 30]))
        objects = list(objects)
        for row in changed:
            objects[row] = rand_value(rng) if rng.random() < 0.5 else copy.deepcopy(rng.choice(objects))
        table = table.updated(objects, changed)
        for node in filters:
            assert select(node, table) == _expected(node, objects), str(node)


def test_the_service_patches_the_table_of_a_changed_collection(monkeypatch):
    """Listings keep one table per collection; a new state with the same ids patches it
    (only replaced objects are read again), other states are read afresh."""
    from xorest.services.collections import Tables

    patched = []
    real = Table.updated
    monkeypatch.setattr(Table, "updated", lambda self, *args: patched.append(args[1]) or real(self, *args))
    node = parse("power_state:running CPUs:number:>=2")
    state = {f"{i:04x}": {"id": f"{i:04x}", "power_state": "Running" if i % 3 else "Halted",
                          "CPUs": {"number": i % 4}} for i in range(40)}
    tables_ = Tables()
    table = tables_.get("vms", state)
    assert tables_.get("vms", state) is table
    assert select(node, table) == _expected(node, list(state.values()))
    state = dict(state, **{"0004": {"id": "0004", "power_state": "Halted", "CPUs": {"number": 3}},
                           "0009": {"id": "0009", "power_state": "Running", "CPUs": {"number": 1}}})
    table = tables_.get("vms", state)
    assert patched == [[4, 9]]
    assert select(node, table) == _expected(node, list(state.values()))
    state = dict(state, **{"0100": {"id": "0100", "power_state": "Running", "CPUs": {"number": 2}}})
    table = tables_.get("vms", state)
    assert patched == [[4, 9]] and len(table) == 41  # an id came: read afresh
    assert select(node, table) == _expected(node, list(state.values()))
