"""network, VIF and PIF (with ``PIF_metrics`` and ``Bond``) records to their XO objects."""
from .context import ABSENT, NULL_REF, compact, num

#: Record fields read here, per XAPI class (records are stored with these only).
FIELDS = {
    "network": ("uuid", "name_label", "name_description", "tags", "other_config", "bridge", "MTU",
                "PIFs", "VIFs", "purpose", "default_locking_mode", "current_operations"),
    "VIF": ("uuid", "device", "MAC", "MTU", "VM", "network", "currently_attached", "locking_mode",
            "ipv4_allowed", "ipv6_allowed", "qos_algorithm_type", "qos_algorithm_params", "other_config"),
    "PIF": ("uuid", "device", "MAC", "MTU", "VLAN", "host", "network", "metrics", "management", "physical",
            "currently_attached", "disallow_unplug", "ip_configuration_mode", "IP", "netmask", "gateway",
            "DNS", "ipv6_configuration_mode", "IPv6", "primary_address_type", "bond_master_of",
            "bond_slave_of"),
    "PIF_metrics": ("uuid", "carrier", "device_name", "speed"),
    "Bond": ("uuid", "master", "slaves"),
}


def _bonded(pif):
    """Whether a PIF is a bond's master or one of its slaves."""
    return bool(pif.get("bond_master_of")) or pif.get("bond_slave_of") != NULL_REF


def network(record, ctx, ref=None):
    """The XO object of a network; ``isBonded`` reads its PIFs."""
    purposes = record.get("purpose")
    pif_refs = record.get("PIFs")
    pifs = [ctx.record(ref) for ref in pif_refs or ()]
    return compact({
        "automatic": (record.get("other_config") or {}).get("automatic") == "true",
        "bridge": record.get("bridge", ABSENT),
        "current_operations": record.get("current_operations", ABSENT),
        "defaultIsLocked": record.get("default_locking_mode") == "disabled",
        "MTU": num(record.get("MTU")),
        "name_description": record.get("name_description", ABSENT),
        "name_label": record.get("name_label", ABSENT),
        "other_config": record.get("other_config", ABSENT),
        "tags": record.get("tags", ABSENT),
        "PIFs": ctx.links(pif_refs),
        "VIFs": ctx.links(record.get("VIFs")),
        "nbd": "nbd" in purposes if purposes is not None else ABSENT,
        "insecureNbd": "insecure_nbd" in purposes if purposes is not None else ABSENT,
        "isBonded": any(_bonded(pif) for pif in pifs if pif is not None),
    })


def vif(record, ctx, ref=None):
    """The XO object of a VIF; ``rateLimit`` (kB/s) only with the ``ratelimit`` QoS."""
    other = record.get("other_config") or {}
    tx = other.get("ethtool-tx")
    rate = ABSENT
    if record.get("qos_algorithm_type") == "ratelimit":
        kbps = (record.get("qos_algorithm_params") or {}).get("kbps")
        rate = num(kbps) if kbps is not None else ABSENT
    return compact({
        "type": "VIF",
        "allowedIpv4Addresses": record.get("ipv4_allowed", ABSENT),
        "allowedIpv6Addresses": record.get("ipv6_allowed", ABSENT),
        "attached": bool(record.get("currently_attached")),
        "device": record.get("device", ABSENT),
        "lockingMode": record.get("locking_mode", ABSENT),
        "MAC": record.get("MAC", ABSENT),
        "MTU": num(record.get("MTU")),
        "other_config": record.get("other_config", ABSENT),
        "txChecksumming": tx not in ("false", "off"),  # ethtool's words, as XAPI passes them
        "rateLimit": rate,
        "$network": ctx.link(record.get("network")),
        "$VM": ctx.link(record.get("VM")),
    })


def pif(record, ctx, ref=None):
    """The XO object of a PIF, with ``PIF_metrics`` and the bond it belongs to."""
    metrics = ctx.record(record.get("metrics"))
    masters = record.get("bond_master_of") or []
    is_master = bool(masters)
    is_slave = record.get("bond_slave_of") != NULL_REF
    # a master's bond is the first of bond_master_of, as in XenCenter
    bond = None
    if is_master or is_slave:
        bond = ctx.record(masters[0] if is_master else record.get("bond_slave_of"))
    return compact({
        "type": "PIF",
        "attached": bool(record.get("currently_attached")),
        "isBondMaster": is_master,
        "isBondSlave": is_slave,
        "bondMaster": ctx.link(bond.get("master")) if is_slave and bond is not None else ABSENT,
        "bondSlaves": ctx.links(bond.get("slaves")) if is_master and bond is not None else ABSENT,
        "device": record.get("device", ABSENT),
        "deviceName": metrics.get("device_name", ABSENT) if metrics is not None else ABSENT,
        "dns": record.get("DNS", ABSENT),
        "disallowUnplug": bool(record.get("disallow_unplug")),
        "gateway": record.get("gateway", ABSENT),
        "ip": record.get("IP", ABSENT),
        "ipv6": record.get("IPv6", ABSENT),
        "mac": record.get("MAC", ABSENT),
        "management": bool(record.get("management")),
        "carrier": bool(metrics is not None and metrics.get("carrier")),
        "mode": record.get("ip_configuration_mode", ABSENT),
        "ipv6Mode": record.get("ipv6_configuration_mode", ABSENT),
        "mtu": num(record.get("MTU")),
        "netmask": record.get("netmask", ABSENT),
        "physical": bool(record.get("physical")),
        "primaryAddressType": record.get("primary_address_type", ABSENT),
        "vlan": num(record.get("VLAN")),
        "speed": num(metrics.get("speed")) if metrics is not None else ABSENT,
        "$host": ctx.link(record.get("host")),
        "$network": ctx.link(record.get("network")),
    })
