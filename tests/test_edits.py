"""Edits, tags, deletions and creations through gunicorn against the simulator: each
answers once the next read shows it; bodies are validated; the pool's refusals keep
XAPI's code."""
import pytest

from .conftest import Gateway, start_sim
from .management import client, guest, xapi

GiB = 1 << 30


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("edits")
    sim = start_sim(tmp, "--vms", "12", "--seed", "1")
    gw = Gateway(tmp, sim.url)
    yield sim, client(gw)
    gw.stop()
    sim.stop()


def patch(api, path, body):
    return api.request("PATCH", path, json=body)


def test_vm_settings(stack):
    sim, api = stack
    # a Linux guest: Windows templates' static minimum is above the 2 GiB set here
    vm = next(v for v in api.objects("vms", "power_state:Halted") if v["memory"]["static"][0] <= 2 * GiB)
    host = api.objects("hosts")[1]
    body = {"nameLabel": "renamed", "nameDescription": "described", "memory": "2 GiB", "cpus": 3,
            "cpusStaticMax": 4, "autoPoweron": True, "highAvailability": "restart", "affinityHost": host["id"],
            "tags": ["a", "b"], "notes": "hello", "cpuWeight": 512, "cpuCap": 80, "coresPerSocket": 1,
            "viridian": False, "vga": "std", "videoram": 8, "startDelay": 5, "hasVendorDevice": True,
            "blockedOperations": {"destroy": "protected", "suspend": True}, "xenStoreData": {"vm-data/role": "web"},
            "creation": {"user": "someone"}, "PV_args": "quiet"}
    changed = patch(api, f"/rest/v0/vms/{vm['id']}", body)
    assert changed.status_code == 204, changed.text
    after = api.one("vms", vm["id"])
    assert after["name_label"] == "renamed" and after["name_description"] == "described"
    assert after["memory"]["size"] == 2 * GiB and after["CPUs"] == {"max": 4, "number": 3}
    assert after["auto_poweron"] and after["high_availability"] == "restart" and after["affinityHost"] == host["id"]
    assert after["tags"] == ["a", "b"] and after["notes"] == "hello" and after["cpuWeight"] == 512
    assert after["cpuCap"] == 80 and after["coresPerSocket"] == 1 and not after["viridian"]
    assert after["vga"] == "std" and after["videoram"] == 8 and after["startDelay"] == 5
    assert after["blockedOperations"] == {"destroy": "protected", "suspend": "true"}
    # Xen Orchestra updates xenstore data (keys prefixed vm-data/): what was there stays
    assert after["xenStoreData"] == {**vm["xenStoreData"], "vm-data/role": "web"}
    assert after["creation"]["user"] == "someone"
    assert api.one("pools", vm["$pool"])["auto_poweron"]  # a VM starts with its pool only if the pool does
    assert patch(api, f"/rest/v0/vms/{vm['id']}", {"blockedOperations": {"suspend": False},
                                                   "affinityHost": None}).status_code == 204
    after = api.one("vms", vm["id"])
    assert after["blockedOperations"] == {"destroy": "protected"} and "affinityHost" not in after
    # a running VM: live CPUs and dynamic memory, within its static limits
    assert patch(api, f"/rest/v0/vms/{vm['id']}", {"memoryStaticMax": 4 * GiB}).status_code == 204
    api.ok("vms", vm["id"], "start")
    assert patch(api, f"/rest/v0/vms/{vm['id']}", {"cpus": 4}).status_code == 204
    assert api.one("vms", vm["id"])["CPUs"]["number"] == 4
    refused = patch(api, f"/rest/v0/vms/{vm['id']}", {"cpusStaticMax": 8})
    assert refused.status_code == 409 and refused.json()["data"]["code"] == "VM_BAD_POWER_STATE"
    assert patch(api, f"/rest/v0/vms/{vm['id']}", {"memoryMax": 3 * GiB}).status_code == 204
    assert api.one("vms", vm["id"])["memory"]["dynamic"][1] == 3 * GiB
    too_much = patch(api, f"/rest/v0/vms/{vm['id']}", {"memoryMax": 8 * GiB})
    assert too_much.status_code == 409 and too_much.json()["data"]["code"] == "MEMORY_CONSTRAINT_VIOLATION"


