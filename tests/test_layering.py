"""The import graph follows the architecture: api -> services -> {xapi, objects, cache, filter,
store} -> {errors, config}; the middle never imports each other; sim imports nothing of xorest."""
import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "xorest")
MIDDLE = {"xapi", "objects", "cache", "filter", "store"}
ALLOWED = {
    "api": {"services", "errors", "config", "filter"},
    "services": MIDDLE | {"errors", "config", "memory"},
    **{layer: {"errors", "config"} for layer in MIDDLE},
    "errors": set(),
    "config": {"errors"},
    "memory": set(),
    "sim": set(),
    "app": {"api", "config", "services", "errors"},
    "cli": {"services", "config", "errors", "sim", "serve", "app", "logs", "remote"},
    "remote": {"errors"},
    "serve": {"config", "errors", "logs"},
    "logs": {"errors"},
    "__init__": {"app"},
    "__main__": {"cli"},
}


def _layer(path):
    rel = os.path.relpath(path, PACKAGE)
    head = rel.split(os.sep)[0]
    return head[:-3] if head.endswith(".py") else head


def _imports(path):
    tree = ast.parse(open(path, encoding="utf-8").read())
    layer, depth_base = _layer(path), os.path.relpath(os.path.dirname(path), PACKAGE)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.startswith("xorest"):
                    parts = node.module.split(".")
                    yield parts[1] if len(parts) > 1 else (node.names[0].name if node.names else "")
                continue
            base = [] if depth_base == "." else depth_base.split(os.sep)
            base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
            target = base + (node.module.split(".") if node.module else [])
            if not target:  # "from . import x" at package root
                yield from (alias.name for alias in node.names)
            elif target[0] != layer:
                yield target[0]
            elif node.level > len(base):
                yield target[0]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("xorest."):
                    yield alias.name.split(".")[1]


FILES = [os.path.join(d, f) for d, _, fs in os.walk(PACKAGE) for f in fs if f.endswith(".py")]


@pytest.mark.parametrize("path", FILES, ids=[os.path.relpath(f, PACKAGE) for f in FILES])
def test_imports_flow_one_way(path):
    layer = _layer(path)
    for target in _imports(path):
        if target == layer or target.endswith(".py"):
            continue
        assert target in ALLOWED[layer], f"{os.path.relpath(path, PACKAGE)} imports {target}"


def test_flask_stays_at_the_edge():
    for path in FILES:
        if _layer(path) in ("api", "app"):
            continue
        source = open(path, encoding="utf-8").read()
        assert "import flask" not in source and "from flask" not in source, path


def test_every_route_declares_its_operation():
    """One declaration per route: a view registered without ``routes.operation`` would skip
    the permission check and the API's description."""
    import tempfile

    from xorest.api import routes
    from xorest.app import create_app
    from xorest.services.permissions import PERMISSIONS

    app = create_app({"data_dir": tempfile.mkdtemp()})
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    assert endpoints, "no routes"
    undeclared = endpoints - set(routes.OPERATIONS)
    assert not undeclared, f"routes without a declared operation: {sorted(undeclared)}"
    for op in routes.OPERATIONS.values():
        assert op.permission in PERMISSIONS, op
        assert op.summary, op
