"""The simulator, driven by real clients over HTTP: the XenAPI SDK (XML-RPC) and JSON-RPC."""
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import threading
import time

import pytest
import requests
import XenAPI
import zstandard

from xorest.sim import Simulator
from xorest.sim.disks import DiskContent
from xorest.sim.formats import vhd as vhd_format
from xorest.sim.formats.xva import read_disks

from .conftest import npm_package, sim_admin

SERVED = ["pool", "host", "host_metrics", "host_cpu", "VM", "VM_metrics", "VM_guest_metrics", "VBD",
          "VDI", "SR", "PBD", "SM", "VIF", "network", "PIF", "PIF_metrics", "task", "message", "console",
          "Bond", "VLAN", "PCI", "PGPU", "GPU_group", "VGPU", "VGPU_type", "VTPM", "Certificate",
          "pool_update", "pool_patch", "host_patch"]


@pytest.fixture
def xapi(sim):
    session = XenAPI.Session(sim.url)
    session.xenapi.login_with_password("root", "password", "1.0", "tests")
    yield session
    session.xenapi.session.logout()


def qemu_vhd_check(path):
    """``qemu-img check`` where qemu supports it for vpc (it answers 63: no checks), then ``info``."""
    check = subprocess.run(["qemu-img", "check", "-f", "vpc", str(path)], capture_output=True, text=True)
    assert check.returncode == 0 or (check.returncode == 63 and "does not support checks" in check.stderr)
    subprocess.run(["qemu-img", "info", "-f", "vpc", str(path)], check=True, capture_output=True)
    vhd_format.parse(path.read_bytes())  # footers, checksums, header, BAT


def qemu_vhd_to_raw(path, target):
    """Convert with qemu using the footer's size (qemu uses CHS geometry for creator ``caml``)."""
    subprocess.run(["qemu-img", "convert", "--image-opts",
                    f"driver=vpc,force_size_calc=current_size,file.filename={path}", "-O", "raw",
                    str(target)], check=True, capture_output=True)
    return target.read_bytes()


class JsonRpc:
    def __init__(self, url):
        self.url = url + "/jsonrpc"
        self.session = self.call("session.login_with_password", "root", "password")

    def raw(self, method, *params, version="2.0"):
        body = {"method": method, "params": list(params), "id": 7}
        if version == "2.0":
            body["jsonrpc"] = "2.0"
        response = requests.post(self.url, json=body, timeout=30)
        assert response.headers["Content-Type"] == "application/json"
        return response.json()

    def call(self, method, *params):
        doc = self.raw(method, *params)
        if "error" in doc:
            raise XenAPI.Failure([doc["error"]["message"], *doc["error"]["data"]])
        return doc["result"]

    def __call__(self, method, *params):
        return self.call(method, self.session, *params)


def test_sdk_reads_every_class(xapi, sim):
    for cls in SERVED:
        records = getattr(xapi.xenapi, cls).get_all_records()
        assert isinstance(records, dict)
    vms = xapi.xenapi.VM.get_all_records()
    assert sum(1 for r in vms.values() if not r["is_a_template"] and not r["is_control_domain"]) == 50
    controllers = [r for r in vms.values() if r["is_control_domain"]]
    hosts = xapi.xenapi.host.get_all_records()
    assert len(controllers) == len(hosts) == 3
    assert {h["control_domain"] for h in hosts.values()} == set(
        ref for ref, r in vms.items() if r["is_control_domain"])
    snapshots = [r for r in vms.values() if r["is_a_snapshot"]]
    assert snapshots and all(s["is_a_template"] for s in snapshots)


def test_records_have_every_datamodel_field_and_two_way_refs(xapi):
    from xorest.sim import datamodel

    model = datamodel.load()
    for cls in ("VM", "VDI", "VBD", "SR", "host", "pool", "network", "PIF"):
        records = getattr(xapi.xenapi, cls).get_all_records()
        for record in records.values():
            assert set(record) == set(model.classes[cls].fields), cls
    vbds = xapi.xenapi.VBD.get_all_records()
    vms = xapi.xenapi.VM.get_all_records()
    for ref, vbd in vbds.items():
        assert ref in vms[vbd["VM"]]["VBDs"]
    for sr_ref, sr in xapi.xenapi.SR.get_all_records().items():
        for vdi in sr["VDIs"]:
            assert xapi.xenapi.VDI.get_SR(vdi) == sr_ref