@pytest.mark.parametrize("body, field", [
    ({"name_label": "x", "colour": "red"}, "colour"), ({"cpus": "four"}, "cpus"), ({"cpus": 0}, "cpus"),
    ({"vga": "vesa"}, "vga"), ({"memory": "lots"}, "memory"), ({"autoPoweron": "yes"}, "autoPoweron"),
    ({"xenStoreData": {"../etc": "x"}}, "xenStoreData"), ({"blockedOperations": {"fly": True}}, "blockedOperations"),
])
def test_vm_bodies_are_validated(stack, body, field):
    sim, api = stack
    vm = api.objects("vms")[0]["id"]
    response = patch(api, f"/rest/v0/vms/{vm}", body)
    assert response.status_code == 400 and field in response.json()["data"]["errors"], response.text


def test_other_edits(stack):
    sim, api = stack
    vdi = next(d for d in api.objects("vdis") if not d["name_label"].endswith(".iso"))
    assert patch(api, f"/rest/v0/vdis/{vdi['id']}", {"name_label": "data", "name_description": "d",
                                                      "size": vdi["size"] * 2}).status_code == 204
    after = api.one("vdis", vdi["id"])
    assert (after["name_label"], after["name_description"], after["size"]) == ("data", "d", vdi["size"] * 2)
    shrink = patch(api, f"/rest/v0/vdis/{vdi['id']}", {"size": 1})
    assert shrink.status_code == 422 and shrink.json()["data"]["parameter"] == "size", shrink.text
    assert "422" in api.get("/rest/v0/openapi.json").json()["paths"]["/vdis/{key}"]["patch"]["responses"]
    vif = api.objects("vifs")[0]
    assert patch(api, f"/rest/v0/vifs/{vif['id']}", {"allowedIpv4Addresses": ["10.0.0.5"], "rateLimit": 1000,
                                                      "txChecksumming": False}).status_code == 204
    after = api.one("vifs", vif["id"])
    assert after["allowedIpv4Addresses"] == ["10.0.0.5"] and after["lockingMode"] == "locked"
    assert after["rateLimit"] == 1000 and after["txChecksumming"] is False
    assert patch(api, f"/rest/v0/vifs/{vif['id']}", {"rateLimit": None, "lockingMode": "unlocked"}).status_code == 204
    assert "rateLimit" not in api.one("vifs", vif["id"]) and api.one("vifs", vif["id"])["lockingMode"] == "unlocked"
    for collection in ("hosts", "pools", "srs", "networks", "vm-templates", "vm-snapshots", "vdi-snapshots"):
        obj = api.objects(collection)[0]
        assert patch(api, f"/rest/v0/{collection}/{obj['id']}", {"name_label": f"new {collection}"}).status_code == 204
        assert api.one(collection, obj["id"])["name_label"] == f"new {collection}", collection
    assert patch(api, f"/rest/v0/hosts/{api.objects('hosts')[0]['id']}", {"memory": 1}).status_code == 400
    assert patch(api, "/rest/v0/vms/nope", {"nameLabel": "x"}).status_code == 404
    assert patch(api, f"/rest/v0/pifs/{api.objects('pifs')[0]['id']}", {"name_label": "x"}).status_code == 405


