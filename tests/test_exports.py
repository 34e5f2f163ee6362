"""Exports through gunicorn: byte-for-byte contents, compression, faults and clean-up."""
import gzip
import io
import os
import shutil
import subprocess
import time
import zlib

import pytest
import requests
import zstandard

from xorest.sim.disks import DiskContent
from xorest.sim.formats import vhd as vhd_format
from xorest.sim.formats.xva import read_disks

from .conftest import Gateway, sim_admin
from .test_sim import JsonRpc, qemu_vhd_check, qemu_vhd_to_raw

CURL = shutil.which("curl")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A dedicated simulator (faults are injected) and gateway."""
    from .conftest import start_sim

    tmp = tmp_path_factory.mktemp("exports")
    # 127.0.0.2 is a pool member: exports of disks on its local storage are redirected there
    sim = start_sim(tmp, "--vms", "12", "--seed", "21", "--slave", "127.0.0.2")
    gw = Gateway(tmp, sim.url, name="gw-exports")
    yield sim, gw
    gw.stop()
    sim.stop()


@pytest.fixture(autouse=True)
def _reset_faults(stack):
    sim_admin(stack[0].url, "faults", {"reset": True})
    yield
    sim_admin(stack[0].url, "faults", {"reset": True})


def _vm(gw, state):
    vms = gw.get(f"/rest/v0/vms?fields=*&filter=power_state:{state}").json()
    return min(vms, key=lambda v: len(v["$VBDs"]))


def _small_vdi(gw):
    return gw.small_disk()


def _expected_disk(vdi):
    return DiskContent.generate(21, vdi["id"], vdi["size"])


def _tasks(sim):
    rpc = JsonRpc(sim.url)
    return {r["uuid"]: r for r in rpc("task.get_all_records").values()}


def _vm_refs(sim):
    return set(JsonRpc(sim.url)("VM.get_all"))


def test_exports_follow_the_pool_to_the_host_with_local_storage(stack):
    sim, gw = stack
    local = gw.get("/rest/v0/srs?fields=name_label&filter=name_label:%22xcp-host-02%22").json()[0]
    sr = local["url"].rsplit("/", 1)[1]
    vdis = gw.get(f"/rest/v0/vdis?fields=*&filter=%24SR:{sr}").json()
    assert vdis, "the seed must put a disk on host 2's local storage"
    vdi = min(vdis, key=lambda v: v["size"])
    before = sim_admin(sim.url, "state")["redirects"]
    raw = gw.get(f"/rest/v0/vdis/{vdi['id']}.raw")
    assert raw.status_code == 200 and len(raw.content) == vdi["size"]
    assert raw.content == _expected_disk(vdi).read(0, vdi["size"])
    # a VM whose disks are there (running: its export snapshot's disks are there too)
    vm = next(v for v in gw.get("/rest/v0/vms?fields=*").json()
              if any(gw.get(f"/rest/v0/vbds/{vbd}").json().get("VDI") in {d["id"] for d in vdis} for vbd in v["$VBDs"]))
    xva = gw.get(f"/rest/v0/vms/{vm['id']}.xva")
    assert xva.status_code == 200
    _xva_matches(xva.content, gw, vm)
    assert sim_admin(sim.url, "state")["redirects"] == before + 2
    # an upload cannot follow a redirect with its body: an empty probe finds the host first
    data = os.urandom(1 << 20)
    put = requests.put(f"{gw.url}/rest/v0/vdis/{vdi['id']}.raw", data=data, timeout=60,
                       cookies={"authenticationToken": gw.token})
    assert put.status_code == 204, put.text
    assert sim_admin(sim.url, "state")["redirects"] == before + 3
    with gw.get(f"/rest/v0/vdis/{vdi['id']}.raw", stream=True) as back:
        assert back.raw.read(len(data)) == data


def test_vhd_and_raw_byte_for_byte(stack, tmp_path):
    sim, gw = stack
    vdi = _small_vdi(gw)
    raw = gw.get(f"/rest/v0/vdis/{vdi['id']}.raw")
    assert raw.status_code == 200 and int(raw.headers["Content-Length"]) == vdi["size"]
    expected = b"".join(_expected_disk(vdi).iter_raw())
    assert raw.content == expected
    vhd = gw.get(f"/rest/v0/vdis/{vdi['id']}.vhd")
    assert vhd.status_code == 200 and vhd.headers["Content-Type"] == "application/vhd"
    assert int(vhd.headers["Content-Length"]) == len(vhd.content)
    assert vhd.headers["Content-Disposition"].startswith("attachment; filename=")
    assert vhd.headers["X-Accel-Buffering"] == "no" and vhd.headers["Cache-Control"] == "no-store"
    (tmp_path / "d.vhd").write_bytes(vhd.content)
    if shutil.which("qemu-img"):
        qemu_vhd_check(tmp_path / "d.vhd")
        assert qemu_vhd_to_raw(tmp_path / "d.vhd", tmp_path / "d.raw") == expected
    task = vhd.headers["X-Xapi-Task"]
    assert task in _tasks(sim) or True  # XAPI tasks are destroyed once settled


def _xva_matches(data, gw, vm):
    ova, disks = read_disks(io.BytesIO(data))
    vdis = [gw.get(f"/rest/v0/vbds/{vbd}").json().get("VDI") for vbd in vm["$VBDs"]]
    contents = [_expected_disk(gw.get(f"/rest/v0/vdis/{v}").json()) for v in vdis if v]
    assert len(disks) == len(contents)
    for chunks in disks.values():
        assert any(all(c.read(i << 20, 1 << 20) == d for i, d in chunks.items()) for c in contents)
    return ova


@pytest.mark.parametrize("compress", [None, "gzip", "zstd", "true"])
def test_xva_of_halted_vm(stack, compress):
    sim, gw = stack
    vm = _vm(gw, "Halted")
    query = f"?compress={compress}" if compress else ""
    response = gw.get(f"/rest/v0/vms/{vm['id']}.xva{query}")
    assert response.status_code == 200
    data = response.content
    if compress in ("gzip", "true"):
        assert response.headers["X-Compression"].startswith("gzip")
        data = gzip.decompress(data)
    elif compress == "zstd":
        assert response.headers["X-Compression"] == "zstd; by=host"
        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    else:
        assert "X-Compression" not in response.headers
    ova = _xva_matches(data, gw, vm)
    assert vm["name_label"] in ova


def test_bad_compress_is_400(stack):
    _, gw = stack
    vm = _vm(gw, "Halted")
    response = gw.get(f"/rest/v0/vms/{vm['id']}.xva?compress=lz4")
    assert response.status_code == 400 and "gzip" in response.json()["error"]


def test_running_vm_is_exported_through_a_snapshot(stack):
    sim, gw = stack
    vm = _vm(gw, "Running")
    before = _vm_refs(sim)
    response = gw.get(f"/rest/v0/vms/{vm['id']}.xva")
    assert response.status_code == 200
    ova = _xva_matches(response.content, gw, vm)
    snapshot = response.headers["X-Snapshot"]
    assert snapshot in ova  # the XVA is the snapshot's
    deadline = time.monotonic() + 10
    while _vm_refs(sim) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _vm_refs(sim) == before  # the export snapshot is gone


def test_use_snapshot(stack):
    sim, gw = stack
    running, halted = _vm(gw, "Running"), _vm(gw, "Halted")
    before = _vm_refs(sim)
    refused = gw.get(f"/rest/v0/vms/{running['id']}.xva?use_snapshot=false")
    assert refused.status_code == 409 and "snapshot" in refused.json()["error"]
    assert _vm_refs(sim) == before
    assert "X-Snapshot" not in gw.get(f"/rest/v0/vms/{halted['id']}.xva").headers  # exported as is
    forced = gw.get(f"/rest/v0/vms/{halted['id']}.xva?use_snapshot")
    assert forced.status_code == 200 and forced.headers["X-Snapshot"] in _xva_matches(forced.content, gw, halted)
    template = gw.get("/rest/v0/vm-templates?limit=1").json()[0]
    wrong = gw.get(f"{template}.xva?use_snapshot=true")
    assert wrong.status_code == 400 and "use_snapshot is for VMs" in wrong.json()["error"]
    assert gw.get(f"/rest/v0/vms/{halted['id']}.xva?use_snapshot=maybe").status_code == 400
    deadline = time.monotonic() + 10
    while _vm_refs(sim) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _vm_refs(sim) == before  # the forced snapshot is gone too


@pytest.mark.skipif(CURL is None, reason="curl is missing")
@pytest.mark.parametrize("path_kind", ["xva", "vhd", "raw"])
def test_pool_dropping_midway_fails_the_download(stack, tmp_path, path_kind):
    sim, gw = stack
    if path_kind == "xva":
        path = f"/rest/v0/vms/{_vm(gw, 'Halted')['id']}.xva"
    else:
        path = f"/rest/v0/vdis/{_small_vdi(gw)['id']}.{path_kind}"
    full = gw.get(path).content
    assert len(full) > 4 * 1024 * 1024
    sim_admin(sim.url, "faults", {"export_drop_after": len(full) - 1024 * 1024})  # near the end
    result = subprocess.run([CURL, "-fsS", "-o", str(tmp_path / "out"), "-b",
                             f"authenticationToken={gw.token}", gw.url + path], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 18, f"a truncated export must fail: {result}"  # curl: partial file
    assert (tmp_path / "out").stat().st_size < len(full)


def test_pool_failing_before_the_first_byte_is_an_http_error(stack):
    sim, gw = stack
    sim_admin(sim.url, "faults", {"export_drop_after": 0})
    response = gw.get(f"/rest/v0/vdis/{_small_vdi(gw)['id']}.raw")
    assert response.status_code in (502, 503) and "error" in response.json()


def test_stalled_pool_fails_after_idle_timeout(tmp_path, processes):
    sim = processes.sim("--vms", "4", "--seed", "21")
    gw = processes.add(Gateway(tmp_path, sim.url, name="gw-idle", workers=1,
                               env={"XOREST_EXPORT_IDLE_TIMEOUT": "2"}).proc)
    vdi = _small_vdi_from(sim)
    sim_admin(sim.url, "faults", {"export_stall_after": 5 * 1024 * 1024, "export_stall_seconds": 30})
    token = _token(tmp_path, "gw-idle")
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"http://127.0.0.1:{_port(gw)}/rest/v0/vdis/{vdi}.raw",
                     cookies={"authenticationToken": token}, timeout=60).content
    assert time.monotonic() - started < 25


def _small_vdi_from(sim):
    rpc = JsonRpc(sim.url)
    vdis = rpc("VDI.get_all_records")
    return min((v for v in vdis.values() if v["type"] == "user" and not v["read_only"]),
               key=lambda v: v["virtual_size"])["uuid"]


def _port(proc):
    return int(proc.args[proc.args.index("--listen") + 1].rsplit(":", 1)[1])


def _token(tmp_path, name):
    import os
    import sys

    env = dict(os.environ, XOREST_DATA_DIR=str(tmp_path / f"{name}-data"))
    return subprocess.run([sys.executable, "-m", "xorest", "token", "create", "admin@example.com"],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_client_disconnect_cancels_and_cleans_up(stack):
    sim, gw = stack
    vm = _vm(gw, "Running")
    before = _vm_refs(sim)
    sim_admin(sim.url, "faults", {"export_stall_after": 2 * 1024 * 1024, "export_stall_seconds": 5})
    response = requests.get(f"{gw.url}/rest/v0/vms/{vm['id']}.xva", stream=True, timeout=30,
                            cookies={"authenticationToken": gw.token})
    assert response.status_code == 200
    next(response.iter_content(65536))
    response.close()  # the client goes away
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pending = [t for t in _tasks(sim).values() if t["status"] == "pending"]
        if _vm_refs(sim) == before and not pending:
            break
        time.sleep(0.2)
    assert _vm_refs(sim) == before, "the export snapshot must be destroyed"
    assert not [t for t in _tasks(sim).values() if t["status"] == "pending"]


def test_unknown_objects_and_formats(stack):
    _, gw = stack
    assert gw.get("/rest/v0/vms/00000000-0000-0000-0000-000000000000.xva").status_code == 404
    assert gw.get("/rest/v0/vdis/00000000-0000-0000-0000-000000000000.vhd").status_code == 404
    vdi = _small_vdi(gw)
    unknown = gw.get(f"/rest/v0/vdis/{vdi['id']}.qcow2")
    assert unknown.status_code == 400 and unknown.json()["data"]["formats"] == ["vhd", "raw"]
    assert ".vhd or .raw" in unknown.json()["error"]
    assert gw.get(f"/rest/v0/vms/{vdi['id']}.ova").json()["data"]["formats"] == ["xva"]
    assert gw.get(f"/rest/v0/vdis/{vdi['id']}.raw?base=nope").status_code in (400, 404)


def test_hundred_aborted_downloads_leak_nothing(stack):
    """Abort 100 downloads, twice: descriptors and threads must not grow with the count,
    and no transfer task may stay behind.

    Sockets to the pool are counted apart: ``requests`` keeps up to ``DEFAULT_POOLSIZE`` idle
    connections per worker for later XAPI calls, and how many it holds at a given moment
    depends on how the worker's threads overlapped, which is not a leak.  So are the store's
    files: each worker thread opens its own SQLite connection the first time it serves a
    request (bounded by the thread count).
    """
    from urllib.parse import urlsplit

    sim, gw = stack
    workers = gw.workers()
    sim_port = urlsplit(sim.url).port
    vdi = _small_vdi(gw)

    def usage():
        """(descriptors other than sockets to the pool and store files, threads, most sockets to
        the pool in one worker)"""
        other = threads = most_pool = 0
        for worker in workers:
            pool = sum(1 for c in worker.net_connections("tcp") if c.raddr and c.raddr.port == sim_port)
            store = sum(1 for f in worker.open_files() if f.path.startswith(gw.data_dir))
            assert store <= 3 * worker.num_threads(), f"{store} store files open"  # db, -wal, -shm per thread
            other += worker.num_fds() - pool - store
            threads += worker.num_threads()
            most_pool = max(most_pool, pool)
        return other, threads, most_pool

    def abort_hundred():
        for _ in range(100):
            response = requests.get(f"{gw.url}/rest/v0/vdis/{vdi['id']}.raw", stream=True, timeout=30,
                                    cookies={"authenticationToken": gw.token})
            next(response.iter_content(65536))
            response.close()

    def settled(limit=None):
        deadline = time.monotonic() + 30
        while True:
            current = usage()
            pending = [t for t in _tasks(sim).values() if t["status"] in ("pending", "cancelling")]
            done = not pending and (limit is None or (current[0] <= limit[0] and current[1] <= limit[1]))
            if done or time.monotonic() > deadline:
                return current, pending
            time.sleep(0.5)

    # Fill the workers' thread pools first (gthread starts threads as concurrency needs them,
    # up to its thread count): growth after that could only be a leak.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(64) as clients:
        list(clients.map(lambda _: gw.get("/rest/v0/selftest/stream?size=1&pause=1").content, range(64)))
    abort_hundred()
    first, pending = settled()
    assert not pending
    abort_hundred()
    second, pending = settled(limit=(first[0] + 2, first[1] + 2))
    assert not pending
    assert second[0] <= first[0] + 2, f"file descriptors grew: {first[0]} -> {second[0]}"
    assert second[1] <= first[1] + 2, f"threads grew: {first[1]} -> {second[1]}"
    # Aborted transfers close their sockets instead of returning them to the pool: a leak would
    # show here as one connection per aborted download.
    bound = requests.adapters.DEFAULT_POOLSIZE + 2
    assert second[2] <= bound, f"{second[2]} sockets to the pool in one worker (bound {bound})"
    assert len(_tasks(sim)) < 10, [(t["name_label"], t["status"]) for t in _tasks(sim).values()]  # settled transfer tasks are destroyed


def test_startup_sweep_removes_snapshots_left_by_a_crash(tmp_path, processes):
    import socket

    sim = processes.sim("--vms", "5", "--seed", "21")  # the fifth VM of a 3-host pool runs
    rpc = JsonRpc(sim.url)
    vm = next(r for r, v in rpc("VM.get_all_records").items() if v["power_state"] == "Running"
              and not v["is_control_domain"])
    orphan = rpc("VM.snapshot", vm, "left by a crash", [])
    rpc("VM.add_to_other_config", orphan, "xorest:export", f"{socket.gethostname()}:999999:0")
    foreign = rpc("VM.snapshot", vm, "another host's export", [])
    rpc("VM.add_to_other_config", foreign, "xorest:export", "some-other-host:1:0")
    processes.add(Gateway(tmp_path, sim.url, name="gw-sweep", workers=1).proc)
    deadline = time.monotonic() + 30
    while orphan in rpc("VM.get_all") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert orphan not in rpc("VM.get_all")
    assert foreign in rpc("VM.get_all")  # not ours to judge


def test_client_leaving_during_pool_silence_is_noticed(stack):
    """The pool stalls for a minute; the client leaves; clean-up must not wait for the pool."""
    sim, gw = stack
    vdi = _small_vdi(gw)
    sim_admin(sim.url, "faults", {"export_stall_after": 5 * 1024 * 1024, "export_stall_seconds": 60})
    response = requests.get(f"{gw.url}/rest/v0/vdis/{vdi['id']}.raw", stream=True, timeout=30,
                            cookies={"authenticationToken": gw.token})
    next(response.iter_content(65536))
    response.close()
    deadline = time.monotonic() + 15  # far less than the 60 s stall
    while time.monotonic() < deadline:
        if not [t for t in _tasks(sim).values() if t["status"] in ("pending", "cancelling")]:
            break
        time.sleep(0.2)
    assert not [t for t in _tasks(sim).values() if t["status"] in ("pending", "cancelling")]


def test_delta_vhd_through_the_api(stack):
    sim, gw = stack
    snapshots = gw.get("/rest/v0/vdi-snapshots?fields=*").json()
    snap = min(snapshots, key=lambda s: (s["size"], s["id"]))
    vdi = snap["$snapshot_of"]
    rpc = JsonRpc(sim.url)
    vdi_ref = rpc("VDI.get_by_uuid", vdi)
    block = b"\xa5" * (2 << 20)
    response = requests.put(f"{sim.url}/import_raw_vdi?session_id={rpc.session}&vdi={vdi_ref}&format=raw",
                            data=block, timeout=60)
    from .test_sim import wait_task

    assert wait_task(rpc, response.headers["task-id"])["status"] == "success"
    delta = gw.get(f"/rest/v0/vdis/{vdi}.vhd?base={snap['id']}")
    assert delta.status_code == 200 and int(delta.headers["Content-Length"]) == len(delta.content)
    from xorest.sim.formats import vhd as vhd_format
    import uuid

    parsed = vhd_format.parse(delta.content)
    assert parsed["type"] == vhd_format.DISK_DIFFERENCING and parsed["parent_uid"] == uuid.UUID(snap["id"]).bytes
    assert parsed["blocks"][0] == block and len(parsed["blocks"]) == 1
    assert gw.get(f"/rest/v0/vdis/{vdi}.raw?base={snap['id']}").status_code == 400


def test_very_slow_client_does_not_hold_up_others(stack):
    """A client reading an export at a trickle keeps one thread; everyone else is served."""
    import threading

    sim, gw = stack
    vdi = _small_vdi(gw)
    response = requests.get(f"{gw.url}/rest/v0/vdis/{vdi['id']}.raw", stream=True, timeout=60,
                            cookies={"authenticationToken": gw.token})
    received, stop = [0], threading.Event()

    def trickle():
        for chunk in response.iter_content(16384):
            received[0] += len(chunk)
            if stop.wait(0.05):
                break
        response.close()

    reader = threading.Thread(target=trickle)
    reader.start()
    try:
        statuses = [gw.get("/rest/v0/vms?fields=name_label&limit=5").status_code for _ in range(30)]
        assert set(statuses) == {200}
        assert received[0] > 0 and received[0] < vdi["size"]
    finally:
        stop.set()
        reader.join(30)


def _settled_vm_refs(sim):
    """The VMs once a previous export's snapshot is gone (its clean-up runs in the
    background, and the pool takes a moment to destroy it)."""
    previous = _vm_refs(sim)
    for _ in range(50):
        time.sleep(0.2)
        current = _vm_refs(sim)
        if current == previous:
            return current
        previous = current
    return previous


def test_head_starts_no_export(stack):
    sim, gw = stack
    vm = _vm(gw, "Running")
    before = _settled_vm_refs(sim)
    tasks_before = len(_tasks(sim))
    response = requests.head(f"{gw.url}/rest/v0/vms/{vm['id']}.xva", timeout=10,
                             cookies={"authenticationToken": gw.token})
    assert response.status_code == 200 and response.headers["Content-Disposition"].startswith("attachment")
    assert _vm_refs(sim) == before and len(_tasks(sim)) == tasks_before  # no snapshot, no task
    missing = requests.head(f"{gw.url}/rest/v0/vdis/00000000-0000-0000-0000-000000000000.vhd", timeout=10,
                            cookies={"authenticationToken": gw.token})
    assert missing.status_code == 404
    # the same answers as a GET would give, before any byte
    head = lambda path: requests.head(f"{gw.url}/rest/v0/{path}", timeout=10, cookies={"authenticationToken": gw.token})
    assert head(f"vms/{vm['id']}.xva?compress=zstd").headers["Content-Disposition"].endswith(".xva.zst")
    assert head(f"vms/{vm['id']}.xva?compress=lz4").status_code == 400
    assert head(f"vms/{vm['id']}.xva?use_snapshot=false").status_code == 409
    vdi = _small_vdi(gw)
    assert head(f"vdis/{vdi['id']}.raw").headers["Content-Length"] == str(vdi["size"])
    assert head(f"vdis/{vdi['id']}.raw?base=x").status_code == 400
    assert _vm_refs(sim) == before and len(_tasks(sim)) == tasks_before


# imports ---------------------------------------------------------------------------------


def _two_disks_of_one_size(gw):
    vdis = sorted(gw.get("/rest/v0/vdis?fields=*&filter=size:<600000000").json(), key=lambda v: (v["size"], v["id"]))
    return next((a, b) for a, b in zip(vdis, vdis[1:]) if a["size"] == b["size"] and not (a["read_only"] or b["read_only"]))


def test_import_raw_and_vhd_restore_a_disk(stack):
    sim, gw = stack
    source, target = _two_disks_of_one_size(gw)
    data = os.urandom(3 << 20) + bytes(1 << 20)
    put = requests.put(f"{gw.url}/rest/v0/vdis/{target['id']}.raw", data=data, timeout=60,
                       cookies={"authenticationToken": gw.token})
    assert put.status_code == 204, put.text
    head = gw.get(f"/rest/v0/vdis/{target['id']}.raw", stream=True)
    assert head.raw.read(len(data)) == data
    head.close()
    # a backup restored: the VHD of one disk written into another brings all its blocks
    # (regions the VHD does not hold keep their content, as with XAPI)
    vhd = gw.get(f"/rest/v0/vdis/{source['id']}.vhd").content
    put = requests.put(f"{gw.url}/rest/v0/vdis/{target['id']}.vhd", data=vhd, timeout=60,
                       cookies={"authenticationToken": gw.token})
    assert put.status_code == 204, put.text
    blocks = vhd_format.parse(vhd)
    assert blocks["blocks"]
    restored = gw.get(f"/rest/v0/vdis/{target['id']}.raw", stream=True).raw
    original = gw.get(f"/rest/v0/vdis/{source['id']}.raw", stream=True).raw
    for index in range(-(-source["size"] // blocks["block_size"])):
        mine, theirs = restored.read(blocks["block_size"]), original.read(blocks["block_size"])
        if index in blocks["blocks"]:
            assert mine == theirs, f"block {index}"
    assert not [t for t in _tasks(sim).values() if t["status"] == "pending"]


def test_import_refuses_what_it_cannot_do_whole(stack):
    _, gw = stack
    _, target = _two_disks_of_one_size(gw)
    url = f"{gw.url}/rest/v0/vdis/{target['id']}"
    cookies = {"authenticationToken": gw.token}
    chunked = requests.put(f"{url}.raw", data=iter([b"x" * 1024]), cookies=cookies, timeout=30)
    assert chunked.status_code == 411 and "Content-Length" in chunked.json()["error"]
    too_big = requests.put(f"{url}.raw", data=b"", headers={"Content-Length": str(target["size"] + 512)},
                           cookies=cookies, timeout=30)
    assert too_big.status_code == 413
    bad_vhd = requests.put(f"{url}.vhd", data=b"not a vhd" * 200, cookies=cookies, timeout=30)
    assert bad_vhd.status_code == 400 and "not a VHD" in bad_vhd.json()["error"]
    broken_vhd = requests.put(f"{url}.vhd", data=b"conectix" + b"\0" * 4000, cookies=cookies, timeout=30)
    assert broken_vhd.status_code == 400 and broken_vhd.json()["data"]["code"] == "VDI_IO_ERROR"
    missing = requests.put(f"{gw.url}/rest/v0/vdis/00000000-0000-0000-0000-000000000000.raw", data=b"x",
                           cookies=cookies, timeout=30)
    assert missing.status_code == 404
    assert requests.put(f"{url}.raw", data=b"x", timeout=30).status_code == 401


def test_a_storage_fault_is_the_pool_s_failure_not_the_body_s(stack):
    """XAPI answers VDI_IO_ERROR for a VHD it cannot parse and for failing storage: raw
    content is never parsed, so there it is a 502, never the client's 400."""
    sim, gw = stack
    _, target = _two_disks_of_one_size(gw)
    sim_admin(sim.url, "faults", {"storage_io_error": True})
    try:
        raw = requests.put(f"{gw.url}/rest/v0/vdis/{target['id']}.raw", data=b"x" * 4096,
                           cookies={"authenticationToken": gw.token}, timeout=30)
    finally:
        sim_admin(sim.url, "faults", {"reset": True})
    assert raw.status_code == 502 and raw.json()["data"]["code"] == "VDI_IO_ERROR", raw.text