def test_every_ref_field_of_every_class_is_a_ref(xapi):
    """XAPI writes a null reference as ``OpaqueRef:NULL`` (never the datamodel's "Null"):
    clients such as Xen Orchestra's take any other string for a real reference."""
    from xorest.sim import datamodel

    model = datamodel.load()
    checked = 0
    for cls in SERVED:
        fields = model.classes[cls].fields
        for record in getattr(xapi.xenapi, cls).get_all_records().values():
            for name, field in fields.items():
                value = record[name]
                if field.type.endswith(" ref"):
                    refs = [value]
                elif field.type.endswith(" ref set"):
                    refs = value
                elif field.type.endswith(" map") and " ref" in field.type:
                    key_type, _, value_type = field.type[1:-len(") map")].partition(" -> ")
                    refs = [*(value if key_type.endswith(" ref") else ()),
                            *(value.values() if value_type.endswith(" ref") else ())]
                else:
                    continue
                for ref in refs:
                    assert ref.startswith("OpaqueRef:"), (cls, name, ref)
                    checked += 1
    assert checked > 1000


def test_wire_quirks(sim):
    body = ('<?xml version="1.0"?><methodCall><methodName>session.login_with_password</methodName>'
            "<params><param><value>root</value></param><param><value>password</value></param>"
            "</params></methodCall>")
    response = requests.post(sim.url + "/RPC2", data=body, timeout=10)
    assert response.headers["Content-Type"] == "text/xml"
    assert "> <" not in response.text and "\n<" not in response.text.split("?>", 1)[1]
    session = response.text.split("<name>Value</name><value>")[1].split("<")[0]
    body = (f"<?xml version='1.0'?><methodCall><methodName>host_metrics.get_all_records</methodName>"
            f"<params><param><value>{session}</value></param></params></methodCall>")
    text = requests.post(sim.url + "/xmlrpc", data=body, timeout=10).text
    assert "<name>memory_total</name><value>274877906944</value>" in text  # int64 as a string
    assert "<dateTime.iso8601>" in text and "Z</dateTime.iso8601>" in text
    listing = requests.post(sim.url + "/", data="<?xml version='1.0'?><methodCall><methodName>"
                            "system.listMethods</methodName><params></params></methodCall>", timeout=10).text
    assert "<name>Status</name>" not in listing and "VM.get_all_records" in listing


def test_errors(xapi, sim):
    with pytest.raises(XenAPI.Failure) as info:
        xapi.xenapi.VM.get_by_uuid("nope")
    assert info.value.details == ["UUID_INVALID", "VM", "nope"]
    with pytest.raises(XenAPI.Failure) as info:
        xapi.xenapi.VM.get_record("OpaqueRef:missing")
    assert info.value.details[0] == "HANDLE_INVALID"
    with pytest.raises(XenAPI.Failure) as info:
        xapi.xenapi.VM.frobnicate()
    assert info.value.details[0] == "MESSAGE_METHOD_UNKNOWN"
    with pytest.raises(XenAPI.Failure) as info:
        xapi.xenapi.VM.get_record()
    assert info.value.details[0] == "MESSAGE_PARAMETER_COUNT_MISMATCH"
    bad = XenAPI.Session(sim.url)
    with pytest.raises(XenAPI.Failure) as info:
        bad.xenapi.login_with_password("root", "wrong", "1.0", "t")
    assert info.value.details == ["SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"]
    rpc = JsonRpc(sim.url)
    assert rpc.raw("VM.get_all", "OpaqueRef:bogus")["error"] == {
        "code": 1, "message": "SESSION_INVALID", "data": ["OpaqueRef:bogus"]}
    assert rpc.raw("VM.get_all", "bogus", version="1.0")["error"] == ["SESSION_INVALID", "bogus"]
    rpc.call("session.logout", rpc.session)
    with pytest.raises(XenAPI.Failure, match="SESSION_INVALID"):
        rpc("VM.get_all")


def _running_and_halted(call):
    vms = call("VM.get_all_records")
    halted = next(r for r, v in vms.items() if v["power_state"] == "Halted" and not v["is_a_template"]
                  and not v["is_control_domain"])
    running = next(r for r, v in vms.items() if v["power_state"] == "Running" and not v["is_control_domain"])
    return running, halted


def _client(url, protocol):
    """A ``call(method, *args)`` over XML-RPC (XenAPI SDK) or JSON-RPC; one connection each."""
    if protocol == "json":
        return JsonRpc(url)
    session = XenAPI.Session(url)
    session.xenapi.login_with_password("root", "password", "1.0", "t")

    def call(method, *args):
        target = session.xenapi
        for part in method.replace("event.from", "event_from").split("."):
            target = getattr(target, part)
        return target(*args)
    return call


