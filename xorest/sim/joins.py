"""``pool.join``: a simulated pool of one host joins another simulated pool.

On the joining side XAPI's preconditions (a lone host, no guests, no shared storage),
then a login to the master with the credentials given; the master (another simulator,
reached over HTTP as XAPI reaches it) adds the host to its pool; the joining host then
answers ``HOST_IS_SLAVE``, as a pool member does.  The address may carry a port
(``127.0.0.1:8443``): simulators do not listen on XAPI's 443.
"""
import json
import ssl
import time
import urllib.error
import urllib.request
import xmlrpc.client

from . import lifecycle
from .rpc import XapiFailure
from .state import NULL_REF, now

GiB = 1 << 30


def _prechecks(db, force):
    if len(db.tables["host"]) > 1:
        raise XapiFailure("POOL_JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS")
    guests = [vm for vm in db.tables["VM"].values() if not vm["is_control_domain"] and not vm["is_a_template"]
              and not vm["is_a_snapshot"]]
    if any(vm["power_state"] != "Halted" for vm in guests):
        raise XapiFailure("POOL_JOINING_HOST_CANNOT_HAVE_RUNNING_VMS")
    if any(vm["current_operations"] for vm in guests):
        raise XapiFailure("POOL_JOINING_HOST_CANNOT_HAVE_VMS_WITH_CURRENT_OPERATIONS")
    if not force and any(sr["shared"] for sr in db.tables["SR"].values()):
        raise XapiFailure("POOL_JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS")


def _master_url(address, scheme):
    return address if "://" in address else f"{scheme}://{address}"


def join(op, master_address, username, password, force=False):
    """``pool.join`` (``force``: ``pool.join_force``, which lets shared SRs be)."""
    with op.locked() as db:
        _prechecks(db, force)
        host = db.record("host", next(iter(db.tables["host"])))
        member = {"uuid": host["uuid"], "name_label": host["name_label"], "hostname": host["hostname"], "address": host["address"],
                  "software_version": host["software_version"], "cpu_info": host["cpu_info"]}
    url = _master_url(master_address, op.api.scheme)
    # The simulators' certificates come from throwaway CAs the other one does not know.
    context = ssl._create_unverified_context() if url.startswith("https") else None
    try:
        session = xmlrpc.client.ServerProxy(url, allow_none=True, context=context).session.login_with_password(
            username, password, "1.0", "pool.join")
        if session.get("Status") != "Success":
            raise XapiFailure(*session.get("ErrorDescription", ["POOL_JOINING_HOST_CONNECTION_FAILED"]))
        request = urllib.request.Request(url + "/_sim/members", data=json.dumps(member).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            answer.read()
    except (OSError, urllib.error.URLError, xmlrpc.client.Error) as exc:
        raise XapiFailure("POOL_JOINING_HOST_CONNECTION_FAILED", str(exc)) from None
    op.work("pool.join")
    op.api.slave_of = master_address  # from now on, this host answers as a member
    op.api.sessions.invalidate_all()
    return ""


def join_force(op, master_address, username, password):
    return join(op, master_address, username, password, force=True)


def add_member(db, member):
    """On the master: a host that joined, with its metrics, control domain, CPUs, local SR,
    interfaces on the pool's networks, and the pool's shared SRs plugged."""
    metrics = db.create("host_metrics", {"memory_total": 256 * GiB, "memory_free": 128 * GiB, "live": True,
                                         "last_updated": now()})
    stamp = str(int(time.time()))
    host = db.create("host", {
        **({"uuid": member["uuid"]} if member.get("uuid") else {}),  # a host keeps its uuid as it joins
        "name_label": member.get("name_label", "joined host"), "hostname": member.get("hostname", ""),
        "address": member.get("address", ""), "enabled": True, "metrics": metrics,
        "software_version": dict(member.get("software_version") or {}), "cpu_info": dict(member.get("cpu_info") or {}),
        "other_config": {"boot_time": stamp, "agent_start_time": stamp}, "API_version_major": 2,
        "API_version_minor": 23})
    dom0_metrics = db.create("VM_metrics", {"memory_actual": 4 * GiB, "VCPUs_number": 4, "start_time": now()})
    dom0 = db.create("VM", {"name_label": f"Control domain on host: {member.get('name_label', '')}",
                            "is_control_domain": True, "power_state": "Running", "resident_on": host, "domid": 0,
                            "metrics": dom0_metrics, "memory_static_max": 4 * GiB, "memory_dynamic_max": 4 * GiB,
                            "memory_dynamic_min": 4 * GiB, "memory_static_min": 4 * GiB, "VCPUs_max": 4,
                            "VCPUs_at_startup": 4, "domain_type": "pv"})
    db.update("host", host, control_domain=dom0)
    local = db.create("SR", {"name_label": f"Local storage on {member.get('name_label', '')}", "type": "lvm",
                             "content_type": "user", "shared": False, "physical_size": 2048 * GiB,
                             "sm_config": {"allocation": "thick"}, "other_config": {}})
    db.create("PBD", {"SR": local, "host": host, "currently_attached": True, "device_config": {}})
    for sr, record in list(db.tables["SR"].items()):
        if record["shared"]:
            db.create("PBD", {"SR": sr, "host": host, "currently_attached": True, "device_config": {}})
    for index, network in enumerate(n for n, r in db.tables["network"].items() if r["PIFs"]):
        sample = db.tables["PIF"][db.tables["network"][network]["PIFs"][0]]
        if not sample["physical"]:
            continue
        pif_metrics = db.create("PIF_metrics", {"carrier": True, "device_name": sample["device"]})
        db.create("PIF", {"device": sample["device"], "host": host, "network": network, "physical": True,
                          "MAC": "02:00:00:00:%02x:%02x" % (len(db.tables["host"]) % 256, index),
                          "MTU": sample["MTU"], "currently_attached": True, "management": sample["management"],
                          "ip_configuration_mode": "DHCP", "metrics": pif_metrics, "VLAN": -1,
                          "bond_slave_of": NULL_REF})
    lifecycle.refresh(db, "host", host)
    for sr in db.tables["SR"]:
        lifecycle.refresh(db, "SR", sr)
    return host


HANDLERS = {("pool", "join"): join, ("pool", "join_force"): join_force}
