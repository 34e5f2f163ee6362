"""The object cache: a pool's whole state taken at once (load_pool) is what the general
batch path makes of it, beside other pools' objects and over a pool's older state."""
import random

from xorest.cache import ObjectCache


def _objects(pool, count, seed):
    rng = random.Random(seed)
    collections = {}
    for number in range(count):
        name = rng.choice(["vms", "vbds", "srs"])
        key = f"{rng.getrandbits(64):016x}"
        collections.setdefault(name, {})[key] = {"id": key, "n": number, "$pool": pool}
    return {name: dict(sorted(objects.items())) for name, objects in collections.items()}


def _flat(collections):
    return {key: (name, obj) for name, objects in collections.items() for key, obj in objects.items()}


def _state(cache):
    return {name: list(objects.items()) for name, objects in cache.snapshot().collections.items() if objects}


def test_a_pool_loaded_whole_is_what_a_reset_batch_makes_of_it():
    other, first, again = _objects("b", 300, 1), _objects("a", 500, 2), _objects("a", 400, 3)
    loaded, applied = ObjectCache(), ObjectCache()
    for cache in (loaded, applied):
        cache.apply("b", _flat(other), (), reset=True)
    for collections in (first, again):  # a new pool beside another one's objects, then its reload
        before = loaded.snapshot().generation
        loaded.load_pool("a", collections)
        applied.apply("a", _flat(collections), (), reset=True)
        assert _state(loaded) == _state(applied)  # same objects, each collection in id order
        snapshot, changed, removed = loaded.changes_since(before)
        assert changed == {key: name for key, (name, _) in _flat(collections).items()}
        assert (snapshot.generation, loaded.pool_keys()) == (before + 1, {"a", "b"})
    assert removed == {key: name for key, (name, _) in _flat(first).items()}
    loaded.remove_pool("a")
    assert _state(loaded) == {name: list(objects.items()) for name, objects in other.items()}
