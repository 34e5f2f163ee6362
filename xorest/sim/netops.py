"""XAPI's network calls: networks, VLANs over physical interfaces, bonds, and VIFs."""
from . import lifecycle
from .rpc import XapiFailure
from .state import NULL_REF
from .storageops import device_destroy


def network_create(op, record):
    """``network.create``: a network with its own bridge, no interface on it yet."""
    if not isinstance(record, dict):
        raise XapiFailure("FIELD_TYPE_ERROR", "record")
    with op.locked() as db:
        bridges = {n["bridge"] for n in db.tables["network"].values()}
        bridge = next(f"xapi{n}" for n in range(len(bridges) + 1) if f"xapi{n}" not in bridges)
        fields = {k: record[k] for k in ("name_label", "name_description", "other_config", "tags") if k in record}
        fields.update(MTU=int(record.get("MTU") or 1500), bridge=bridge, managed=True)
        return db.create("network", fields)


def network_destroy(op, network):
    """``network.destroy``: only a network no interface uses any more."""
    with op.locked() as db:
        record = db.record("network", network)
        if record["PIFs"]:
            raise XapiFailure("NETWORK_CONTAINS_PIF", *record["PIFs"])
        if record["VIFs"]:
            raise XapiFailure("NETWORK_CONTAINS_VIF", *record["VIFs"])
    op.work()
    with op.locked() as db:
        db.destroy("network", network)
    return ""


def _new_pif(db, host, network, device, mac, **fields):
    metrics = db.create("PIF_metrics", {"carrier": True, "device_name": device})
    return db.create("PIF", {"host": host, "network": network, "device": device, "MAC": mac, "MTU":
                             db.record("network", network)["MTU"], "metrics": metrics, "currently_attached": True,
                             "managed": True, **fields})


def create_vlan_from_pif(op, pif, network, tag):
    """``pool.create_VLAN_from_PIF``: the VLAN ``tag`` on ``pif``'s device, on every host."""
    tag = int(tag)
    with op.locked() as db:
        source = db.record("PIF", pif)
        db.record("network", network)
        if not 0 <= tag <= 4094:
            raise XapiFailure("VLAN_TAG_INVALID", str(tag))
        if source["VLAN_master_of"] != NULL_REF:
            raise XapiFailure("PIF_IS_VLAN", pif)
        tagged = [p for p, r in db.tables["PIF"].items() if r["device"] == source["device"]
                  and r["VLAN_master_of"] == NULL_REF and (r["physical"] or r["bond_master_of"])]
        for parent in tagged:
            if any(db.tables["VLAN"][v]["tag"] == tag for v in db.tables["PIF"][parent]["VLAN_slave_of"]):
                raise XapiFailure("PIF_VLAN_EXISTS", parent)
        created = []
        for parent in tagged:
            record = db.tables["PIF"][parent]
            new = _new_pif(db, record["host"], network, record["device"], record["MAC"], VLAN=tag,
                           physical=False)
            vlan = db.create("VLAN", {"tagged_PIF": parent, "untagged_PIF": new, "tag": tag})
            db.update("PIF", new, VLAN_master_of=vlan)
            created.append(new)
        return created


def vlan_destroy(op, vlan):
    with op.locked() as db:
        record = db.record("VLAN", vlan)
        untagged = record["untagged_PIF"]
        if untagged in db.tables["PIF"] and db.tables["PIF"][untagged]["management"]:
            raise XapiFailure("PIF_IS_MANAGEMENT_IFACE", untagged)
    op.work()
    with op.locked() as db:
        _destroy_pif(db, untagged)
        db.destroy("VLAN", vlan)
    return ""


def _destroy_pif(db, pif):
    if pif not in db.tables["PIF"]:
        return
    metrics = db.tables["PIF"][pif]["metrics"]
    db.destroy("PIF", pif)
    if metrics in db.tables["PIF_metrics"]:
        db.destroy("PIF_metrics", metrics)


