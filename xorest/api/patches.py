"""``GET /<hosts|pools>/<id>/missing_patches``: the updates XCP-ng hosts wait for, as Xen
Orchestra lists them (:mod:`xorest.services.patches`)."""
from flask import Blueprint

from . import services
from .output import json_response
from .routes import Answer, Variable, operation

bp = Blueprint("patches", __name__)

#: Xen Orchestra's ``XcpPatches``: one package yum would update.
XCP_PATCH = {"type": "object", "required": ["name", "version", "release", "description", "url", "size", "license"],
             "additionalProperties": True, "properties": {
                 "name": {"type": "string"}, "version": {"type": "string"}, "release": {"type": "string"},
                 "description": {"type": "string", "description": "the package's summary"},
                 "changelog": {"anyOf": [{"type": "null"}, {
                     "type": "object", "required": ["date", "author", "description"], "properties": {
                         "date": {"type": "number", "description": "POSIX seconds"},
                         "author": {"type": "string"}, "description": {"type": "string"}}}],
                               "description": "the latest changelog entry, when the repository has one"},
                 "url": {"type": "string"}, "size": {"type": "number", "description": "bytes to download"},
                 "license": {"type": "string"}}}


@operation(bp, "/<any(hosts, pools):collection>/<key>/missing_patches", permission="read", tags=("{collection}",),
           summary="Updates the hosts wait for",
           variables={"key": Variable("the object's id (its uuid) or its XAPI opaque reference")},
           answers=(Answer(200, "the packages to update (none: up to date)", {"type": "array", "items": XCP_PATCH}),
                    Answer(404, "no such object"),
                    Answer(409, "the updater plugin stayed busy, or a host does not run (XAPI's code in data)"),
                    Answer(501, "not an XCP-ng host (no updater plugin)"),
                    Answer(502, "the updater plugin failed (its message, XAPI's code and params in data)"),
                    Answer(503, "the pool is not reachable")))
def missing_patches(collection, key):
    """What ``yum`` would update on an XCP-ng host, from its ``updater.py`` plugin
    (``check_update``), as Xen Orchestra lists it; for a pool, its running hosts' lists
    merged, one entry per package.  The check runs on each host at every request (it
    takes the time the host's repositories take)."""
    return json_response(services().patches.missing_patches(collection, key))
