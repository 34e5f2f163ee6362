"""One pools daemon per ``xorest serve`` instance: the instance's only XAPI event session
per pool, feeding every worker's cache; a restarted worker gets the pools from it, not
from XAPI; a restarted daemon does not take the workers' objects away meanwhile."""
import json
import os
import signal
import threading
import time

import psutil
import pytest
import requests

from .conftest import Gateway, sim_admin, start_sim
from .management import until
from .test_sim import JsonRpc


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    sim = start_sim(tmp_path_factory.mktemp("poold-sim"), "--vms", "30", "--seed", "5")
    yield sim
    sim.stop()


def _state(sim):
    return sim_admin(sim.url, "state")


def _full_loads(state):
    """How many times the pool sent all its VMs (each watched class comes once per load)."""
    return state["full_loads"].get("vm", 0)


def _every_worker_answers(gw, check, tries=12):
    """``check(response)`` holds for several answers in a row (they land on any worker)."""
    return all(check(gw.get("/rest/v0/vms?fields=name_label")) for _ in range(tries))


def test_one_event_session_per_pool_whatever_the_workers(pool, tmp_path):
    before = _state(pool)
    gw = Gateway(tmp_path, pool.url, workers=3)
    try:
        state = _state(pool)
        assert state["event_sessions"] - before["event_sessions"] == 1
        assert _full_loads(state) - _full_loads(before) == 1
        # the daemon's loader asks for the classes in groups: still each class once
        sent = {cls: times - before["full_loads"].get(cls, 0) for cls, times in state["full_loads"].items()}
        assert set(sent.values()) == {1} and {"vm", "vbd", "host", "pool"} <= set(sent)
        # every worker serves the pool, and follows its changes
        rpc = JsonRpc(pool.url)
        vm = next(r for r, v in rpc("VM.get_all_records").items()
                  if not (v["is_a_template"] or v["is_control_domain"] or v["is_a_snapshot"]))
        rpc("VM.set_name_label", vm, "fed to every worker")
        until(lambda: _every_worker_answers(gw, lambda r: "fed to every worker" in r.text), "the change everywhere")
    finally:
        gw.stop()
    # without the daemon, each worker watches for itself (as before)
    before = _state(pool)
    gw = Gateway(tmp_path, pool.url, name="no-daemon", workers=3, env={"XOREST_POOLS_DAEMON": "false"})
    try:
        assert _full_loads(_state(pool)) - _full_loads(before) == 3
        assert gw.daemon() is None
    finally:
        gw.stop()


def test_a_restarted_worker_gets_the_pools_from_the_daemon(pool, tmp_path):
    gw = Gateway(tmp_path, pool.url, workers=2)
    try:
        loads = _full_loads(_state(pool))
        killed = gw.workers()[0]
        os.kill(killed.pid, signal.SIGKILL)
        until(lambda: len(gw.workers()) == 2 and killed.pid not in {w.pid for w in gw.workers()},
               "gunicorn started another worker")
        vms = len(gw.get("/rest/v0/vms").json())
        until(lambda: _every_worker_answers(gw, lambda r: len(r.json()) == vms), "the new worker serving the VMs")
        assert _full_loads(_state(pool)) == loads  # not one more load from the pool
    finally:
        gw.stop()


def test_a_restarted_daemon_keeps_the_workers_serving(pool, tmp_path):
    gw = Gateway(tmp_path, pool.url, workers=2)
    try:
        vms = gw.get("/rest/v0/vms?fields=name_label").json()
        daemon = gw.daemon()
        daemon.kill()
        # meanwhile, the workers answer from what they have, and say the pool is not followed
        for _ in range(10):
            answer = gw.get("/rest/v0/vms?fields=name_label")
            assert answer.status_code == 200 and len(answer.json()) == len(vms)
        until(lambda: getattr(gw.daemon(), "pid", daemon.pid) != daemon.pid, "the daemon started again")
        until(lambda: all(gw.get("/rest/v0/servers?fields=status").json()[0]["status"] == "connected"
                           for _ in range(6)), "every worker following the pool again")
        rpc = JsonRpc(pool.url)
        vm = next(r for r, v in rpc("VM.get_all_records").items()
                  if not (v["is_a_template"] or v["is_control_domain"] or v["is_a_snapshot"]))
        rpc("VM.set_name_label", vm, "after the daemon's restart")
        until(lambda: _every_worker_answers(gw, lambda r: "after the daemon's restart" in r.text),
               "changes flowing again")
    finally:
        gw.stop()
    assert not os.path.exists(gw.env.get("XOREST_POOLS_SOCKET", "/nonexistent"))


