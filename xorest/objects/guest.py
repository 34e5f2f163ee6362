"""What a VM's guest agent reports (``VM_guest_metrics``), as Xen Orchestra shows it:
addresses, guest tools, and the XSA-468 check of Windows PV drivers."""
import re

from .values import ABSENT, compact, num

_ADDRESS_KEY = re.compile(r"(\d+)/(?:ip|(ipv[46])/.+)")
_IPV4_KEY = re.compile(r"\d+/ip(?:v4/\d+)?")
_IPV6_KEY = re.compile(r"\d+/ipv6/\d+")


def addresses(networks):
    """``N/<protocol>/M`` keys for every address of ``networks``.

    Guest agents write either ``N/ip`` (the old protocol, possibly several addresses
    separated by white space, possibly next to an ``N/ipv4/0`` alias of the same address)
    or ``N/ipv4/M`` and ``N/ipv6/M``.  Addresses are deduplicated per interface and
    protocol and renumbered from 0, interfaces in the order of their sorted keys."""
    by_device = {}  # device -> protocol -> {address: None} (an ordered set)
    for key in sorted(networks):
        value = networks[key]
        address = value.strip() if isinstance(value, str) else ""
        if not address:
            continue  # some agents write empty values
        match = _ADDRESS_KEY.fullmatch(key)
        if match is None:
            continue
        device, protocol = match.group(1), match.group(2) or "ipv4"
        found = by_device.setdefault(device, {}).setdefault(protocol, {})
        for item in address.split():
            found.setdefault(item)
    return {f"{device}/{protocol}/{i}": address
            for device, protocols in by_device.items()
            for protocol, found in protocols.items()
            for i, address in enumerate(found)}


def main_address(networks):
    """The first IPv4 value of the sorted keys (``N/ip`` or ``N/ipv4/M``, as written),
    else the first IPv6 one; :data:`ABSENT` when there is none."""
    if networks is None:
        return ABSENT
    ipv6 = ABSENT
    for key in sorted(networks):
        if _IPV4_KEY.fullmatch(key):
            return networks[key]
        if ipv6 is ABSENT and _IPV6_KEY.fullmatch(key):
            ipv6 = networks[key]
    return ipv6


def xen_tools(running, metrics, guest):
    """The deprecated ``xenTools``: unknown (absent) unless running with metrics, ``False``
    without guest metrics or PV driver version, else ``{major, minor, version}``."""
    if not running or metrics is None:
        return ABSENT
    if guest is None:
        return False
    version = guest.get("PV_drivers_version") or {}
    major, minor = version.get("major"), version.get("minor")
    if major is None or minor is None:
        return False
    return {"major": num(major), "minor": num(minor), "version": num(f"{major}.{minor}")}


def tools_properties(running, metrics, guest):
    """``managementAgentDetected``, ``pvDriversDetected``, ``pvDriversVersion`` (with the
    build number) and ``pvDriversUpToDate`` of a running VM with metrics and guest
    metrics; nothing otherwise."""
    if not running or metrics is None or guest is None:
        return {}
    version = guest.get("PV_drivers_version") or {}
    parts = [version.get(k) for k in ("major", "minor", "micro", "build")]
    has_version = parts[0] is not None and parts[1] is not None
    detected = guest.get("PV_drivers_detected")
    detected = has_version if detected is None else detected  # absent before XenServer 7
    text = [("undefined" if p is None else str(p)) for p in parts]  # as a JS template writes them
    static_ip = (guest.get("other") or {}).get("feature-static-ip-setting") == "1"  # Linux agents lack it
    return compact({
        "managementAgentDetected": has_version or static_ip,
        "pvDriversDetected": detected,
        "pvDriversVersion": f"{text[0]}.{text[1]}.{text[2]}-{text[3]}" if has_version else ABSENT,
        "pvDriversUpToDate": guest.get("PV_drivers_up_to_date", ABSENT) if detected else ABSENT,
    })


# XSA-468 (May 2025): Windows PV drivers up to these versions are vulnerable, per vendor.
_XSA468_VULNERABLE = {
    "Xen_Project": {"xencons": "9.1.0.2", "xeniface": "9.1.0.0", "xenbus": "9.1.0.1"},
    "Amazon_Inc_": {"xeniface": "8.3.0"},
    "XenServer": {"xeniface": "9.1.12.93", "xenbus": "9.1.11.114"},
    "Citrix": {"xeniface": "9.1.1.11", "xenbus": "9.1.2.14"},
    "XCP_ng": {"xencons": "9.0.9048.9047", "xeniface": "9.0.9048.9047", "xenbus": "9.0.9048.9047"},
}
# The version syntax of npm ``compare-versions`` (up to four numbers, pre-release, build).
_VERSION = re.compile(r"[v^~<>=]*?(\d+)(?:\.([x*]|\d+)(?:\.([x*]|\d+)(?:\.([x*]|\d+))?"
                      r"(?:-([\da-z\-]+(?:\.[\da-z\-]+)*))?(?:\+[\da-z\-]+(?:\.[\da-z\-]+)*)?)?)?",
                      re.I | re.A)


def xsa468(record, guest):
    """``vulnerabilities.xsa468`` of a VM: ``False``, or why it may be vulnerable."""
    if (record.get("platform") or {}).get("device_id") != "0002":
        return False  # not a Windows VM
    if guest is None or not guest.get("PV_drivers_detected"):
        return False  # no PV drivers, nothing vulnerable
    checked = False
    for driver, value in (guest.get("PV_drivers_version") or {}).items():
        if driver in ("major", "minor", "micro", "build") or not isinstance(value, str):
            continue
        pieces = value.split(" ")
        vendor, version = pieces[0], pieces[1] if len(pieces) > 1 else None
        if not _valid_version(version):
            continue
        limit = _XSA468_VULNERABLE.get(vendor, {}).get(driver)
        if limit is None:
            continue
        checked = True
        if _compare_versions(version, limit) <= 0:
            return {"reason": "pv-driver-version-vulnerable", "driver": driver, "version": version}
    # drivers whose versions could not be checked may be vulnerable
    return False if checked else {"reason": "no-pv-drivers-detected"}


def _valid_version(version):
    """npm ``compare-versions``' ``validate``."""
    return isinstance(version, str) and re.match(r"[v0-9]", version) is not None \
        and _VERSION.fullmatch(version) is not None


def _compare_versions(a, b):
    """npm ``compareVersions``: numbers segment by segment, then pre-releases."""
    first, second = _VERSION.fullmatch(a).groups(), _VERSION.fullmatch(b).groups()
    result = _compare_segments(first[:4], second[:4])
    if result or not (first[4] or second[4]):
        return result
    if first[4] and second[4]:
        return _compare_segments(first[4].split("."), second[4].split("."))
    return -1 if first[4] else 1


def _compare_segments(a, b):
    for i in range(max(len(a), len(b))):
        x = (a[i] if i < len(a) else None) or "0"
        y = (b[i] if i < len(b) else None) or "0"
        if "*" in (x, y) or x in ("x", "X") or y in ("x", "X"):
            continue  # wildcards match
        x, y = _segment(x), _segment(y)
        if type(x) is not type(y):
            x, y = str(x), str(y)
        if x != y:
            return 1 if x > y else -1
    return 0


def _segment(text):
    match = re.match(r"\s*[+-]?[0-9]+", text)  # parseInt: leading digits, else the text
    return int(match.group(0)) if match else text
