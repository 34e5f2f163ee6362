"""One JSON-RPC connection's session: who signed in, its calls, and the ``all``
notifications of what changed in the pools it may see."""
import logging
import time

from ... import filter as live_filter
from ...errors import XorestError
from .. import audit, scopes
from ..auth import token_scope
from ..permissions import authorize
from .core import METHODS, RpcError, check_params, from_xorest, invalid_parameters, invalid_request, \
    method_not_found, unauthorized

log = logging.getLogger(__name__)


class RpcSession:
    """One client connection.

    :param services: the :class:`~..registry.Services` of the instance.
    :param address: the client's address (for throttling and the audit trail).
    """

    def __init__(self, services, address):
        self.services = services
        self.address = address
        self.user = None
        self.token = None
        self.generation = None  # the cache generation the client's objects reflect
        self.shown = None  # ids a scoped session was shown (their exits are told, no others)

    @property
    def signed_in(self):
        return self.user is not None

    # calls --------------------------------------------------------------------

    def handle(self, message):
        """The answer (a dict) to one decoded message, or ``None`` for a notification."""
        if not isinstance(message, dict):
            return {"jsonrpc": "2.0", "id": None, "error": invalid_request().to_dict()}
        request_id = message.get("id")
        is_notification = "id" not in message and message.get("jsonrpc") == "2.0"
        try:
            name, params = self._parse(message)
            result = self.call(name, params)
        except RpcError as error:
            return None if is_notification else {"jsonrpc": "2.0", "id": request_id, "error": error.to_dict()}
        # as Xen Orchestra: a method that returns nothing answers true
        return None if is_notification else {"jsonrpc": "2.0", "id": request_id,
                                             "result": True if result is None else result}

    @staticmethod
    def _parse(message):
        if message.get("jsonrpc", "2.0") != "2.0":
            raise invalid_request("invalid version: only 2.0 is served")
        name, params = message.get("method"), message.get("params", {})
        if not isinstance(name, str):
            raise invalid_request("invalid method: a string is required")
        request_id = message.get("id")
        if "id" in message and (isinstance(request_id, bool) or not isinstance(request_id, (str, int, float))):
            raise invalid_request("invalid identifier: number or string required")
        if isinstance(params, list):  # JSON-RPC 1.0 style: one object, positionally
            params = params[0] if len(params) == 1 and isinstance(params[0], dict) else {}
        if not isinstance(params, dict):
            raise invalid_request("invalid params: an object is required")
        return name, params

    def call(self, name, params):
        """Run method ``name`` for this session, with its token's role and scope, as a
        REST request would; audited methods are recorded whatever the outcome."""
        found = METHODS.get(name)
        if found is None:
            raise method_not_found(name)
        outcome = None
        try:
            if found.permission != "public":
                if self.user is None:
                    raise unauthorized(found.permission)
                self._check_still_valid()
            if found.permission != "public":  # as Xen Orchestra: the permission, then the parameters
                authorize(self.user, self.token, found.permission)
            params = check_params(name, found.params, params)
            scopes.use(token_scope(self.token) if self.token else None)
            if found.audit:  # tasks the call starts record their end with it, as REST requests' do
                audit.use(self._origin(name))
            return found.fn(self, **params)
        except XorestError as error:
            outcome = from_xorest(error, self._object_id)
            raise outcome from None
        except live_filter.FilterError as error:
            outcome = invalid_parameters([{"message": str(error)}], str(error))
            raise outcome from None
        except RpcError as error:
            outcome = error
            raise
        except Exception:
            log.exception("JSON-RPC method %s failed", name)
            outcome = RpcError(-32000, "unknown error from the peer", status=500)
            raise outcome from None
        finally:
            scopes.use(None)
            audit.use(None)
            if found.audit:
                self._origin(name).record(outcome.status if outcome else 200, outcome.message if outcome else None)

    def _origin(self, name):
        return audit.Origin(self.services.audit, self.user, self.token, self.address, "RPC", "/api/", name)

    def _check_still_valid(self):
        """A token revoked or expired since sign-in ends the session (as on the REST API)."""
        if self.token is None:
            return
        row = self.services.store.get_token(self.token["id"])
        if row is None or row["revoked_at"] is not None or row["expires_at"] <= time.time():
            self.sign_out()
            raise unauthorized()

    def _object_id(self, ref):
        """The id of the object with XAPI reference ``ref`` (the reference if unknown)."""
        snapshot = self.services.cache.snapshot()
        for name in snapshot.collections:
            obj = snapshot.find(name, ref)
            if obj is not None:
                return obj["id"]
        return ref

    def sign_in(self, user, token):
        self.user, self.token, self.generation = user, token, None
        self.shown = set() if token and token_scope(token) else None

    def sign_out(self):
        self.user = self.token = self.generation = self.shown = None

    # notifications --------------------------------------------------------------

    def due(self):
        """Whether the pools changed since the client's last look (a cheap test)."""
        return self.user is not None and self.services.cache.snapshot().generation != self.generation

    def updates(self):
        """The ``all`` notifications for what changed since the client's last look, as
        Xen Orchestra sends them: ``{"type": "enter", "items": {id: object}}`` then
        ``{"type": "exit", "items": {id: 0}}`` (none when nothing changed or nobody signed
        in).  An object leaving the token's scope exits; others' ids are never told."""
        if self.user is None:
            return []
        cache = self.services.cache
        if self.generation is None:
            self.generation = cache.snapshot().generation
            return []
        changes = cache.changes_since(self.generation)
        if changes is None:  # too far behind: everything it may see enters again
            snapshot = cache.snapshot()
            changed = {key: name for name, objects in snapshot.collections.items() for key in objects}
            removed = {}
        else:
            snapshot, changed, removed = changes
        self.generation = snapshot.generation
        if not changed and not removed:
            return []
        entered, hidden = {}, set()
        scopes.use(token_scope(self.token) if self.token else None)
        try:
            visible = self.services.collections.scopes
            for key, name in changed.items():
                obj = snapshot.collection(name).get(key)
                if obj is not None and visible.allows(name, obj, snapshot):
                    entered[key] = obj
                else:
                    hidden.add(key)
        finally:
            scopes.use(None)
        if self.shown is None:  # unscoped: it could see everything that was removed
            exited = set(removed)
        else:
            exited = (set(removed) | hidden) & self.shown
            self.shown.difference_update(exited)
            self.shown.update(entered)
        messages = []
        if entered:
            messages.append({"type": "enter", "items": entered})
        if exited:
            messages.append({"type": "exit", "items": {key: 0 for key in exited}})
        return messages

    def showed(self, ids):
        """The client was given these objects (``xo.getAllObjects``): tell their exits."""
        if self.shown is not None:
            self.shown.update(ids)