@pytest.mark.parametrize("protocol", ["xml", "json"])
def test_events_tasks_and_power(tmp_path, processes, protocol):
    sim = processes.sim("--vms", "10", "--seed", "3")
    call, watcher_call = _client(sim.url, protocol), _client(sim.url, protocol)
    first = call("event.from", ["vm"], "", 1.0)
    assert all(e["operation"] == "add" for e in first["events"])
    assert isinstance(first["valid_ref_counts"]["vm"], int)
    token = first["token"]
    assert len(token) == 41 and token[20] == ","
    _, halted = _running_and_halted(call)
    seen = []

    def watch():  # the claim (current_operations) comes first, the new power state later
        since, deadline = token, time.monotonic() + 10
        while time.monotonic() < deadline and not any(
                e["ref"] == halted and e.get("snapshot", {}).get("power_state") == "Running" for e in seen):
            result = watcher_call("event.from", ["vm"], since, 10.0)
            seen.extend(result["events"])
            since = result["token"]

    watcher = threading.Thread(target=watch)
    watcher.start()
    time.sleep(0.3)
    task = call("Async.VM.start", halted, False, False)
    watcher.join(15)
    assert any(e["ref"] == halted and e["operation"] == "mod" and e["snapshot"]["power_state"] == "Running"
               for e in seen)
    for _ in range(100):
        record = call("task.get_record", task)
        if record["status"] != "pending":
            break
        time.sleep(0.05)
    assert record["status"] == "success"
    with pytest.raises(XenAPI.Failure) as info:
        call("VM.start", halted, False, False)
    assert info.value.details[0] == "VM_BAD_POWER_STATE"
    assert info.value.details[2:] == ["halted", "running"]


def test_related_objects_get_mod_events(processes):
    sim = processes.sim("--vms", "5")
    rpc = JsonRpc(sim.url)
    token = rpc("event.from", ["*"], "", 0.0)["token"]
    vm = next(r for r, v in rpc("VM.get_all_records").items() if v["power_state"] == "Halted"
              and not v["is_a_template"])
    snapshot = rpc("VM.snapshot", vm, "snap", [])
    events = rpc("event.from", ["*"], token, 1.0)["events"]
    ops = {(e["class"], e["operation"]) for e in events}
    assert ("vm", "add") in ops and ("vbd", "add") in ops and ("vdi", "add") in ops
    assert any(e["ref"] == vm and e["operation"] == "mod" for e in events)  # VM.snapshots changed
    token = rpc("event.from", ["*"], token, 0.0)["token"]
    rpc("VM.destroy", snapshot)
    events = rpc("event.from", ["vm"], token, 1.0)["events"]
    assert {"ref": snapshot, "operation": "del"}.items() <= next(e for e in events if e["ref"] == snapshot).items()
    injected = rpc("event.inject", "pool", next(iter(rpc("pool.get_all"))))
    assert rpc("event.from", ["pool"], injected, 1.0)["events"][0]["class"] == "pool"


