"""Sort orders and cursors (pure logic; the API tests page through a live pool)."""
import random

import pytest

from xorest.errors import BadRequest
from xorest.services.ordering import SortOrder


def _objects(count=60, seed=3):
    rng = random.Random(seed)
    kinds = [lambda: rng.randint(-5, 5), lambda: rng.choice(["b", "A", "a", "é"]) * rng.randint(1, 3),
             lambda: rng.random() < 0.5, lambda: {"k": rng.randint(0, 3)}, lambda: None,
             lambda: "x" * 2000 + str(rng.randint(0, 9))]  # long values share a 256-char prefix
    objects = []
    for n in range(count):
        obj = {"id": f"{n:04d}", "nested": {"v": rng.choice(kinds)()}, "other": {"blob": "y" * 5000}}
        if rng.random() < 0.8:
            obj["v"] = rng.choice(kinds)()
        objects.append(obj)
    return objects


def _pages(order, objects, size):
    ordered, cursor, pages = order.sort(objects), None, []
    while True:
        page = order.after(ordered, cursor)[:size]
        if not page:
            return pages
        pages.append(page)
        cursor = order.cursor(page[-1])
        assert len(cursor) < 4096, len(cursor)  # fits the after= limit whatever the values


@pytest.mark.parametrize("text", ["v", "-v", "nested.v,-v", "other,v", "-other.blob,nested.v"])
def test_pages_follow_the_order_exactly_once(text):
    order, objects = SortOrder(text), _objects()
    pages = _pages(order, objects, 7)
    assert [o["id"] for page in pages for o in page] == [o["id"] for o in order.sort(objects)]
    assert sorted(o["id"] for page in pages for o in page) == sorted(o["id"] for o in objects)


def test_kinds_then_values():
    objects = [{"id": "1", "v": "b"}, {"id": "2", "v": 3}, {"id": "3"}, {"id": "4", "v": True},
               {"id": "5", "v": [1]}, {"id": "6", "v": "A"}, {"id": "7", "v": -1.5}, {"id": "8", "v": None}]
    assert [o["id"] for o in SortOrder("v").sort(objects)] == ["7", "2", "6", "1", "4", "5", "3", "8"]
    # reversed, but ties (missing and null) still go by id
    assert [o["id"] for o in SortOrder("-v").sort(objects)] == ["3", "8", "5", "4", "1", "6", "2", "7"]


@pytest.mark.parametrize("cursor", ["!!!", "W10", "WzEsMiwzXQ", "WyJ2IixbWzAsIngiXV0sIjEiXQ",
                                    "WyJ2IixbWzksMV1dLCIxIl0", "WyJ2IixbWzAsdHJ1ZV1dLCIxIl0"])
def test_malformed_cursors_are_400(cursor):
    # [] ; [1,2,3] ; ["v",[[0,"x"]],"1"] ; ["v",[[9,1]],"1"] ; ["v",[[0,true]],"1"]
    with pytest.raises(BadRequest):
        SortOrder("v").after(SortOrder("v").sort(_objects()), cursor)
