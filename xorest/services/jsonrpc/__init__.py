"""Xen Orchestra's JSON-RPC API (``/api/``), as ``xo-cli`` and ``xo-lib`` speak it.

One :class:`RpcSession` per WebSocket connection (:mod:`.session`): it holds who signed
in, runs calls (:meth:`RpcSession.handle` takes one decoded JSON-RPC message and gives the
answer to send) and tells which objects changed for the ``all`` notifications.  Methods
are declared once (:mod:`.core`), a module per family: :mod:`.accounts` (``session.*``,
``token.*``), :mod:`.system` (``system.*``, ``xo.getAllObjects``) and :mod:`.management`
(``vm.*``, ``host.*``, ``sr.*``: the REST actions, edits and deletions).
"""
from . import accounts, management, system  # noqa: F401 (they declare their methods)
from .core import METHODS, RpcError, invalid_json, invalid_request
from .session import RpcSession
from .system import SERVER_VERSION

__all__ = ["METHODS", "RpcError", "RpcSession", "SERVER_VERSION", "invalid_json", "invalid_request"]
