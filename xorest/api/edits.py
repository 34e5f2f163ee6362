"""Changes that answer at once: ``PATCH /<collection>/<id>`` (settings),
``PUT``/``DELETE /<collection>/<id>/tags/<tag>``, ``DELETE /<collection>/<id>`` and
``POST /<collection>`` (creations).  Each answers once the next read shows the change."""
from flask import Blueprint, Response

from ..services.creations import CreationService
from ..services.deletions import DeletionService
from ..services.edits import EDITORS, TAGGED
from . import BASE_URL, bodies, services
from .output import json_response
from .routes import NEW_ID, Answer, operation

bp = Blueprint("edits", __name__)

#: Who may change what: VMs and their disks and devices, or the pool's infrastructure.
_VM_SIDE = {"vms", "vm-snapshots", "vm-templates", "vm-controllers", "vdis", "vdi-snapshots", "vbds", "vifs"}
_ERRORS = (Answer(400, "invalid body"), Answer(404, "no such object"),
           Answer(409, "the pool refused: wrong state, in use..."), Answer(502, "the pool failed"),
           Answer(501, "an option xorest does not support (named in data)"), Answer(503, "the pool is not reachable"))


def _permission(collection):
    return "vm.admin" if collection in _VM_SIDE else "pool.admin"


def _any(names):
    return "any(" + ", ".join(f"'{n}'" for n in sorted(names)) + ")"


#: The PATCHes that answer 422 (a value the object cannot take), and when.
_UNPROCESSABLE = {"vdis": "a size smaller than the disk's (disks only grow)"}


def _register_patch(collections, schema, name, doc):
    """One PATCH route for ``collections`` (all of one side: one permission)."""
    def view(key, body, collection=None):
        services().edits.update(collection or collections[0], key, body)
        return Response(status=204)

    view.__name__, view.__doc__ = name, doc
    rule = f"/{collections[0]}/<key>" if len(collections) == 1 else f"/<{_any(collections)}:collection>/<key>"
    operation(bp, rule, methods=("PATCH",), permission=_permission(collections[0]), summary=doc, tags=("edits",),
              body=schema, answers=(Answer(204, "changed (the next read shows it)"), *_ERRORS,
                                    *(Answer(422, _UNPROCESSABLE[c]) for c in collections if c in _UNPROCESSABLE)),
              )(view)


for _collection, _schema in bodies.EDIT_BODIES.items():
    _register_patch((_collection,), _schema, "update_" + _collection,
                    f"Change the settings of one of {_collection} (Xen Orchestra's body).")
_NAMED = sorted(set(EDITORS) - set(bodies.EDIT_BODIES))
_register_patch(sorted(set(_NAMED) & _VM_SIDE), bodies.UPDATE_NAMES, "update_names",
                "Rename a snapshot, a template or a disk snapshot, set its description or tags.")
_register_patch(sorted(set(_NAMED) - _VM_SIDE), bodies.UPDATE_NAMES, "update_infrastructure_names",
                "Rename a host, a pool, an SR or a network, set its description or tags.")


def _register_tags(collections, suffix):
    def put_tag(collection, key, tag):
        services().edits.tag(collection, key, tag, True)
        return Response(status=204)

    def delete_tag(collection, key, tag):
        services().edits.tag(collection, key, tag, False)
        return Response(status=204)

    rule = f"/<{_any(collections)}:collection>/<key>/tags/<tag>"
    for view, method, doc in ((put_tag, "PUT", "Add a tag to an object (no change if it has it)."),
                              (delete_tag, "DELETE", "Remove a tag from an object (no change if it has not).")):
        view.__name__, view.__doc__ = f"{view.__name__}_{suffix}", doc
        operation(bp, rule, methods=(method,), permission=_permission(collections[0]), tags=("edits",),
                  summary=doc, answers=(Answer(204, "done"), *_ERRORS))(view)


_register_tags(sorted(set(TAGGED) & _VM_SIDE), "vm_side")
_register_tags(sorted(set(TAGGED) - _VM_SIDE), "infrastructure")


def _register_deletion(collections, suffix, doc):
    def delete_object(collection, key):
        services().deletions.delete(collection, key)
        return Response(status=204)

    delete_object.__name__, delete_object.__doc__ = f"delete_{suffix}", doc
    operation(bp, f"/<{_any(collections)}:collection>/<key>", methods=("DELETE",),
              permission=_permission(collections[0]), tags=("edits",), summary=doc.splitlines()[0],
              answers=(Answer(204, "deleted (the next read no longer shows it)"), *_ERRORS))(delete_object)


_DELETED = DeletionService.collections_deleted()
_register_deletion(sorted(set(_DELETED) & _VM_SIDE), "vm_side",
                   "Delete a VM (powered off first if needed, with its disks and snapshots), a snapshot, a "
                   "template, a disk, a VBD or a VIF.")
_register_deletion(sorted(set(_DELETED) - _VM_SIDE), "infrastructure",
                   "Delete an SR (unplugged first), a network (with its VLANs and bonds) or a server.")


def _register_creation(collection):
    def view(body):
        new_id = services().creations.create(collection, body)
        response = json_response({"id": new_id}, status=201)
        response.headers["Location"] = f"{BASE_URL}/{collection}/{new_id}"
        return response

    view.__name__ = "create_" + collection
    view.__doc__ = f"Create one of {collection} (Xen Orchestra's body); answers its id."
    operation(bp, f"/{collection}", methods=("POST",), permission=_permission(collection), summary=view.__doc__,
              tags=("creations",), body=bodies.CREATION_BODIES[collection],
              answers=(Answer(201, "created: its id (and its URL in Location)", NEW_ID, headers=("Location",)),
                       *_ERRORS, *((Answer(422, "no pool there, or it refused the credentials"),)
                                   if collection == "servers" else ())))(view)


for _collection in CreationService.created():
    _register_creation(_collection)