def bond_create(op, network, members, mac, mode, properties):
    """``Bond.create``: physical interfaces of one host become one, on ``network``."""
    with op.locked() as db:
        db.record("network", network)
        records = {pif: db.record("PIF", pif) for pif in members}
        if len(records) < 2:
            raise XapiFailure("PIF_BOND_NEEDS_MORE_MEMBERS")
        if len({r["host"] for r in records.values()}) != 1:
            raise XapiFailure("PIF_CANNOT_BOND_CROSS_HOST")
        for pif, record in records.items():
            if record["bond_slave_of"] != NULL_REF:
                raise XapiFailure("PIF_ALREADY_BONDED", pif)
            if record["VLAN_master_of"] != NULL_REF:
                raise XapiFailure("PIF_IS_VLAN", pif)
        if mode not in db.model.enum_values("enum bond_mode"):
            raise XapiFailure("INVALID_VALUE", "mode", str(mode))
    op.work()
    with op.locked() as db:
        first = records[members[0]]
        host = first["host"]
        devices = {r["device"] for r in db.tables["PIF"].values() if r["host"] == host}
        device = next(f"bond{n}" for n in range(len(devices) + 1) if f"bond{n}" not in devices)
        management = any(r["management"] for r in records.values())
        master = _new_pif(db, host, network, device, mac or first["MAC"], VLAN=-1, physical=False,
                          management=management,
                          ip_configuration_mode=first["ip_configuration_mode"], IP=first["IP"],
                          netmask=first["netmask"])
        bond = db.create("Bond", {"master": master, "mode": mode, "properties": dict(properties or {}),
                                  "primary_slave": members[0], "links_up": len(members)})
        for pif in members:
            db.update("PIF", pif, bond_slave_of=bond, management=False, currently_attached=False)
        return bond


def bond_destroy(op, bond):
    with op.locked() as db:
        record = db.record("Bond", bond)
    op.work()
    with op.locked() as db:
        master = db.tables["PIF"].get(record["master"], {})
        for pif in list(record["slaves"]):
            # the management interface goes back to the primary member, as XAPI moves it
            db.update("PIF", pif, bond_slave_of=NULL_REF, currently_attached=True,
                      management=bool(master.get("management")) and pif == record["primary_slave"])
        _destroy_pif(db, record["master"])
        db.destroy("Bond", bond)
    return ""


def vif_create(op, record):
    """``VIF.create``: a new, unplugged network interface of a VM."""
    if not isinstance(record, dict):
        raise XapiFailure("FIELD_TYPE_ERROR", "record")
    with op.locked() as db:
        vm = db.record("VM", record.get("VM", NULL_REF))
        network = db.record("network", record.get("network", NULL_REF))
        device = str(record.get("device", ""))
        if device in {db.tables["VIF"][v]["device"] for v in vm["VIFs"]}:
            raise XapiFailure("DEVICE_ALREADY_EXISTS", device)
        mac = record.get("MAC") or "02:" + ":".join(f"{db.rng.randrange(256):02x}" for _ in range(5))
        fields = {k: record[k] for k in ("other_config", "qos_algorithm_type", "qos_algorithm_params",
                                         "locking_mode", "ipv4_allowed", "ipv6_allowed") if record.get(k) is not None}
        fields.update(VM=record["VM"], network=record["network"], device=device, MAC=mac,
                      MAC_autogenerated=not record.get("MAC"), MTU=int(record.get("MTU") or network["MTU"]),
                      currently_attached=False)
        vif = db.create("VIF", fields)
        lifecycle.refresh_vm(db, record["VM"])
        return vif


HANDLERS = {
    ("network", "create"): network_create, ("network", "destroy"): network_destroy,
    ("pool", "create_VLAN_from_PIF"): create_vlan_from_pif, ("VLAN", "destroy"): vlan_destroy,
    ("Bond", "create"): bond_create, ("Bond", "destroy"): bond_destroy,
    ("VIF", "create"): vif_create, ("VIF", "destroy"): device_destroy("VIF"),
}