def test_the_daemon_ends_with_its_instance(pool, tmp_path):
    gw = Gateway(tmp_path, pool.url, workers=1)
    daemon, workers = gw.daemon(), gw.workers()  # (once the master is gone, they are nobody's children)
    assert workers
    os.kill(gw.proc.process.pid, signal.SIGKILL)  # the master, killed: no clean-up of its own
    for worker in workers:
        worker.kill()
    until(lambda: not daemon.is_running() or daemon.status() == psutil.STATUS_ZOMBIE, "the daemon stopped")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(gw.url + "/rest/v0", timeout=5)


def test_the_isolated_load_sends_objects_first_vms_before_the_rest_and_a_state_with_shared_strings(pool, tmp_path):
    """The loader child hands the objects over before the mapping's state (the workers start
    on them meanwhile), the VMs in a stage of their own before the others, and the state it
    sends repeats no text: equal strings are one object."""
    from xorest import config as settings
    from xorest.services import firstload, poolload

    import pickle

    received = []
    state, token, count = poolload.load({"url": pool.url, "username": "root", "password": "password"},
                                        settings.load({"data_dir": str(tmp_path)}, environ={}), "server-1",
                                        received.append)
    assert len(received) == 2 and count > 0 and token
    (kind, key, vm_parts, last), rest = pickle.loads(received[0]), pickle.loads(received[1])
    assert (kind, key, last) == ("load", "server-1", False) and rest[:2] == ("load", "server-1") and rest[3]
    first = firstload.decode_objects(vm_parts)  # the VMs come first, on their own
    assert len(first["vms"]) == 30 and set(first) == {"vms"}
    rest = firstload.decode_objects(rest[2])
    assert {"vbds", "vdis", "hosts", "srs", "vm-templates", "vm-controllers"} <= set(rest) and "vms" not in rest
    records, dependents, id_of, _ = state
    texts = {}
    for ref, (_cls, record) in records.items():
        assert texts.setdefault(ref, ref) is ref, ref  # one object per text, keys included
        for value in record.values():
            if isinstance(value, str) and value.startswith("OpaqueRef:"):
                assert texts.setdefault(value, value) is value, value
    assert len(texts) > 20
    by_uuid = dependents[0]
    assert all(texts.setdefault(ref, ref) is ref for ref in [*by_uuid.values(), *id_of])


class _Recorder:
    """A stand-in for the feed: what a pool connection hands over, in order."""

    def __init__(self):
        self.calls = []

    def publish(self, payload):
        self.calls.append("publish")

    def apply(self, key, upserts, deletes=(), reset=False):
        self.calls.append("apply")

    def applied(self, key, token):
        self.calls.append("applied")

    def remove_pool(self, key):
        self.calls.append("remove_pool")


def _loaders():
    """This process's pool loader children (not ones other tests left as zombies)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "xorest.services.poolload" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.Error:
            pass
    return found


def _alive(process):
    """Running, and not a zombie (an orphan waits for init to reap it)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_connection_stopped_while_its_pool_loads_leaves_nothing_behind(pool, tmp_path):
    """Stopping a pool's connection (its server removed, disconnected or changed) midway
    through its first load kills the loader, and nothing of that load, nor any batch,
    reaches the workers after the pool's removal."""
    from xorest import config as settings
    from xorest.services.pools import PoolConnection

    sim_admin(pool.url, "faults", {"latency": 6.0})  # the loader's calls take a while
    feed = _Recorder()
    conn = PoolConnection({"id": "server-1", "url": pool.url, "username": "root", "password": "password"}, feed,
                          settings.load({"data_dir": str(tmp_path)}, environ={}), isolated_load=True)
    try:
        conn.start()
        loader = until(_loaders, "the loader process started")[0]
        fetcher = until(loader.children, "the loader's fetcher started", timeout=60)[0]  # it asks for the parts
        stopping = threading.Thread(target=conn.stop)  # it logs out too: 6 s with this pool
        stopping.start()
        # the fetcher, in the middle of a 6 s call, dies with the loader instead of finishing
        # it as an orphan
        until(lambda: not any(_alive(process) for process in (loader, fetcher)), "the loader and its fetcher gone",
              timeout=2)
        stopping.join()
        assert feed.calls == ["remove_pool"]
        conn.on_batch([{"class": "vm", "ref": "OpaqueRef:1", "operation": "add", "snapshot": {"uuid": "1"}}], True)
        time.sleep(1.5)  # what the loader would have sent
        assert feed.calls == ["remove_pool"]
    finally:
        sim_admin(pool.url, "faults", {"reset": True})