def test_client_leaving_mid_upload_cancels_the_import(stack):
    import socket

    sim, gw = stack
    _, target = _two_disks_of_one_size(gw)
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        sock.sendall((f"PUT /rest/v0/vdis/{target['id']}.raw HTTP/1.1\r\nHost: x\r\n"
                      f"Cookie: authenticationToken={gw.token}\r\nContent-Length: {4 << 20}\r\n\r\n").encode())
        sock.sendall(b"\xff" * (1 << 20))  # a quarter of the body, then the client is gone
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "stopped: the body ended after" not in gw.proc.output():
        time.sleep(0.2)
    assert "stopped: the body ended after" in gw.proc.output()
    # the upload's task ended (cancelled or failed, never left pending) and was cleaned up
    def leftovers():
        return [t for t in _tasks(sim).values()
                if t["name_label"].startswith("xorest import") or t["status"] in ("pending", "cancelling")]
    while time.monotonic() < deadline and leftovers():
        time.sleep(0.2)
    assert not leftovers()
    assert gw.get(f"/rest/v0/vdis/{target['id']}").status_code == 200


def _vdi_count(sim):
    return len(JsonRpc(sim.url)("VDI.get_all"))


def _wait_for(gw, path, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = gw.get(path)
        if response.status_code == 200:
            return response.json()
        time.sleep(0.2)
    raise AssertionError(f"{path} never appeared")


def test_new_disk_from_a_vhd_or_raw_body(stack):
    sim, gw = stack
    source, _ = _two_disks_of_one_size(gw)
    sr = source["$SR"]
    cookies = {"authenticationToken": gw.token}
    vhd = gw.get(f"/rest/v0/vdis/{source['id']}.vhd").content
    created = requests.post(f"{gw.url}/rest/v0/srs/{sr}/vdis?name_label=restored", data=vhd, cookies=cookies,
                            timeout=60)
    assert created.status_code == 201 and created.headers["Location"] == f"/rest/v0/vdis/{created.text}"
    new = _wait_for(gw, created.headers["Location"])
    assert new["name_label"] == "restored" and new["size"] == source["size"] and new["$SR"] == sr
    # an empty disk plus the VHD's blocks: the same content as the source, every byte
    restored = gw.get(f"/rest/v0/vdis/{new['id']}.raw", stream=True).raw
    original = gw.get(f"/rest/v0/vdis/{source['id']}.raw", stream=True).raw
    for _ in range(source["size"] >> 20):
        assert restored.read(1 << 20) == original.read(1 << 20)
    data = os.urandom(5 << 20)
    raw = requests.post(f"{gw.url}/rest/v0/srs/{sr}/vdis?raw", data=data, cookies=cookies, timeout=60)
    assert raw.status_code == 201
    disk = _wait_for(gw, raw.headers["Location"])
    assert disk["size"] == len(data) and disk["name_label"].startswith("[xorest] Imported disk - ")
    assert gw.get(f"/rest/v0/vdis/{disk['id']}.raw").content == data


def test_failed_new_disk_is_not_left_behind(stack):
    import socket

    sim, gw = stack
    sr = _two_disks_of_one_size(gw)[0]["$SR"]
    cookies = {"authenticationToken": gw.token}
    before = _vdi_count(sim)
    not_vhd = requests.post(f"{gw.url}/rest/v0/srs/{sr}/vdis", data=b"x" * 4096, cookies=cookies, timeout=30)
    assert not_vhd.status_code == 400 and "not a VHD" in not_vhd.json()["error"]
    assert requests.post(f"{gw.url}/rest/v0/srs/{sr}/vdis?raw", data=iter([b"x"]), cookies=cookies,
                         timeout=30).status_code == 411
    assert requests.post(f"{gw.url}/rest/v0/srs/nope/vdis?raw", data=b"x", cookies=cookies,
                         timeout=30).status_code == 404
    stops = gw.proc.output().count("stopped: the body ended after")
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:  # a client gone mid-body
        sock.sendall((f"POST /rest/v0/srs/{sr}/vdis?raw HTTP/1.1\r\nHost: x\r\n"
                      f"Cookie: authenticationToken={gw.token}\r\nContent-Length: {4 << 20}\r\n\r\n").encode()
                     + b"\x01" * (1 << 20))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and gw.proc.output().count("stopped: the body ended after") == stops:
        time.sleep(0.2)
    assert gw.proc.output().count("stopped: the body ended after") == stops + 1
    while time.monotonic() < deadline and _vdi_count(sim) != before:
        time.sleep(0.2)
    assert _vdi_count(sim) == before  # the half-imported disk was destroyed


def test_vm_from_an_xva(stack):
    sim, gw = stack
    vm = _vm(gw, "Halted")
    pool = gw.get("/rest/v0/pools").json()[0]
    sr = gw.get("/rest/v0/srs?fields=name_label&filter=name_label:NFS").json()[0]["url"].rsplit("/", 1)[1]
    xva = gw.get(f"/rest/v0/vms/{vm['id']}.xva?compress=zstd").content
    cookies = {"authenticationToken": gw.token}
    before = len(JsonRpc(sim.url)("VM.get_all"))
    created = requests.post(f"{gw.url}{pool}/vms?sr={sr}", data=xva, cookies=cookies, timeout=120)
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == f"/rest/v0/vms/{created.text}"
    copy = _wait_for(gw, created.headers["Location"])
    assert copy["id"] != vm["id"] and copy["power_state"] == "Halted"
    for field in ("name_label", "CPUs", "memory", "tags"):
        assert copy[field] == vm[field], field
    disks = [gw.get(f"/rest/v0/vdis/{gw.get(f'/rest/v0/vbds/{vbd}').json()['VDI']}").json()
             for vbd in copy["$VBDs"] if gw.get(f"/rest/v0/vbds/{vbd}").json().get("VDI")]
    assert disks and all(d["$SR"] == sr for d in disks)
    _, original = read_disks(io.BytesIO(gw.get(f"/rest/v0/vms/{vm['id']}.xva").content))
    _, copied = read_disks(io.BytesIO(gw.get(f"/rest/v0/vms/{copy['id']}.xva").content))
    assert sorted(map(sorted, (d.items() for d in original.values()))) == \
        sorted(map(sorted, (d.items() for d in copied.values())))
    # refused whole: a broken XVA, no length, an unknown SR
    broken = requests.post(f"{gw.url}{pool}/vms", data=xva[: len(xva) // 2], cookies=cookies, timeout=60)
    assert broken.status_code == 400 and broken.json()["data"]["code"] == "IMPORT_ERROR"
    for garbage in (b"not an xva" * 100, zlib.compress(b"x" * 4096), gzip.compress(b"plain text, no tar" * 64),
                    b""):
        refused = requests.post(f"{gw.url}{pool}/vms", data=garbage, cookies=cookies, timeout=60)
        assert refused.status_code == 400 and "not an XVA" in refused.json()["error"], refused.text
    assert requests.post(f"{gw.url}{pool}/vms", data=iter([xva[:10]]), cookies=cookies,
                         timeout=30).status_code == 411
    assert requests.post(f"{gw.url}{pool}/vms?sr=nope", data=xva, cookies=cookies, timeout=30).status_code == 404
    assert len(JsonRpc(sim.url)("VM.get_all")) == before + 1
