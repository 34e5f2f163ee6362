"""Sub-collections, ping, the dashboard, the ``users/me`` alias and Markdown listings,
through gunicorn against the simulator."""
import json
import os
import re

import pytest
import requests


def test_sub_collections_list_what_belongs_to_an_object(gateway):
    vm = next(v for v in gateway.get("/rest/v0/vms?fields=$VBDs,name_label").json() if v["$VBDs"])
    vbds = [gateway.get(f"/rest/v0/vbds/{vbd}").json() for vbd in vm["$VBDs"]]
    expected = sorted(vbd["VDI"] for vbd in vbds if vbd.get("VDI"))
    disks = gateway.get(f"{vm['href']}/vdis?fields=name_label").json()
    assert sorted(d["href"].rsplit("/", 1)[1] for d in disks) == expected
    assert all(d["href"].startswith("/rest/v0/vdis/") for d in disks)
    # the usual query parameters apply, and each item links to its own collection
    assert gateway.get(f"{vm['href']}/vdis?limit=0").json() == []
    assert gateway.get(f"{vm['href']}/vdis?ndjson&fields=name_label").headers["Content-Type"] == "application/x-ndjson"
    messages = gateway.get("/rest/v0/messages?fields=$object").json()
    about = next(m["$object"] for m in messages)
    target = next(name for name in ("vms", "hosts", "srs", "pools")
                  if gateway.get(f"/rest/v0/{name}/{about}").status_code == 200)
    listed = gateway.get(f"/rest/v0/{target}/{about}/messages?fields=$object").json()
    assert listed and all(m["$object"] == about and m["href"].startswith("/rest/v0/messages/") for m in listed)
    assert len(listed) == sum(1 for m in messages if m["$object"] == about)
    assert gateway.get(f"/rest/v0/{target}/{about}/alarms").status_code == 200
    assert gateway.get("/rest/v0/hosts/nope/messages").status_code == 404
    assert gateway.get(f"/rest/v0/hosts/{gateway.get('/rest/v0/hosts').json()[0].rsplit('/', 1)[1]}/vdis"
                       ).status_code == 404  # hosts have no disks sub-collection


def test_ping_needs_no_credentials(gateway):
    answer = requests.get(gateway.url + "/rest/v0/ping", timeout=10)
    assert answer.status_code == 200 and answer.json()["result"] == "pong"
    assert isinstance(answer.json()["timestamp"], int)


def test_dashboard_counts_what_the_collections_hold(gateway):
    board = gateway.get("/rest/v0/dashboard").json()
    vms = gateway.get("/rest/v0/vms?fields=power_state").json()
    hosts = gateway.get("/rest/v0/hosts?fields=memory").json()
    assert board["nPools"] == len(gateway.get("/rest/v0/pools").json())
    assert board["nHosts"] == len(hosts) == board["hostsStatus"]["total"]
    status = board["vmsStatus"]
    assert status["total"] == len(vms)
    assert status["running"] == sum(v["power_state"] == "Running" for v in vms)
    assert status["active"] + status["inactive"] + status["unknown"] == status["total"]
    assert board["resourcesOverview"]["memorySize"] == sum(h["memory"]["size"] for h in hosts)
    size = board["storageRepositories"]["size"]
    assert size["available"] == size["total"] - size["used"]
    assert board["poolsStatus"] == {"connected": 1, "disconnected": 0, "unreachable": 0, "unknown": 0, "total": 1}
    lines = gateway.get("/rest/v0/dashboard?ndjson=true").text.splitlines()
    assert [next(iter(json.loads(line))) for line in lines] == list(board)


#: Xen Orchestra's dashboard (rest-api 0.37, ``XoaDashboard``): its parts in the order of its
#: JSON answer, and the keys of each part, in order, as xorest serves them (missing patches
#: and backups in the forms meaning "not available").
XO_DASHBOARD = {
    "nPools": None, "nHosts": None, "backupRepositories": ["isEmpty"],
    "resourcesOverview": ["nCpus", "memorySize", "srSize"],
    "poolsStatus": ["connected", "disconnected", "unreachable", "unknown", "total"],
    "missingPatches": ["hasAuthorization"], "storageRepositories": ["size"], "backups": ["isEmpty"],
    "hostsStatus": ["disabled", "running", "halted", "unknown", "total"],
    "vmsStatus": ["active", "inactive", "running", "halted", "paused", "suspended", "unknown", "total"],
}
XO_OPENAPI = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                          "reference", "xo-openapi-0.37.json")


def _undeclared(value, schema, components, path=""):
    """Keys of ``value`` that Xen Orchestra's schema does not declare (its schemas allow
    any extra key), through ``$ref``, ``anyOf`` and ``allOf`` (the union of the branches)."""
    branches, found, properties = [schema], [], {}
    while branches:
        branch = branches.pop()
        if "$ref" in branch:
            branches.append(components[branch["$ref"].rsplit("/", 1)[1]])
        branches += branch.get("anyOf", []) + branch.get("allOf", [])
        for key, sub in branch.get("properties", {}).items():
            properties.setdefault(key, []).append(sub)
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in properties:
                found.append(f"{path}.{key}")
            else:
                found += _undeclared(item, {"anyOf": properties[key]}, components, f"{path}.{key}")
    return found