def wait_task(rpc, task, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = rpc("task.get_record", task)
        if record["status"] != "pending":
            return record
        time.sleep(0.05)
    raise AssertionError(f"task {task} still pending")


def put_raw(sim, rpc, vdi, data):
    """``PUT /import_raw_vdi``; XAPI answers before reading the body, so follow the task."""
    response = requests.put(f"{sim.url}/import_raw_vdi?session_id={rpc.session}&vdi={vdi}&format=raw",
                            data=data, timeout=60)
    assert response.status_code == 200
    record = wait_task(rpc, response.headers["task-id"])
    assert record["status"] == "success", record
    return record


def _disk_of(rpc, vdi_ref, seed):
    record = rpc("VDI.get_record", vdi_ref)
    return DiskContent.generate(seed, record["uuid"], record["virtual_size"])


def _small_vdi(rpc):
    vdis = rpc("VDI.get_all_records")
    return min((r for r, v in vdis.items() if v["type"] == "user" and not v["read_only"]
                and not v["is_a_snapshot"]), key=lambda r: vdis[r]["virtual_size"])


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img (qemu-utils) is not installed")
def test_vhd_export_is_valid_and_equals_raw(sim, tmp_path):
    rpc = JsonRpc(sim.url)
    vdi = _small_vdi(rpc)
    base = f"{sim.url}/export_raw_vdi?session_id={rpc.session}&vdi={vdi}"
    vhd = requests.get(base + "&format=vhd", timeout=60)
    raw = requests.get(base + "&format=raw", timeout=60)
    assert vhd.status_code == raw.status_code == 200
    assert vhd.headers["content-type"] == "application/vhd" and "task-id" in vhd.headers
    (tmp_path / "d.vhd").write_bytes(vhd.content)
    qemu_vhd_check(tmp_path / "d.vhd")
    expected = b"".join(_disk_of(rpc, vdi, 1).iter_raw())
    assert hashlib.sha256(raw.content).digest() == hashlib.sha256(expected).digest()
    assert qemu_vhd_to_raw(tmp_path / "d.vhd", tmp_path / "d.raw") == expected


def test_xva_export_layout_checksums_and_compression(sim):
    rpc = JsonRpc(sim.url)
    _, halted = _running_and_halted(rpc)
    url = f"{sim.url}/export?session_id={rpc.session}&ref={halted}"
    plain = requests.get(url, timeout=60).content
    ova, disks = read_disks(io.BytesIO(plain))
    assert "<name>xapi_major</name>" in ova and disks
    vm = rpc("VM.get_record", halted)
    disk_vdis = [rpc("VBD.get_VDI", v) for v in vm["VBDs"] if rpc("VBD.get_type", v) == "Disk"]
    assert len(disks) == len(disk_vdis)
    for chunks in disks.values():  # contents match one of the VM's disks byte for byte
        contents = [_disk_of(rpc, v, 1) for v in disk_vdis]
        assert any(all(c.read(i << 20, 1 << 20) == data for i, data in chunks.items()) for c in contents)
    # Same tar, modulo the members' mtime (XAPI stamps them with the export time).
    unzipped = gzip.decompress(requests.get(url + "&use_compression=true", timeout=60).content)
    assert len(unzipped) == len(plain) and read_disks(io.BytesIO(unzipped)) == (ova, disks)
    zstd = requests.get(url + "&use_compression=zstd", timeout=60).content
    unzstd = zstandard.ZstdDecompressor().decompressobj().decompress(zstd)
    assert len(unzstd) == len(plain) and read_disks(io.BytesIO(unzstd)) == (ova, disks)


def test_export_of_running_vm_fails_like_xapi(sim):
    rpc = JsonRpc(sim.url)
    running, _ = _running_and_halted(rpc)
    response = requests.get(f"{sim.url}/export?session_id={rpc.session}&ref={running}", timeout=30)
    assert response.status_code == 500
    assert "VM_BAD_POWER_STATE" in response.text


def test_http_handlers_require_credentials(sim):
    assert requests.get(f"{sim.url}/export?ref=x", timeout=10).status_code == 401
    rpc = JsonRpc(sim.url)
    vdi = _small_vdi(rpc)
    ok = requests.get(f"{sim.url}/export_raw_vdi?vdi={vdi}&format=vhd", auth=("root", "password"), timeout=60)
    assert ok.status_code == 200
    bad = requests.get(f"{sim.url}/export_raw_vdi?vdi={vdi}&format=qcow9", auth=("root", "password"), timeout=60)
    assert bad.status_code == 404


def test_import_raw_vdi_round_trip(processes):
    sim = processes.sim("--vms", "3")
    rpc = JsonRpc(sim.url)
    vdi = _small_vdi(rpc)
    size = rpc("VDI.get_virtual_size", vdi)
    payload = bytes(range(256)) * 4096
    assert requests.put(f"{sim.url}/import_raw_vdi?session_id={rpc.session}&vdi={vdi}", data=b"",
                        timeout=30).status_code == 200  # probe PUT
    assert put_raw(sim, rpc, vdi, payload)["result"] == f"<value>{vdi}</value>"
    raw = requests.get(f"{sim.url}/export_raw_vdi?session_id={rpc.session}&vdi={vdi}", timeout=60).content
    assert len(raw) == size and raw[:len(payload)] == payload


def test_vdi_create_makes_an_empty_disk(processes):
    sim = processes.sim("--vms", "3")
    rpc = JsonRpc(sim.url)
    sr = next(r for r, v in rpc("SR.get_all_records").items() if v["content_type"] == "user")
    vdi = rpc("VDI.create", {"name_label": "new", "name_description": "", "SR": sr, "virtual_size": str(4 << 20),
                             "type": "user", "sharable": False, "read_only": False, "other_config": {}})
    record = rpc("VDI.get_record", vdi)
    assert record["SR"] == sr and int(record["virtual_size"]) == 4 << 20 and vdi in rpc("SR.get_VDIs", sr)
    raw = requests.get(f"{sim.url}/export_raw_vdi?session_id={rpc.session}&vdi={vdi}", timeout=30).content
    assert raw == bytes(4 << 20)
    with pytest.raises(XenAPI.Failure, match="FIELD_TYPE_ERROR"):
        rpc("VDI.create", {"SR": sr, "virtual_size": "512"})
    with pytest.raises(XenAPI.Failure, match="HANDLE_INVALID"):
        rpc("VDI.create", {"SR": "OpaqueRef:nope", "virtual_size": "512", "type": "user", "sharable": False,
                           "read_only": False, "other_config": {}})


@pytest.mark.parametrize("compression", ["false", "zstd"])
def test_xva_import_makes_the_same_vm(processes, compression):
    sim = processes.sim("--vms", "12", "--seed", "71")
    rpc = JsonRpc(sim.url)
    vms = rpc("VM.get_all_records")
    vm = next(r for r, v in vms.items() if v["power_state"] == "Halted" and not v["is_a_template"]
              and not v["is_control_domain"] and v["VBDs"])
    xva = requests.get(f"{sim.url}/export?session_id={rpc.session}&ref={vm}&use_compression={compression}",
                       timeout=60).content
    assert requests.put(f"{sim.url}/import?session_id={rpc.session}", data=b"", timeout=30).status_code == 200
    assert len(rpc("VM.get_all")) == len(vms)  # the empty probe created nothing
    response = requests.put(f"{sim.url}/import?session_id={rpc.session}", data=xva, timeout=60)
    record = wait_task(rpc, response.headers["task-id"])
    assert record["status"] == "success", record
    new = record["result"].split("<value>")[-1].split("</value>")[0]
    original, copy = rpc("VM.get_record", vm), rpc("VM.get_record", new)
    assert copy["power_state"] == "Halted" and copy["uuid"] != original["uuid"]
    for field in ("name_label", "memory_static_max", "VCPUs_max", "platform", "tags"):
        assert copy[field] == original[field], field
    # the copy's own XVA carries the same disks, chunk for chunk (checksums checked on reading)
    plain = lambda ref: requests.get(f"{sim.url}/export?session_id={rpc.session}&ref={ref}", timeout=60).content
    _, original_disks = read_disks(io.BytesIO(plain(vm)))
    _, copied_disks = read_disks(io.BytesIO(plain(new)))
    assert sorted(map(sorted, (d.items() for d in original_disks.values()))) == \
        sorted(map(sorted, (d.items() for d in copied_disks.values())))
    assert original_disks
    broken = requests.put(f"{sim.url}/import?session_id={rpc.session}", data=xva[:len(xva) // 2], timeout=60)
    failed = wait_task(rpc, broken.headers["task-id"])
    assert failed["status"] == "failure" and failed["error_info"][0] == "IMPORT_ERROR"
    assert len(rpc("VM.get_all")) == len(vms) + 1  # nothing half-made


def test_cancelled_import_stops_writing(processes):
    import socket

    sim = processes.sim("--vms", "3")
    rpc = JsonRpc(sim.url)
    vdi = _small_vdi(rpc)
    task = rpc("task.create", "upload", "")
    with socket.create_connection(("127.0.0.1", sim.port)) as sock:
        sock.sendall((f"PUT /import_raw_vdi?session_id={rpc.session}&vdi={vdi}&task_id={task} HTTP/1.1\r\n"
                      f"Host: x\r\nContent-Length: {4 << 20}\r\n\r\n").encode() + b"\x11" * (1 << 20))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # let the first block land
            with requests.get(f"{sim.url}/export_raw_vdi?session_id={rpc.session}&vdi={vdi}", stream=True,
                              timeout=30) as response:
                if response.raw.read(1 << 20) == b"\x11" * (1 << 20):
                    break
            time.sleep(0.05)
        rpc("task.cancel", task)
        sock.sendall(b"\x22" * (3 << 20))  # arrives after the cancel: not written
    deadline = time.monotonic() + 30
    while rpc("task.get_status", task) in ("pending", "cancelling") and time.monotonic() < deadline:
        time.sleep(0.05)
    record = rpc("task.get_record", task)
    assert record["status"] == "cancelled" or "TASK_CANCELLED" in record["error_info"]
    with requests.get(f"{sim.url}/export_raw_vdi?session_id={rpc.session}&vdi={vdi}", stream=True,
                      timeout=30) as response:
        raw = response.raw.read(4 << 20)
    assert raw[:1 << 20] == b"\x11" * (1 << 20)  # written as it arrived, as XAPI does
    assert b"\x22" not in raw


def test_delta_vhd_contains_only_changed_blocks(processes):
    sim = processes.sim("--vms", "3")
    rpc = JsonRpc(sim.url)
    vdi = _small_vdi(rpc)
    snapshot = rpc("VDI.snapshot", vdi, {})
    block = b"\x5a" * (2 << 20)
    put_raw(sim, rpc, vdi, block)
    delta = requests.get(f"{sim.url}/export_raw_vdi?session_id={rpc.session}&vdi={vdi}&format=vhd"
                         f"&base={snapshot}", timeout=60).content
    parsed = vhd_format.parse(delta)
    assert parsed["type"] == vhd_format.DISK_DIFFERENCING
    assert list(parsed["blocks"]) == [0] and parsed["blocks"][0] == block
    import uuid
    assert parsed["parent_uid"] == uuid.UUID(rpc("VDI.get_uuid", snapshot)).bytes


def test_host_is_slave_and_session_invalidation(processes):
    sim = processes.sim("--vms", "2", "--slave", "127.0.0.2")
    slave = XenAPI.Session(f"http://127.0.0.2:{sim.port}")
    with pytest.raises(XenAPI.Failure) as info:
        slave.xenapi.login_with_password("root", "password", "1.0", "t")
    assert info.value.details == ["HOST_IS_SLAVE", "127.0.0.1"]
    rpc = JsonRpc(sim.url)
    sim_admin(sim.url, "sessions/invalidate")
    with pytest.raises(XenAPI.Failure, match="SESSION_INVALID"):
        rpc("VM.get_all")


def local_disks(rpc, address):
    """VDIs of user VMs on the local storage of the host at ``address``."""
    host = next(r for r, h in rpc("host.get_all_records").items() if h["address"] == address)
    srs = {rpc("PBD.get_SR", pbd) for pbd in rpc("host.get_PBDs", host)}
    local = {sr for sr in srs if not rpc("SR.get_shared", sr)}
    return [ref for ref, v in rpc("VDI.get_all_records").items() if v["SR"] in local and v["type"] == "user"]


def test_transfers_go_to_the_host_holding_local_storage(processes):
    sim = processes.sim("--vms", "30", "--seed", "5", "--slave", "127.0.0.2")
    rpc = JsonRpc(sim.url)
    vdi = min(local_disks(rpc, "127.0.0.2"), key=lambda r: int(rpc("VDI.get_virtual_size", r)))
    path = f"/export_raw_vdi?session_id={rpc.session}&vdi={vdi}&format=raw"
    moved = requests.get(sim.url + path, allow_redirects=False, timeout=30)
    assert moved.status_code == 302 and moved.headers["Location"] == f"http://127.0.0.2:{sim.port}{path}"
    body = requests.get(sim.url + path, timeout=60).content  # followed: served by the member
    record = rpc("VDI.get_record", vdi)
    assert body == DiskContent.generate(5, record["uuid"], record["virtual_size"]).read(0, len(body))
    assert len(body) == record["virtual_size"]
    shared = next(r for r, v in rpc("VDI.get_all_records").items() if v["type"] == "user" and r not in
                  local_disks(rpc, "127.0.0.2") + local_disks(rpc, "127.0.0.1") + local_disks(rpc, "127.0.0.3"))
    direct = requests.get(f"{sim.url}/export_raw_vdi?session_id={rpc.session}&vdi={shared}&format=raw",
                          allow_redirects=False, stream=True, timeout=30)
    assert direct.status_code == 200  # shared storage: served by the master
    direct.close()
    # host 3's address is not served here: its transfers stay on the master
    third = local_disks(rpc, "127.0.0.3")[0]
    assert requests.get(f"{sim.url}/export_raw_vdi?session_id={rpc.session}&vdi={third}&format=raw",
                        allow_redirects=False, stream=True, timeout=30).status_code == 200
    probe = requests.put(f"{sim.url}/import_raw_vdi?session_id={rpc.session}&vdi={vdi}&format=raw", data=b"",
                         allow_redirects=False, timeout=30)  # uploads are redirected too
    assert probe.status_code == 302 and probe.headers["Location"].startswith(f"http://127.0.0.2:{sim.port}/")
    assert sim_admin(sim.url, "state")["redirects"] == 3


def test_tls_and_in_process_start():
    with Simulator(vms=2, tls=True) as sim:
        assert sim.url.startswith("https://")
        response = requests.post(sim.url + "/jsonrpc", json={"jsonrpc": "2.0", "id": 1, "method":
                                 "session.login_with_password", "params": ["root", "password"]},
                                 verify=sim.ca_path, timeout=10)
        assert response.json()["result"].startswith("OpaqueRef:")
        with pytest.raises(requests.exceptions.SSLError):
            requests.post(sim.url + "/jsonrpc", json={}, timeout=10)


def test_hundred_event_watchers_keep_it_responsive(processes):
    sim = processes.sim("--vms", "20")
    rpc = JsonRpc(sim.url)
    token = rpc("event.from", ["*"], "", 0.0)["token"]
    results, errors = [], []

    def watch():
        try:
            session = JsonRpc(sim.url)
            results.append(session("event.from", ["vm"], token, 20.0)["events"])
        except Exception as exc:
            errors.append(repr(exc))

    watchers = [threading.Thread(target=watch) for _ in range(100)]
    for watcher in watchers:
        watcher.start()
    time.sleep(1)
    vms = rpc("VM.get_all_records")  # answers while 100 calls are blocked (timeout is a hang guard)
    vm = next(r for r, v in vms.items() if v["power_state"] == "Halted" and not v["is_a_template"])
    rpc("VM.add_tags", vm, "wake-up")
    for watcher in watchers:
        watcher.join(30)
    assert not errors and len(results) == 100
    assert all(any(e["ref"] == vm for e in events) for events in results)


@pytest.fixture(scope="module")
def xen_api_npm():
    return npm_package("xen-api", "xen-api")


def test_npm_xen_api_client(xen_api_npm, processes):
    node, folder = xen_api_npm
    sim = processes.sim("--vms", "8", "--seed", "41")
    rpc = JsonRpc(sim.url)
    vdis = rpc("VDI.get_all_records")
    vdi = min((v for v in vdis.values() if v["type"] == "user" and not v["read_only"]),
              key=lambda v: v["virtual_size"])
    script = os.path.join(folder, "client.mjs")
    shutil.copy(os.path.join(os.path.dirname(__file__), "data", "xen_api_client.mjs"), script)
    result = subprocess.run([node, script, sim.url, vdi["uuid"]], capture_output=True, text=True,
                            timeout=120, cwd=folder)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["vms"] == len(rpc("VM.get_all")) and report["hosts"] == 3
    assert report["renamed"] == "renamed-by-xen-api"
    assert report["bytes"] == vdi["virtual_size"]


def test_latency_refusal_and_html_error_faults(processes):
    sim = processes.sim("--vms", "3")
    rpc = JsonRpc(sim.url)
    sim_admin(sim.url, "faults", {"latency": 0.3})
    started = time.monotonic()
    rpc("VM.get_all")
    assert time.monotonic() - started >= 0.3  # a lower bound: the fault sleeps at least that long
    sim_admin(sim.url, "faults", {"reset": True, "refuse": 1.0})
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(sim.url + "/jsonrpc", json={"jsonrpc": "2.0", "id": 1, "method": "VM.get_all",
                                                  "params": [rpc.session]}, timeout=10)
    time.sleep(1.2)  # refusal is time-limited, so the admin endpoint is reachable again
    sim_admin(sim.url, "faults", {"reset": True})
    vdi = _small_vdi(JsonRpc(sim.url))
    sim_admin(sim.url, "faults", {"export_html_error_after": 1024})
    body = requests.get(f"{sim.url}/export_raw_vdi?session_id={rpc.session}&vdi={vdi}&format=vhd",
                        timeout=30).content
    assert b"HTTP/1.1 500" in body  # XAPI's error page written into the started body
    with pytest.raises(ValueError):
        vhd_format.parse(body)
    with pytest.raises(requests.exceptions.HTTPError):
        sim_admin(sim.url, "faults", {"nonsense": 1})


def test_export_rate_paces_the_body(processes):
    sim = processes.sim("--vms", "3")
    rpc = JsonRpc(sim.url)
    vdi = _small_vdi(rpc)
    size = int(rpc("VDI.get_virtual_size", vdi))
    sim_admin(sim.url, "faults", {"export_rate": size / 0.6})
    started = time.monotonic()
    body = requests.get(f"{sim.url}/export_raw_vdi?session_id={rpc.session}&vdi={vdi}&format=raw",
                        timeout=60).content
    assert len(body) == size
    assert time.monotonic() - started >= 0.5  # a lower bound: pacing never sends early



def test_state_changing_operations_and_their_guards(processes):
    sim = processes.sim("--vms", "6", "--seed", "51")
    rpc = JsonRpc(sim.url)
    vms = rpc("VM.get_all_records")
    vm = next(r for r, v in vms.items() if v["power_state"] == "Halted" and not v["is_a_template"])
    dom0 = next(r for r, v in vms.items() if v["is_control_domain"])

    def state():
        return rpc("VM.get_power_state", vm)

    def fails(code, method, *args):
        with pytest.raises(XenAPI.Failure) as info:
            rpc(method, *args)
        assert info.value.details[0] == code, info.value.details

    fails("VM_BAD_POWER_STATE", "VM.clean_shutdown", vm)
    fails("VM_BAD_POWER_STATE", "VM.resume", vm, False, False)
    rpc("VM.start", vm, False, False)
    assert state() == "Running" and rpc("VM.get_resident_on", vm) != "OpaqueRef:NULL"
    rpc("VM.pause", vm)
    assert state() == "Paused"
    fails("VM_BAD_POWER_STATE", "VM.suspend", vm)
    rpc("VM.unpause", vm)
    rpc("VM.clean_reboot", vm)
    rpc("VM.hard_reboot", vm)
    rpc("VM.suspend", vm)
    assert state() == "Suspended" and rpc("VM.get_resident_on", vm) == "OpaqueRef:NULL"
    rpc("VM.resume", vm, False, False)
    fails("VM_BAD_POWER_STATE", "VM.destroy", vm)
    fails("VM_BAD_POWER_STATE", "VM.clone", vm, "clone of running")
    rpc("VM.hard_shutdown", vm)
    assert state() == "Halted"
    fails("OPERATION_NOT_ALLOWED", "VM.clean_shutdown", dom0)
    # XAPI checks the power state before the kind of VM (xapi_vm_lifecycle.ml): a running
    # control domain cannot be destroyed because it runs.
    fails("VM_BAD_POWER_STATE", "VM.destroy", dom0)

    clone = rpc("VM.clone", vm, "a clone")
    copy = rpc("VM.copy", vm, "a copy", "OpaqueRef:NULL")
    for new in (clone, copy):
        record = rpc("VM.get_record", new)
        assert record["power_state"] == "Halted" and not record["is_a_snapshot"]
        disks = [rpc("VBD.get_VDI", v) for v in record["VBDs"] if rpc("VBD.get_type", v) == "Disk"]
        originals = [rpc("VBD.get_VDI", v) for v in rpc("VM.get_VBDs", vm) if rpc("VBD.get_type", v) == "Disk"]
        assert disks and not set(disks) & set(originals)  # its own disks
    snapshot = rpc("VM.snapshot", vm, "snap", [])
    snap = rpc("VM.get_record", snapshot)
    assert snap["is_a_snapshot"] and snap["is_a_template"] and snap["snapshot_of"] == vm
    assert snapshot in rpc("VM.get_snapshots", vm)
    rpc("VM.destroy", clone)
    fails("HANDLE_INVALID", "VM.get_record", clone)

    vdi = _small_vdi(rpc)
    vdi_clone = rpc("VDI.clone", vdi, {})
    assert rpc("VDI.get_virtual_size", vdi_clone) == rpc("VDI.get_virtual_size", vdi)
    vdi_snap = rpc("VDI.snapshot", vdi, {})
    assert rpc("VDI.get_snapshot_of", vdi_snap) == vdi and rpc("VDI.get_is_a_snapshot", vdi_snap)
    rpc("VDI.destroy", vdi_clone)
    fails("HANDLE_INVALID", "VDI.get_record", vdi_clone)

    task = rpc("task.create", "manual", "not cancellable")
    fails("OPERATION_NOT_ALLOWED", "task.cancel", task)
    rpc("task.destroy", task)  # pending: marked, not deleted (XAPI semantics)
    assert "destroy" in rpc("task.get_current_operations", task).values()
    rpc("VM.set_name_label", vm, "renamed")
    rpc("VM.add_to_other_config", vm, "k", "v")
    fails("MAP_DUPLICATE_KEY", "VM.add_to_other_config", vm, "k", "w")
    rpc("VM.remove_from_other_config", vm, "k")
    assert "k" not in rpc("VM.get_other_config", vm) and rpc("VM.get_name_label", vm) == "renamed"
    larger = int(rpc("VM.get_memory_static_max", vm)) + 2**30
    rpc("VM.set_memory_static_max", vm, str(larger))  # int64 given as a string, as npm sends it
    assert rpc("VM.get_memory_static_max", vm) == larger