def test_tags(stack):
    sim, api = stack
    for collection in ("vms", "vm-templates", "vm-snapshots", "vm-controllers", "vdis", "vdi-snapshots", "srs",
                       "pools", "networks", "hosts"):
        obj = api.objects(collection)[0]
        assert api.request("PUT", f"/rest/v0/{collection}/{obj['id']}/tags/web tier").status_code == 204
        assert "web tier" in api.one(collection, obj["id"])["tags"], collection
        assert api.request("PUT", f"/rest/v0/{collection}/{obj['id']}/tags/web tier").status_code == 204
        assert api.one(collection, obj["id"])["tags"].count("web tier") == 1
        assert api.request("DELETE", f"/rest/v0/{collection}/{obj['id']}/tags/web tier").status_code == 204
        assert "web tier" not in api.one(collection, obj["id"])["tags"]
    assert api.request("PUT", "/rest/v0/vms/nope/tags/x").status_code == 404
    assert api.request("PUT", f"/rest/v0/vifs/{api.objects('vifs')[0]['id']}/tags/x").status_code in (404, 405)


def test_deletions(stack):
    sim, api = stack
    running = guest(api, "Running")
    disks = [api.one("vbds", b)["VDI"] for b in running["$VBDs"] if not api.one("vbds", b)["is_cd_drive"]]
    snapshot = api.ok("vms", running["id"], "snapshot")["id"]
    # an attached disk is refused; Xen Orchestra's API powers a running VM off to delete it
    refused = api.request("DELETE", f"/rest/v0/vdis/{disks[0]}")
    assert refused.status_code == 409 and refused.json()["data"]["code"] == "VDI_IN_USE"
    assert api.request("DELETE", f"/rest/v0/vms/{running['id']}").status_code == 204
    assert api.get(f"/rest/v0/vms/{running['id']}").status_code == 404
    assert api.get(f"/rest/v0/vm-snapshots/{snapshot}").status_code == 404  # its snapshots went with it
    assert all(api.get(f"/rest/v0/vdis/{d}").status_code == 404 for d in disks)  # and its disks
    protected = guest(api, "Halted", shared=None)
    assert patch(api, f"/rest/v0/vms/{protected['id']}", {"blockedOperations": {"destroy": True}}).status_code == 204
    assert api.request("DELETE", f"/rest/v0/vms/{protected['id']}").status_code == 403
    default = next(t for t in api.objects("vm-templates") if t["isDefaultTemplate"])
    assert api.request("DELETE", f"/rest/v0/vm-templates/{default['id']}").status_code == 409
    blocked = {v["id"] for v in api.objects("vms") if "destroy" in (v.get("blockedOperations") or {})}
    source = guest(api, "Halted", shared=None, exclude=blocked)  # a clone keeps its source's blocks
    template = api.ok("vms", source["id"], "clone", {"name_label": "tpl"})
    xapi(sim)("VM.set_is_a_template", api.one("vms", template["id"])["_xapiRef"], True)
    # a change made behind xorest's back is seen once its event arrives, by each worker
    api.until(lambda: all(api.get(f"/rest/v0/vm-templates/{template['id']}").status_code == 200 for _ in range(4)),
              what="the new template listed")
    assert api.request("DELETE", f"/rest/v0/vm-templates/{template['id']}").status_code == 204
    other_snapshot = api.objects("vm-snapshots")[0]
    snapshot_disks = [api.one("vbds", b)["VDI"] for b in other_snapshot["$VBDs"]
                      if not api.one("vbds", b)["is_cd_drive"]]
    assert api.request("DELETE", f"/rest/v0/vm-snapshots/{other_snapshot['id']}").status_code == 204
    assert api.get(f"/rest/v0/vm-snapshots/{other_snapshot['id']}").status_code == 404
    assert all(api.get(f"/rest/v0/vdi-snapshots/{d}").status_code == 404 for d in snapshot_disks)
    vdi_snapshot = api.objects("vdi-snapshots")[0]
    assert api.request("DELETE", f"/rest/v0/vdi-snapshots/{vdi_snapshot['id']}").status_code == 204
    assert api.get(f"/rest/v0/vdi-snapshots/{vdi_snapshot['id']}").status_code == 404
    vm = guest(api, "Halted", shared=None, exclude={protected["id"]})
    vbd = next(api.one("vbds", b) for b in vm["$VBDs"])
    assert api.request("DELETE", f"/rest/v0/vbds/{vbd['id']}").status_code == 204
    assert vbd["id"] not in api.one("vms", vm["id"])["$VBDs"]
    vif = vm["VIFs"][0]
    assert api.request("DELETE", f"/rest/v0/vifs/{vif}").status_code == 204
    assert api.get(f"/rest/v0/vifs/{vif}").status_code == 404
    nfs = next(s for s in api.objects("srs") if s["name_label"] == "NFS shared storage")
    not_empty = api.request("DELETE", f"/rest/v0/srs/{nfs['id']}")
    assert not_empty.status_code == 409 and not_empty.json()["data"]["code"] in ("VDI_IN_USE", "SR_NOT_EMPTY")
    assert api.request("DELETE", "/rest/v0/vms/nope").status_code == 404
    assert api.request("DELETE", f"/rest/v0/pifs/{api.objects('pifs')[0]['id']}").status_code == 405