def test_dashboard_has_xen_orchestra_s_shape(gateway):
    """The dashboard's parts, their order and their keys are Xen Orchestra's; where its
    OpenAPI document is at hand (the team's reference), the answer validates against its
    ``XoaDashboard`` and has no key that schema lacks."""
    board = gateway.get("/rest/v0/dashboard").json()
    assert list(board) == list(XO_DASHBOARD)
    for name, keys in XO_DASHBOARD.items():
        if keys is None:
            assert isinstance(board[name], int), name
        else:
            assert list(board[name]) == keys, name
    assert list(board["storageRepositories"]["size"]) == ["available", "other", "replicated", "total", "used"]
    assert board["missingPatches"] == {"hasAuthorization": False}  # see services/dashboard.py
    if not os.path.isfile(XO_OPENAPI):
        pytest.skip(f"Xen Orchestra's OpenAPI document is not at {XO_OPENAPI} (a fresh clone): "
                    "the shape was checked against XO_DASHBOARD only")
    from openapi_schema_validator import OAS30Validator

    with open(XO_OPENAPI, encoding="utf-8") as fh:
        reference = json.load(fh)
    components = reference["components"]["schemas"]
    schema = {**components["XoaDashboard"], "components": reference["components"]}
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in OAS30Validator(schema).iter_errors(board)]
    assert not errors
    assert not _undeclared(board, components["XoaDashboard"], components)
    answer = reference["paths"]["/dashboard"]["get"]["responses"]["200"]["content"]["application/json"]
    assert answer["schema"]["$ref"].endswith("/XoaDashboard")


def test_users_me_is_a_redirect_to_yourself(gateway):
    answer = gateway.get("/rest/v0/users/me?fields=email", allow_redirects=False)
    assert answer.status_code == 307
    me = gateway.get(answer.headers["Location"]).json()
    assert me["email"] == "admin@example.com"


def test_markdown_listings(gateway):
    table = gateway.get("/rest/v0/hosts?fields=name_label,address&markdown=true")
    assert table.headers["Content-Type"].startswith("text/markdown")
    header, rule, *rows = table.text.splitlines()
    assert header == "| name_label | address |" and rule == "| --- | --- |"
    assert len(rows) == len(gateway.get("/rest/v0/hosts").json())
    assert gateway.get("/rest/v0/hosts?markdown=true&filter=nothing-matches-this").text == "No results."
    urls = gateway.get("/rest/v0/hosts?markdown=true").text.splitlines()
    assert urls == gateway.get("/rest/v0/hosts").json()
    both = gateway.get("/rest/v0/hosts?markdown=true&ndjson=true")
    assert both.status_code == 400 and "markdown" in both.json()["error"]


def _served_collections():
    """``({collection: its object schema in the document}, [sub-collection names])`` of
    what the app serves, read from its OpenAPI document: a collection is a path without
    variables whose GET answers a JSON listing of objects; a sub-collection is a GET
    ``/{collection}/{key}/<name>``."""
    from flask import Flask

    from xorest.api import openapi, register

    app = Flask("xorest")  # the routes alone, as `make docs` builds the document
    register(app)
    document = openapi.build(app)
    collections, subs = {}, []
    for path, item in document["paths"].items():
        if "get" not in item:
            continue
        if re.fullmatch(r"/\{collection\}/\{key\}/[a-z-]+", path):
            subs.append(path.rsplit("/", 1)[1])
            continue
        if "{" in path:
            continue
        answer = item["get"]["responses"].get("200", {}).get("content", {}).get("application/json", {})
        items = answer.get("schema", {}).get("items", {})
        refs = [a["$ref"].rsplit("/", 1)[1] for a in items.get("anyOf", ()) if "$ref" in a]
        if answer.get("schema", {}).get("type") == "array" and refs:
            collections[path[1:]] = document["components"]["schemas"][refs[0]]
    return collections, subs


def test_readme_lists_every_collection_and_its_fields():
    """The README lists every collection the app serves (its OpenAPI document says which)
    with every field its object schema declares (``xorest/objects/schemas.py``; ``href`` and
    ``url`` are said once for all), in the order objects have them (the golden pool's
    objects, then the fields those lack in the schema's order); and every sub-collection."""
    from xorest import objects

    from . import golden
    from .conftest import ROOT

    text = open(os.path.join(ROOT, "README.rst"), encoding="utf-8").read()
    section = text.split("Collections and their fields\n", 1)[1].split("\nSub-collections", 1)[0]
    documented = {m.group(1): re.findall(r"``([^`]+)``", m.group(2))
                  for m in re.finditer(r"^``([a-z-]+)``\n((?:    .*\n)+)", section, re.M)}
    collections, subs = _served_collections()
    assert set(objects.COLLECTIONS) <= set(collections), "the document lacks collections of pool objects"
    assert sorted(documented) == sorted(collections), "README vs served collections"
    served, _ = golden.map_records()
    for name, schema in collections.items():
        keys = []
        for obj in served.get(name, {}).values():
            keys += [k for k in obj if k not in keys]
        keys += [k for k in schema["properties"] if k not in keys and k not in ("href", "url")]
        assert documented[name] == keys, name
    sentence = text.split("\nSub-collections", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"``/<collection>/<id>/([a-z-]+)``", sentence))
    assert subs and named == set(subs), "README's sub-collections vs served ones"
