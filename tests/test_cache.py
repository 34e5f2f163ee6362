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


def _split(collections, first):
    """``collections`` as two stages: the collections named in ``first``, then the others."""
    return ({name: objects for name, objects in collections.items() if name in first},
            {name: objects for name, objects in collections.items() if name not in first})


def test_a_new_pool_loaded_in_stages_is_readable_stage_by_stage():
    other, first = _objects("b", 300, 1), _objects("a", 500, 2)
    staged, whole = ObjectCache(), ObjectCache()
    for cache in (staged, whole):
        cache.apply("b", _flat(other), (), reset=True)
    whole.load_pool("a", first)
    vms, rest = _split(first, {"vms"})
    before = staged.snapshot().generation
    staged.load_pool("a", vms, final=False)
    # the first stage's objects are there at once, beside the other pool's
    assert _state(staged)["vms"] == sorted({**other["vms"], **vms["vms"]}.items())
    assert _state(staged)["vbds"] == list(other["vbds"].items())
    staged.load_pool("a", rest)
    assert _state(staged) == _state(whole)
    _, changed, removed = staged.changes_since(before)
    assert changed == {key: name for key, (name, _) in _flat(first).items()} and not removed
    # a reload after it replaces the pool's objects as a whole load does
    again = _objects("a", 400, 3)
    staged.load_pool("a", again)
    whole.load_pool("a", again)
    assert _state(staged) == _state(whole)


def test_a_reload_in_stages_changes_nothing_until_its_last_stage():
    first, again = _objects("a", 500, 2), _objects("a", 400, 3)
    staged, whole = ObjectCache(), ObjectCache()
    for cache in (staged, whole):
        cache.load_pool("a", first)
    vms, rest = _split(again, {"vms"})
    before = _state(staged)
    staged.load_pool("a", vms, final=False)
    assert _state(staged) == before  # no VBD of the pool gone meanwhile
    staged.load_pool("a", rest)
    whole.load_pool("a", again)
    assert _state(staged) == _state(whole)


def test_an_abandoned_load_in_stages_leaves_nothing_of_itself():
    other, first, again = _objects("b", 300, 1), _objects("a", 500, 2), _objects("a", 400, 3)
    cache = ObjectCache()
    cache.apply("b", _flat(other), (), reset=True)
    before = _state(cache)
    cache.load_pool("a", _split(first, {"vms"})[0], final=False)
    cache.abandon_load("a")  # a new pool's first stage: taken out again
    assert _state(cache) == before and cache.pool_keys() == {"b"}
    cache.load_pool("a", first)
    loaded = _state(cache)
    cache.load_pool("a", _split(again, {"vms"})[0], final=False)
    cache.abandon_load("a")  # a reload's: the pool keeps what it had
    assert _state(cache) == loaded
    cache.load_pool("a", again)  # and the next load is a whole one again
    whole = ObjectCache()
    whole.apply("b", _flat(other), (), reset=True)
    whole.load_pool("a", again)
    assert _state(cache) == _state(whole)


def test_a_pool_s_whole_state_supersedes_a_load_in_stages():
    """A worker that joined midway gets the pool's snapshot (a reset batch) after the load:
    a stage it got before it is not kept to join the next load's."""
    first, again = _objects("a", 500, 2), _objects("a", 400, 3)
    cache, whole = ObjectCache(), ObjectCache()
    cache.load_pool("a", _split(first, {"vms"})[1], final=False)
    cache.apply("a", _flat(first), (), reset=True)
    cache.load_pool("a", again)
    whole.load_pool("a", again)
    assert _state(cache) == _state(whole)