def test_creations(stack):
    sim, api = stack
    host = api.objects("hosts")[0]
    sr = api.request("POST", "/rest/v0/srs", json={"hostId": host["id"], "SR_type": "lvm", "name_label": "new lvm",
                                                  "device_config": {"device": "/dev/sdz"}, "size": 10 * GiB})
    assert sr.status_code == 201 and sr.headers["Location"] == f"/rest/v0/srs/{sr.json()['id']}"
    new_sr = api.one("srs", sr.json()["id"])
    assert new_sr["name_label"] == "new lvm" and not new_sr["shared"] and new_sr["size"] == 10 * GiB
    assert new_sr["other_config"].get("auto-scan") == "true"
    unknown = api.request("POST", "/rest/v0/srs", json={"hostId": host["id"], "SR_type": "nonsense", "name_label": "x",
                                                        "device_config": {}})
    assert unknown.status_code == 400 and "SR_type" in unknown.json()["data"]["errors"]  # XO's list of types
    assert api.request("POST", "/rest/v0/srs", json={"hostId": host["id"], "SR_type": "linstor", "name_label": "x",
                                                     "device_config": {}}).status_code == 501
    vdi = api.request("POST", "/rest/v0/vdis", json={"srId": new_sr["id"], "virtual_size": GiB, "name_label": "blank",
                                                    "tags": ["new"]})
    assert vdi.status_code == 201
    disk = api.one("vdis", vdi.json()["id"])
    assert disk["size"] == GiB and disk["$SR"] == new_sr["id"] and disk["tags"] == ["new"]
    vm = guest(api, "Running")
    vbd = api.request("POST", "/rest/v0/vbds", json={"VM": vm["id"], "VDI": disk["id"]})
    assert vbd.status_code == 201
    attached = api.one("vbds", vbd.json()["id"])
    assert attached["attached"] and attached["VDI"] == disk["id"] and attached["position"] not in ("0", "3")
    network = api.objects("networks")[1]
    vif = api.request("POST", "/rest/v0/vifs", json={"vmId": vm["id"], "networkId": network["id"], "MTU": 9000})
    assert vif.status_code == 201
    created = api.one("vifs", vif.json()["id"])
    assert created["attached"] and created["MTU"] == 9000 and created["$network"] == network["id"]
    pool = api.objects("pools")[0]
    net = api.request("POST", "/rest/v0/networks", json={"poolId": pool["id"], "name": "lab"})
    assert net.status_code == 201 and api.one("networks", net.json()["id"])["name_label"] == "lab"
    assert api.request("POST", "/rest/v0/networks", json={"poolId": pool["id"], "name": "x", "vlan": 3}).status_code \
        == 400
    # clean up what a later test must not trip on
    assert api.request("DELETE", f"/rest/v0/vbds/{vbd.json()['id']}").status_code == 204
    assert api.request("DELETE", f"/rest/v0/vdis/{disk['id']}").status_code == 204
    assert api.request("DELETE", f"/rest/v0/srs/{new_sr['id']}").status_code == 204
    assert api.get(f"/rest/v0/srs/{new_sr['id']}").status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"srId": "x"}, "virtual_size"), ({"srId": "x", "virtual_size": -1}, "virtual_size"),
    ({"srId": "x", "virtual_size": 1, "type": "weird"}, "type"), ({"srId": "x", "virtual_size": 1.5}, "virtual_size"),
])
def test_creation_bodies_are_validated(stack, body, field):
    sim, api = stack
    response = api.request("POST", "/rest/v0/vdis", json=body)
    assert response.status_code == 400 and field in response.json()["data"]["errors"]


