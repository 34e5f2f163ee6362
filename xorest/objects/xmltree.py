"""The XML that XAPI keeps in string fields (template disks, recommendations, docker
state), read into the shape Xen Orchestra's parser (``fast-xml-parser``, attributes as
plain keys, values as strings) gives it."""
import functools
import xml.etree.ElementTree as ElementTree

from .values import ABSENT, num


def parse_xml(text):
    """``{root tag: value}``, or ``""`` for what does not parse (as Xen Orchestra's
    ``parseXml`` answers errors).

    A value is the element's text when it has neither children nor attributes; otherwise a
    dict of its children (a list for a repeated tag), ``#text`` and then its attributes.
    Documents with a DOCTYPE are refused: their entities could expand without bound, and
    XAPI never writes one.
    """
    if not isinstance(text, str) or "<" not in text or "<!DOCTYPE" in text.upper():
        return ""
    try:
        root = ElementTree.fromstring(text)
    except (ElementTree.ParseError, ValueError):
        return ""
    return {root.tag: _value(root)}


def _value(element):
    children = list(element)
    text = "".join(piece.strip() for piece in [element.text or ""] + [c.tail or "" for c in children])
    if not children and not element.attrib:
        return text
    value = {}
    for child in children:
        item = _value(child)
        if child.tag not in value:
            value[child.tag] = item
        elif isinstance(value[child.tag], list):
            value[child.tag].append(item)
        else:
            value[child.tag] = [value[child.tag], item]
    if text:
        value["#text"] = text
    value.update(element.attrib)
    return value


def as_list(value):
    """Xen Orchestra's ``ensureArray``: nothing is ``[]``, one item is ``[item]``."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def template_disks(xml):
    """``template_info.disks`` from a template's ``other_config.disks``: each ``<disk>``'s
    attributes, ``bootable`` a bool, ``size`` a number and ``sr`` renamed ``SR`` (last)."""
    data = parse_xml(xml) if xml else ""
    provision = data.get("provision") if isinstance(data, dict) else None
    if not provision:
        return []
    disks = []
    for disk in as_list(provision.get("disk") if isinstance(provision, dict) else None):
        if not isinstance(disk, dict):
            continue  # Xen Orchestra fails on a bare <disk/>; such a disk says nothing
        disk = dict(disk)
        disk["bootable"] = disk.get("bootable") == "true"
        disk["size"] = num(disk.get("size"))
        sr = disk.pop("sr", ABSENT)
        if sr is not ABSENT:
            disk["SR"] = sr
        disks.append(disk)
    return disks


@functools.lru_cache(maxsize=256)  # VMs of one template share their recommendations (and the result)
def firmware_restrictions(recommendations):
    """``recommendations`` reduced to what :func:`firmware_supported` reads: its
    ``supports-*`` restrictions, in order (a VM's copy of its template's recommendations
    is most of a kilobyte; this is what is kept in memory)."""
    data = parse_xml(recommendations)
    restrictions = data.get("restrictions") if isinstance(data, dict) else None
    restriction = restrictions.get("restriction") if isinstance(restrictions, dict) else None
    root = ElementTree.Element("restrictions")
    for item in as_list(restriction):
        field = item.get("field") if isinstance(item, dict) else None
        if isinstance(field, str) and field.startswith("supports-"):
            kept = {"field": field}
            if isinstance(item.get("value"), str):
                kept["value"] = item["value"]
            ElementTree.SubElement(root, "restriction", kept)
    return ElementTree.tostring(root, encoding="unicode") if len(root) else ""


@functools.lru_cache(maxsize=256)  # VMs of one template share their recommendations
def firmware_supported(recommendations, firmware):
    """``isFirmwareSupported``: false only when the recommendations restrict
    ``supports-<firmware>`` to ``no``."""
    data = parse_xml(recommendations)
    restrictions = data.get("restrictions") if isinstance(data, dict) else None
    restriction = restrictions.get("restriction") if isinstance(restrictions, dict) else None
    if restriction is None:
        return True
    field = f"supports-{'undefined' if firmware is None else firmware}"
    for item in as_list(restriction):
        if isinstance(item, dict) and item.get("field") == field:
            return item.get("value") != "no"
    return True
