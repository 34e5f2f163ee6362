"""Talking to XAPI pools: RPC client, HTTP transfer streams and the event watcher.

Rule of this package: it imports only ``xorest.errors``'s neighbours below it (nothing
from ``api``, ``services``, ``cache`` or ``objects``), and nothing above it ever sees a
``requests`` exception: failures surface as :class:`XapiError` or :class:`XapiUnreachable`.
"""
from .client import XapiClient
from .errors import HandleInvalid, HostIsSlave, SessionInvalid, XapiError, XapiUnreachable
from .streams import BodyEndedEarly, XapiStream, XapiUpload
from .watcher import Watcher

__all__ = ["XapiClient", "XapiError", "XapiUnreachable", "SessionInvalid", "HostIsSlave",
           "HandleInvalid", "XapiStream", "XapiUpload", "BodyEndedEarly", "Watcher"]