def test_servers_registered_over_rest(stack, tmp_path):
    sim, api = stack
    other = start_sim(tmp_path, "--vms", "2", "--seed", "4")
    try:
        wrong = api.request("POST", "/rest/v0/servers", json={"host": other.url, "username": "root",
                                                              "password": "nope"})
        # what the client gave does not make a pool: its request's fault (422), with XAPI's code
        assert wrong.status_code == 422 and wrong.json()["data"]["code"] == "SESSION_AUTHENTICATION_FAILED"
        away = api.request("POST", "/rest/v0/servers", json={"host": "http://127.0.0.1:9", "username": "root",
                                                             "password": "x"})
        assert away.status_code == 422 and "not reachable" in away.json()["error"]
        assert api.request("POST", "/rest/v0/servers", json={"host": other.url, "username": "root", "password": "p",
                                                             "httpProxy": "http://proxy"}).status_code == 501
        assert api.request("POST", "/rest/v0/servers", json={"host": other.url}).status_code == 400
        assert len(api.objects("servers")) == 1  # none of them was added
        added = api.request("POST", "/rest/v0/servers", json={"host": other.url, "username": "root",
                                                              "password": "password", "label": "second"})
        assert added.status_code == 201 and added.headers["Location"] == f"/rest/v0/servers/{added.json()['id']}"
        server = api.one("servers", added.json()["id"])
        assert server["label"] == "second" and server["status"] == "connected"  # visible at once, everywhere
        assert len(api.objects("pools")) == 2
        twice = api.request("POST", "/rest/v0/servers", json={"host": other.url, "username": "root",
                                                              "password": "password"})
        assert twice.status_code == 409
        assert api.request("DELETE", f"/rest/v0/servers/{server['id']}").status_code == 204
        assert api.get(f"/rest/v0/servers/{server['id']}").status_code == 404 and len(api.objects("pools")) == 1
    finally:
        other.stop()


NOWHERE = "00000000-0000-0000-0000-000000000000"
#: Every collection with a PATCH, and a body each accepts.
EDITABLE = {"vms": {"nameLabel": "x"}, "vm-templates": {"name_label": "x"}, "vm-snapshots": {"name_label": "x"},
            "vdis": {"name_label": "x"}, "vdi-snapshots": {"name_label": "x"}, "vifs": {"txChecksumming": True},
            "hosts": {"name_label": "x"}, "pools": {"name_label": "x"}, "srs": {"name_label": "x"},
            "networks": {"name_label": "x"}}
TAGGED = ("vms", "vm-snapshots", "vm-templates", "vm-controllers", "vdis", "vdi-snapshots", "srs", "pools", "networks",
          "hosts")


@pytest.mark.parametrize("collection", EDITABLE)
def test_edits_of_missing_objects_and_bad_bodies(stack, collection):
    sim, api = stack
    missing = patch(api, f"/rest/v0/{collection}/{NOWHERE}", EDITABLE[collection])
    assert missing.status_code == 404 and missing.json()["data"]["id"] == NOWHERE, missing.text
    obj = api.objects(collection)[0]
    unknown = patch(api, f"/rest/v0/{collection}/{obj['id']}", {**EDITABLE[collection], "colour": "red"})
    assert unknown.status_code == 400 and "colour" in unknown.json()["data"]["errors"], unknown.text
    field = next(iter(EDITABLE[collection]))
    typed = patch(api, f"/rest/v0/{collection}/{obj['id']}", {field: ["not", "a", "scalar"]})
    assert typed.status_code == 400 and field in typed.json()["data"]["errors"], typed.text
    not_json = api.request("PATCH", f"/rest/v0/{collection}/{obj['id']}", json=["a list"])
    assert not_json.status_code == 400


