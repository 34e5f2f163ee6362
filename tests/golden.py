"""Xen Orchestra's golden objects (``tests/data/xo-golden/``, a copy of the team's reference
data) and xorest's mapping of the same records, per REST collection, for the differential
tests.

The records go through ``objects.trim`` then ``objects.to_xo`` as ``PoolConnection.on_batch``
feeds them; the golden side is grouped into REST collections by the data set's README.
"""
import functools
import json
import os

import zstandard

from xorest import objects

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "xo-golden")


@functools.lru_cache(maxsize=None)
def _load(name):
    with open(os.path.join(FOLDER, name + ".zst"), "rb") as stream:
        return json.loads(zstandard.ZstdDecompressor().decompressobj().decompress(stream.read()))


def records():
    """``{XAPI class: {ref: record}}`` of the golden pool."""
    return _load("records.json")


def xo_objects():
    """``{XO type: {id: object}}``: what Xen Orchestra's mapping made of :func:`records`."""
    return _load("xo-objects.json")


def map_records(classes=None):
    """xorest's objects of the golden records, ``{collection: {id: object}}``, and the
    objects of types without a collection, ``{type: {id: object}}``.

    :param classes: only these XAPI classes (default: all of them).
    """
    pool = {}
    for cls, by_ref in records().items():
        if classes is None or cls in classes:
            for ref, record in by_ref.items():
                pool[ref] = (cls, objects.trim(cls, record))
    return map_pool(pool)


def map_pool(pool):
    """Map ``ref -> (class, record)`` as ``on_batch`` does after a full load."""
    pool_uuid = next(record["uuid"] for cls, record in pool.values() if cls == "pool")
    context = objects.Context(pool, pool_uuid)
    served, other = {}, {}
    for ref, (cls, record) in pool.items():
        obj = objects.to_xo(cls, ref, record, context)
        if obj is None:
            continue
        collection = objects.collection_of(obj)
        target = served.setdefault(collection, {}) if collection else other.setdefault(obj["type"], {})
        assert obj["id"] not in target, f"two objects with id {obj['id']}"
        target[obj["id"]] = obj
    return served, other


def golden_collections():
    """``{collection: {id: object}}`` of Xen Orchestra's objects, for every collection
    xorest serves (README: ``messages`` leave the alarms out, ``alarms`` are the alarm
    objects, ``xapi-tasks`` are XO's ``task`` objects)."""
    golden = xo_objects()
    alarms = golden.get("alarm", {})
    result = {}
    for name, xo_type in objects.COLLECTIONS.items():
        if name == "alarms":
            result[name] = dict(alarms)
        elif name == "messages":
            result[name] = {k: v for k, v in golden.get("message", {}).items() if k not in alarms}
        else:
            result[name] = dict(golden.get(xo_type, {}))
    return result


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def differences(mine, theirs, path=""):
    """Every difference between two JSON values, as ``(path, kind, mine, theirs)``.

    A key present on one side only is a difference (``null`` against absent too);
    numbers compare by value (``1`` equals ``1.0``), lists in order, booleans are not
    numbers.  Yields nothing when equal.
    """
    if isinstance(mine, dict) and isinstance(theirs, dict):
        for key in mine:
            if key not in theirs:
                yield f"{path}.{key}", "extra", mine[key], None
        for key in theirs:
            if key not in mine:
                yield f"{path}.{key}", "missing", None, theirs[key]
            else:
                yield from differences(mine[key], theirs[key], f"{path}.{key}")
    elif isinstance(mine, list) and isinstance(theirs, list):
        if len(mine) != len(theirs):
            yield path, "length", mine, theirs
        else:
            for i, (a, b) in enumerate(zip(mine, theirs)):
                yield from differences(a, b, f"{path}[{i}]")
    elif _is_number(mine) and _is_number(theirs):
        if mine != theirs:
            yield path, "value", mine, theirs
    elif type(mine) is not type(theirs) or mine != theirs:
        yield path, "value", mine, theirs


def leaves(value):
    """How many scalar values (and empty containers) a JSON value holds."""
    if isinstance(value, dict):
        return sum(leaves(v) for v in value.values()) or 1
    if isinstance(value, list):
        return sum(leaves(v) for v in value) or 1
    return 1