def test_a_load_cut_short_after_a_stage_is_taken_back_from_the_workers():
    """The daemon passes each stage of a load on as it comes; when the loader stops before
    its last stage, the workers are told to drop what they got, and a worker's cache then
    holds nothing of that load."""
    import io
    import pickle

    from xorest.cache import ObjectCache
    from xorest.services import firstload, poolload
    from xorest.services.feed import FeedClient
    from xorest.xapi.prefetch import write_frame

    vms = firstload.encode_objects({"v1": ("vms", {"id": "v1", "$pool": "p"})})
    vbds = firstload.encode_objects({"b1": ("vbds", {"id": "b1", "$pool": "p"})})

    def stream(*frames):
        out = io.BytesIO()
        for frame in frames:
            write_frame(out, frame)
        out.seek(0)
        return out

    def stage(parts, last):
        return json.dumps({"parts": parts, "last": last}).encode()

    cases = {  # what the loader wrote before it stopped -> (the state read, the messages passed on)
        (stage(1, False), vms, stage(1, True), vbds, b"state"): (b"state", [("load", False), ("load", True)]),
        (stage(1, False), vms, stage(2, True), vbds): (None, [("load", False), "load-abandoned"]),
        (stage(1, False), vms, stage(1, True), vbds): (None, [("load", False), ("load", True)]),
        (stage(1, False), vms, b"not json"): (None, [("load", False), "load-abandoned"]),
        (stage(1, False), vms, b'{"parts": "x", "last": true}'): (None, [("load", False), "load-abandoned"]),
        (stage(1, False),): (None, []),
    }
    for frames, (state, expected) in cases.items():
        messages = []
        assert poolload._stages(stream(*frames), "s1", lambda m: messages.append(pickle.loads(m))) == state
        assert [m[0] if m[0] == "load-abandoned" else (m[0], m[3]) for m in messages] == expected
        assert all(m[1] == "s1" for m in messages)
        worker = FeedClient("/nonexistent", ObjectCache())
        for message in messages:
            worker._handle(message, set())
        held = {name: list(objects) for name, objects in worker.cache.snapshot().collections.items() if objects}
        assert held == ({"vms": ["v1"], "vbds": ["b1"]} if ("load", True) in expected else {})


def test_a_worker_s_connection_follows_a_pool_removed_and_added_again():
    """A worker may connect a server again (it reconciled first) before the daemon's word
    that the old connection is gone arrives: the watcher it holds then follows the new
    connection's states, not a dropped one's."""
    from xorest.cache import ObjectCache
    from xorest.services.feed import FeedClient

    feed = FeedClient("/nonexistent", ObjectCache())
    fresh = set()
    connected = {"server": "s1", "pool_uuid": "p1", "synced": True, "first_attempt": True, "loaded_at": 1.0,
                 "status": {"status": "connected", "error": None, "lastEventTime": 2.0, "connectedSince": 1.0,
                            "failedAttempts": 0}}
    feed._handle(("pool", "s1", connected), fresh)
    feed._handle(("token", "s1", "00000000000000000005,00000000000000000000"), fresh)
    held = feed.watcher("s1")  # the worker's connection made again before "gone" arrived
    feed._handle(("gone", "s1"), fresh)
    assert held.status.state == "connecting" and not held.synced.is_set() and not held.first_attempt.is_set()
    assert held.token is None and held.pool_uuid is None
    feed._handle(("pool", "s1", connected), fresh)  # the new connection's first state
    assert feed.watcher("s1") is held and held.status.state == "connected" and held.first_attempt.is_set()


def test_a_read_after_servers_changed_waits_for_connections_the_reconciler_just_made(pool, tmp_path):
    """A process's reconciler thread may connect a new server before a read notices the
    change: the read still waits (bounded) for that connection's first load, instead of
    answering 'connecting'."""
    from xorest import config as settings
    from xorest.cache import ObjectCache
    from xorest.services.pools import PoolService
    from xorest.store import open_store

    config = settings.load({"data_dir": str(tmp_path)}, environ={})
    store = open_store(config)
    store.add_server(pool.url, "root", "password", None, False, "slow")
    sim_admin(pool.url, "faults", {"latency": 0.3})  # the first load takes about a second
    service = PoolService(store, ObjectCache(), config)
    try:
        service.ensure_started()  # connects the server, as the reconciler thread would
        (conn,) = service.connections()
        assert not conn.watcher.first_attempt.is_set()
        service._reconcile_and_wait(time.monotonic() + 20)
        assert conn.watcher.first_attempt.is_set() and conn.status()["status"] == "connected"
    finally:
        sim_admin(pool.url, "faults", {"reset": True})
        service.stop()
