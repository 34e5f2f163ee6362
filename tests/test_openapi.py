"""The OpenAPI document: valid, complete (every route, nothing else), served without
credentials, and exact: the golden pool's objects, as the app serves them, match it."""
import json
import re

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec

from xorest import create_app
from xorest.api import BASE_URL, openapi, routes
from xorest.services import schemas as object_schemas

from . import golden

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app with the golden pool in its cache, a server in its store, an admin and a token."""
    app = create_app({"data_dir": str(tmp_path_factory.mktemp("openapi"))})
    services = app.extensions["xorest"]
    services.pools.ensure_started = lambda: False  # no pools: the cache is filled below
    user = services.auth.add_user("admin@example.com", "admin-password", "pool-admin")
    services.auth.add_user("user@example.com", "user-password")
    app.token, _ = services.auth.issue_token(user)
    services.store.add_server("https://pool.example.net", "root", "secret", None, False, "lab")
    served, _ = golden.map_records()
    services.cache.apply("golden", {key: (collection, obj) for collection, objs in served.items()
                                    for key, obj in objs.items()}, reset=True)
    app.golden = served
    return app


@pytest.fixture(scope="module")
def document(app):
    return openapi.build(app)


@pytest.fixture
def client(app):
    client = app.test_client()
    client.set_cookie("authenticationToken", app.token)
    return client


def validator(document, schema):
    return Draft202012Validator({"components": document["components"], **schema})


def errors_of(document, schema, value, limit=5):
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
            for e in list(validator(document, schema).iter_errors(value))[:limit]]


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"] == "3.1.0"
    validate_spec(document)
    json.dumps(document)  # plain JSON all through


def test_the_document_is_built_once_per_app(app):
    assert openapi.document(app) is openapi.document(app)
    assert openapi.document(app) == openapi.build(app)


def _sample_path(path, operation):
    """A concrete URL for a documented path: enum variables take their first value."""
    enums = {p["name"]: p["schema"].get("enum") for p in operation.get("parameters", ()) if p["in"] == "path"}
    return re.sub(r"\{(\w+)\}", lambda m: (enums.get(m.group(1)) or ["sample"])[0], path)


def test_every_route_is_documented_and_nothing_else(app, document):
    adapter = app.url_map.bind("localhost")
    documented = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            url = BASE_URL + _sample_path(path, operation)
            endpoint, _ = adapter.match(url, method=method.upper())  # raises if the app does not serve it
            assert routes.OPERATIONS[endpoint].permission == operation["x-xorest-permission"], path
            documented.add((endpoint, method.upper()))
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        op = routes.OPERATIONS[rule.endpoint]
        if op.websocket:
            continue  # OpenAPI has no WebSockets: JSON-RPC at /api/ is named in the description
        for method in rule.methods - {"OPTIONS"}:
            if method == "HEAD" and "HEAD" not in op.methods:
                continue  # answered for every GET; listed where it differs
            served.add((rule.endpoint, method))
    assert documented == served


def test_every_value_of_a_path_variable_has_its_path(document):
    paths = set(document["paths"])
    for name in object_schemas.collection_names():
        assert f"/{name}" in paths and f"/{name}/{{key}}" in paths, name
    for name in ("vms", "vm-snapshots", "vm-templates", "vdis", "vdi-snapshots"):
        assert f"/{name}/{{key}}.{{fmt}}" in paths
    assert "/{collection}" not in paths


def test_operations_state_their_security_and_permission(document):
    ids = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            ids.append(operation["operationId"])
            assert operation["summary"] and operation["description"], path
            assert operation["x-xorest-permission"] in operation["description"] or \
                operation["x-xorest-permission"] == "public", path
            if operation["x-xorest-permission"] == "public":
                assert operation["security"] == [] and "401" not in operation["responses"], path
            else:
                assert {next(iter(s)) for s in operation["security"]} == {"cookie", "legacyCookie", "bearer",
                                                                        "basic"}
                assert {"400", "401", "403", "429"} <= set(operation["responses"]), path
                success = [r for status, r in operation["responses"].items() if int(status) < 400]
                assert all("X-Token-Expires" in r["headers"] for r in success), path
            for status, response in operation["responses"].items():
                if int(status) >= 400 and method != "head":
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/Error"}, (path, status)
    assert len(ids) == len(set(ids))
    schemes = document["components"]["securitySchemes"]
    assert schemes["cookie"] == {**schemes["cookie"], "type": "apiKey", "in": "cookie",
                                 "name": "authenticationToken"}
    assert schemes["bearer"]["scheme"] == "bearer" and schemes["basic"]["scheme"] == "basic"


def test_every_answer_with_a_body_describes_it(document):
    """A success that sends a body documents its media types and schema (a client generator
    types it, schemathesis checks it live); only a 204 has none."""
    missing = [(method, path, status) for path, item in document["paths"].items()
               for method, operation in item.items() if method != "head"
               for status, response in operation["responses"].items()
               if status.startswith("2") and status != "204" and "content" not in response]
    assert not missing


def test_parameters_and_bodies_are_exact(document):
    listing = {p["name"]: p for p in document["paths"]["/vms"]["get"]["parameters"]}
    assert listing["limit"]["schema"] == {"type": "integer", "minimum": 0, "maximum": 10**9}
    assert listing["ndjson"]["schema"] == {"default": False, **openapi.FLAG_SCHEMA}  # ?ndjson alone too
    creation = document["components"]["schemas"]["CreateVdi"]["properties"]
    assert creation["virtual_size"] == {"type": "integer", "minimum": 0}  # a JSON number, whole
    memory = document["components"]["schemas"]["UpdateVm"]["properties"]["memory"]["anyOf"]
    assert [kind["type"] for kind in memory] == ["number", "string"]  # bytes, or "4 GiB"
    assert set(listing) >= {"filter", "fields", "sort", "after", "If-None-Match"}
    export = document["paths"]["/vms/{key}.{fmt}"]
    assert set(export) == {"get", "head"}
    formats = {p["name"]: p for p in export["get"]["parameters"]}
    assert formats["fmt"]["schema"]["enum"] == ["xva"]
    assert "gzip" in formats["compress"]["schema"]["enum"]
    disk = document["paths"]["/vdis/{key}.{fmt}"]
    assert set(disk) == {"get", "head", "put"}
    assert disk["put"]["requestBody"]["content"] == {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    assert {"200", "409", "502", "505"} <= set(export["get"]["responses"])
    headers = export["get"]["responses"]["200"]["headers"]
    assert {"Content-Disposition", "X-Xapi-Task", "Set-Cookie", "X-Token-Expires"} <= set(headers)
    created = document["paths"]["/srs/{key}/vdis"]["post"]["responses"]["201"]
    assert "Location" in created["headers"] and "text/plain" in created["content"]
    assert "Link" in document["paths"]["/vms"]["get"]["responses"]["200"]["headers"]
    token = document["paths"]["/users/{user}/authentication_tokens"]["post"]
    assert token["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TokenRequest"}
    assert token["x-xorest-permission"] == "self" and "x-xorest-role" not in token


@pytest.mark.parametrize("collection", sorted(golden.map_records()[0]))
def test_golden_objects_match_their_schemas(document, collection):
    """Every object the mappers make of the golden pool, as ``fields=*`` serves it."""
    name = object_schemas.object_schema(collection).__name__
    schema = {"$ref": f"#/components/schemas/{name}"}
    objects = golden.map_records()[0][collection]
    assert objects
    for key, obj in objects.items():
        url = f"{BASE_URL}/{collection}/{key}"
        problems = errors_of(document, schema, {**obj, "href": url, "url": url})
        assert not problems, (collection, key, problems)


def test_every_collection_has_an_object_schema(document):
    for collection in object_schemas.collection_names():
        name = object_schemas.object_schema(collection).__name__
        assert name in document["components"]["schemas"] and name + "Fields" in document["components"]["schemas"]


def _answer_schema(document, path, method="get", status="200", media="application/json"):
    return document["paths"][path][method]["responses"][status]["content"][media]["schema"]


@pytest.mark.parametrize("query", ["", "?fields=*", "?fields=name_label,id,CPUs.number,memory.size,$pool",
                                   "?fields=*&limit=3&sort=-name_label"])
def test_served_listings_match_the_document(app, client, document, query):
    for collection in object_schemas.collection_names():
        response = client.get(f"{BASE_URL}/{collection}{query}")
        assert response.status_code == 200, (collection, response.json)
        body = response.json
        if collection in app.golden or collection in ("servers", "users"):
            assert body, collection
        problems = errors_of(document, _answer_schema(document, f"/{collection}"), body)
        assert not problems, (collection, query, problems)


def test_served_objects_match_the_document(client, document):
    for collection in object_schemas.collection_names():
        for url in client.get(f"{BASE_URL}/{collection}?limit=5").json:
            response = client.get(url)
            assert response.status_code == 200
            problems = errors_of(document, _answer_schema(document, f"/{collection}/{{key}}"), response.json)
            assert not problems, (url, problems)


def test_other_answers_match_the_document(client, document):
    root = client.get(f"{BASE_URL}/")
    assert not errors_of(document, _answer_schema(document, "/"), root.json)
    tokens = client.get(f"{BASE_URL}/users/me/authentication_tokens")
    assert not errors_of(document, _answer_schema(document, "/users/{user}/authentication_tokens"), tokens.json)
    created = client.post(f"{BASE_URL}/users/me/authentication_tokens", json={"expiresIn": "1d"})
    assert created.status_code == 201
    assert not errors_of(document, _answer_schema(document, "/users/{user}/authentication_tokens", "post", "201"),
                         created.json)
    error = client.get(f"{BASE_URL}/vms?limit=-1")
    assert error.status_code == 400
    assert not errors_of(document, _answer_schema(document, "/vms", status="400"), error.json)


def test_served_without_credentials(app, document):
    anonymous = app.test_client()
    for url in (f"{BASE_URL}/openapi.json", f"{BASE_URL}/docs/swagger.json"):
        response = anonymous.get(url)
        assert response.status_code == 200 and response.mimetype == "application/json"
        assert response.json == document
    page = anonymous.get(f"{BASE_URL}/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assets = re.findall(r'(?:href|src)="([^"]+)"', page.get_data(as_text=True))
    assert len(assets) >= 4 and all(a.startswith(f"{BASE_URL}/docs/assets/") for a in assets)
    for url in assets:
        asset = anonymous.get(url)
        assert asset.status_code == 200 and len(asset.data) > 100, url
        assert asset.mimetype in ("text/css", "text/javascript", "image/png"), url
        asset.close()
    assert "http:" not in page.get_data(as_text=True) and "https:" not in page.get_data(as_text=True)
    assert anonymous.get(f"{BASE_URL}/docs/assets/nothing.js").status_code == 404
    assert anonymous.get(f"{BASE_URL}/vms").status_code == 401


def test_the_root_links_to_the_description(client):
    response = client.get(BASE_URL)
    assert response.status_code == 200
    assert all(isinstance(url, str) and url.startswith(f"{BASE_URL}/") for url in response.json)
    assert f'<{BASE_URL}/docs>; rel="service-doc"' in response.headers["Link"]
    assert f'<{BASE_URL}/openapi.json>; rel="service-desc"' in response.headers["Link"]


def test_make_docs_writes_the_served_document(document, tmp_path, capsys):
    target = tmp_path / "openapi.json"
    openapi.main([str(target)])
    assert json.loads(target.read_text()) == json.loads(json.dumps(document))
