"""Whether a host runs with simultaneous multithreading (``GET /hosts/<id>/smt``), as Xen
Orchestra tells it.

XAPI 23.x (XCP-ng 8.3) has the answer in the host's ``cpu_info`` (``threads_per_core``,
cached as the host's ``CPUs``); older hosts are asked through XCP-ng's
``hyperthreading.py`` plugin, whose answer is ``"false"`` when SMT is off.  A host that
has neither cannot tell: as in Xen Orchestra, SMT then reads as not enabled.
"""
import logging

from ..xapi import XapiError, XapiUnreachable
from .failures import translate

log = logging.getLogger(__name__)

PLUGIN, FUNCTION = "hyperthreading.py", "get_hyperthreading"
#: What a host without the plugin (or without its function) answers.
NO_PLUGIN = ("XENAPI_MISSING_PLUGIN", "UNKNOWN_XENAPI_PLUGIN_FUNCTION")


def threads_per_core(host):
    """``threads_per_core`` of the host's ``cpu_info`` as a number, or ``None``."""
    value = (host.get("CPUs") or {}).get("threads_per_core")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class SmtService:
    """Tells whether SMT is enabled on a host.

    :param collections: the :class:`~.collections.CollectionService` (the host, in scope).
    :param pools: the :class:`~.pools.PoolService` (to ask the plugin).
    """

    def __init__(self, collections, pools):
        self.collections, self.pools = collections, pools

    def enabled(self, key):
        """``True`` when the host runs more than one thread per core.

        :raises NotFound: no such host (or out of the token's scope).
        :raises Conflict, UpstreamError, Unavailable: the plugin's call failed (a host that
            does not run, a plugin error, a pool out of reach).
        """
        host = self.collections.get("hosts", key)
        threads = threads_per_core(host)
        if threads is not None:
            return threads > 1
        conn = self.pools.connection_for(host)
        try:
            return conn.rpc.call("host.call_plugin", host["_xapiRef"], PLUGIN, FUNCTION, {}) != "false"
        except XapiError as exc:
            if exc.code in NO_PLUGIN:
                log.info("host %s cannot tell whether SMT is enabled (%s)", host["id"], exc.code)
                return False
            raise translate(exc, f"{PLUGIN} on host {host['id']}") from None
        except XapiUnreachable as exc:
            raise translate(exc, f"{PLUGIN} on host {host['id']}") from None