@pytest.mark.parametrize("collection", TAGGED)
def test_tags_of_missing_objects(stack, collection):
    sim, api = stack
    for method in ("PUT", "DELETE"):
        response = api.request(method, f"/rest/v0/{collection}/{NOWHERE}/tags/web")
        assert response.status_code == 404 and response.json()["data"]["id"] == NOWHERE, (method, response.text)


def test_deleting_an_attached_vbd_unplugs_it_first(stack):
    """As Xen Orchestra's VBD_destroy: unplugged (made unpluggable if it was not), then destroyed;
    the disk stays."""
    sim, api = stack
    vm = guest(api, "Running")
    vbd = next(api.one("vbds", b) for b in vm["$VBDs"] if not api.one("vbds", b)["is_cd_drive"]
               and api.one("vbds", b)["attached"])
    assert api.request("DELETE", f"/rest/v0/vbds/{vbd['id']}").status_code == 204
    assert api.get(f"/rest/v0/vbds/{vbd['id']}").status_code == 404
    assert vbd["id"] not in api.one("vms", vm["id"])["$VBDs"]
    assert api.one("vdis", vbd["VDI"])["$VBDs"] == []  # the disk stays, attached to nothing
    assert api.request("DELETE", f"/rest/v0/vbds/{NOWHERE}").status_code == 404


def test_creations_refused(stack):
    sim, api = stack
    vm = guest(api, "Halted", shared=None)
    nfs = next(s for s in api.objects("srs") if s["name_label"] == "NFS shared storage")
    disk = api.request("POST", "/rest/v0/vdis", json={"srId": nfs["id"], "virtual_size": GiB,
                                                      "name_label": "spare"}).json()["id"]
    used = next(api.one("vbds", b)["position"] for b in vm["$VBDs"])
    for body, status in (({"VM": NOWHERE, "VDI": disk}, 404), ({"VM": vm["id"], "VDI": NOWHERE}, 404),
                         ({"VM": vm["id"]}, 400), ({"VM": vm["id"], "VDI": disk, "mode": "rw"}, 400),
                         ({"VM": vm["id"], "VDI": disk, "userdevice": used}, 409)):
        response = api.request("POST", "/rest/v0/vbds", json=body)
        assert response.status_code == status, (body, response.text)
        if status == 409:
            assert response.json()["data"]["code"] == "DEVICE_ALREADY_EXISTS"
    network = api.objects("networks")[0]["id"]
    device = api.one("vifs", vm["VIFs"][0])["device"]
    for body, status in (({"vmId": NOWHERE, "networkId": network}, 404), ({"vmId": vm["id"], "networkId": NOWHERE}, 404),
                         ({"vmId": vm["id"]}, 400), ({"vmId": vm["id"], "networkId": network, "MTU": 10}, 400),
                         ({"vmId": vm["id"], "networkId": network, "device": device}, 409)):
        response = api.request("POST", "/rest/v0/vifs", json=body)
        assert response.status_code == status, (body, response.text)
        if status == 409:
            assert response.json()["data"]["code"] == "DEVICE_ALREADY_EXISTS"
    unknown_host = api.request("POST", "/rest/v0/srs", json={"hostId": NOWHERE, "SR_type": "lvm", "name_label": "x",
                                                             "device_config": {"device": "/dev/sdq"}})
    assert unknown_host.status_code == 404 and unknown_host.json()["data"]["id"] == NOWHERE
    assert not [s for s in api.objects("srs") if s["name_label"] == "x"]
    assert api.request("DELETE", f"/rest/v0/vdis/{disk}").status_code == 204
