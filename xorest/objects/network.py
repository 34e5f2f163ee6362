"""network, VIF and PIF (with ``PIF_metrics``) records to their XO objects."""
from .context import to_int

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
}


def network(record, ctx):
    other = record.get("other_config") or {}
    purposes = record.get("purpose") or []
    return {
        "type": "network",
        "name_label": record.get("name_label", ""),
        "name_description": record.get("name_description", ""),
        "bridge": record.get("bridge", ""),
        "MTU": to_int(record.get("MTU")),
        "automatic": other.get("automatic") == "true",
        "defaultIsLocked": record.get("default_locking_mode") == "disabled",
        "nbd": "nbd" in purposes,
        "insecureNbd": "insecure_nbd" in purposes,
        "other_config": other,
        "tags": list(record.get("tags") or []),
        "current_operations": record.get("current_operations") or {},
        "PIFs": ctx.uuids(record.get("PIFs")),
        "VIFs": ctx.uuids(record.get("VIFs")),
    }


def vif(record, ctx):
    qos = record.get("qos_algorithm_params") or {}
    other = record.get("other_config") or {}
    return {
        "type": "VIF",
        "attached": bool(record.get("currently_attached")),
        "device": record.get("device"),
        "MAC": record.get("MAC"),
        "MTU": to_int(record.get("MTU")),
        "lockingMode": record.get("locking_mode"),
        "allowedIpv4Addresses": list(record.get("ipv4_allowed") or []),
        "allowedIpv6Addresses": list(record.get("ipv6_allowed") or []),
        "rateLimit": to_int(qos.get("kbps"), None) if record.get("qos_algorithm_type") == "ratelimit" else None,
        "txChecksumming": other.get("ethtool-tx") != "false",
        "other_config": other,
        "$network": ctx.uuid(record.get("network")),
        "$VM": ctx.uuid(record.get("VM")),
    }


def pif(record, ctx):
    metrics = ctx.record(record.get("metrics")) or {}
    return {
        "type": "PIF",
        "device": record.get("device"),
        "deviceName": metrics.get("device_name"),
        "carrier": bool(metrics.get("carrier")),
        "speed": to_int(metrics.get("speed"), None),
        "mac": record.get("MAC"),
        "mtu": to_int(record.get("MTU")),
        "ip": record.get("IP", ""),
        "ipv6": list(record.get("IPv6") or []),
        "netmask": record.get("netmask", ""),
        "gateway": record.get("gateway", ""),
        "dns": record.get("DNS", ""),
        "mode": record.get("ip_configuration_mode"),
        "ipv6Mode": record.get("ipv6_configuration_mode"),
        "primaryAddressType": record.get("primary_address_type"),
        "vlan": to_int(record.get("VLAN"), -1),
        "attached": bool(record.get("currently_attached")),
        "management": bool(record.get("management")),
        "physical": bool(record.get("physical")),
        "disallowUnplug": bool(record.get("disallow_unplug")),
        "isBondMaster": bool(record.get("bond_master_of")),
        "isBondSlave": (record.get("bond_slave_of") or "OpaqueRef:NULL") != "OpaqueRef:NULL",
        "$host": ctx.uuid(record.get("host")),
        "$network": ctx.uuid(record.get("network")),
    }
