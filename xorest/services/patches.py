"""Missing patches of XCP-ng hosts and pools (``GET /hosts|pools/<id>/missing_patches``),
as Xen Orchestra gets them: the ``check_update`` function of the hosts' ``updater.py``
plugin, whose JSON answer lists the packages yum would update, each as Xen Orchestra's
``XcpPatches`` objects (``name``, ``version``, ``release``, ``description``, ``changelog``
{``date``, ``author``, ``description``}, ``url``, ``size``, ``license``), passed on as the
plugin gives them.

A pool's list merges its hosts' lists, one entry per package name (the last host's, at
the place of its first appearance), as Xen Orchestra merges them.  Hosts that are not
running cannot be asked and are left out; any other host's failure fails the whole
answer (Xen Orchestra would drop that host's list silently, which reads as "up to date").
The plugin refuses a second operation while one runs ("busy"): like Xen Orchestra, the
check is tried again a few times, then the answer is a 409.
"""
import json
import logging
import time

from ..errors import Conflict, NotSupported, UpstreamError
from ..xapi import XapiError, XapiUnreachable
from .failures import translate

log = logging.getLogger(__name__)

PLUGIN, FUNCTION = "updater.py", "check_update"
#: The code of a plugin's own failures (``XenAPIPlugin.Failure``): ``[message, details, backtrace]``.
PLUGIN_FAILURE = "-1"
#: How often, and how far apart (seconds), a busy plugin is asked again: a request thread
#: waits at most their product.
BUSY_TRIES, BUSY_DELAY = 4, 1.0


def is_busy(exc):
    """The plugin's "busy" failure (another operation of the updater holds its lock)."""
    return exc.code == PLUGIN_FAILURE and bool(exc.params) and "plugin is busy" in str(exc.params[0]).lower()


def read_answer(text, host_id):
    """The list of packages of a ``check_update`` answer (a JSON text).

    :raises UpstreamError: not JSON, the plugin's ``{"error": ...}``, or not a list of objects.
    """
    try:
        answer = json.loads(text)
    except (TypeError, ValueError):
        raise UpstreamError(f"the updater plugin of host {host_id} answered something else than JSON",
                            host=host_id) from None
    if isinstance(answer, dict) and answer.get("error") is not None:
        raise UpstreamError(f"the updater plugin of host {host_id} failed: {answer['error']}", host=host_id)
    if not isinstance(answer, list) or not all(isinstance(item, dict) and item.get("name") for item in answer):
        raise UpstreamError(f"the updater plugin of host {host_id} answered something else than a list of "
                            "packages", host=host_id)
    return answer


class PatchService:
    """Asks hosts' updater plugins for their pending updates.

    :param collections: the :class:`~.collections.CollectionService` (objects in scope).
    :param pools: the :class:`~.pools.PoolService` (connections).
    :param sleep: waits between tries of a busy plugin (tests pass their own).
    """

    def __init__(self, collections, pools, sleep=time.sleep):
        self.collections, self.pools, self.sleep = collections, pools, sleep

    def missing_patches(self, collection, key):
        """The packages a host (``collection`` ``hosts``) or a pool (``pools``) waits for.

        :raises NotFound: no such object (or out of the token's scope).
        :raises NotSupported: a host that is not XCP-ng's (no updater plugin).
        :raises Conflict: the plugin stayed busy, or the host does not run (HOST_OFFLINE...).
        :raises UpstreamError: the plugin failed (XAPI's code and parameters in ``data``).
        """
        obj = self.collections.get(collection, key)
        if collection == "hosts":
            return self._host_patches(obj)
        hosts = [host for host in self.collections.cache.snapshot().collection("hosts").values()
                 if host.get("$pool") == obj["id"]]
        merged = {}
        for host in sorted(hosts, key=lambda h: h["id"]):
            if host.get("power_state") != "Running":
                log.info("pool %s: host %s is %s, not asked for its missing patches", obj["id"], host["id"],
                         host.get("power_state"))
                continue
            for package in self._host_patches(host):
                merged[package.get("id") or package["name"]] = package
        return list(merged.values())

    def _host_patches(self, host):
        if host.get("productBrand") != "XCP-ng":
            raise NotSupported(f"host {host['id']} is {host.get('productBrand') or 'not XCP-ng'}: xorest lists the "
                               "missing patches of XCP-ng hosts (their updater plugin)", host=host["id"])
        conn = self.pools.connection_for(host)
        doing = f"{PLUGIN} {FUNCTION} on host {host['id']}"
        for attempt in range(BUSY_TRIES):
            try:
                return read_answer(conn.rpc.call("host.call_plugin", host["_xapiRef"], PLUGIN, FUNCTION, {}),
                                   host["id"])
            except XapiError as exc:
                if exc.code == PLUGIN_FAILURE and not is_busy(exc):  # its message and details, not its backtrace
                    raise UpstreamError(f"{doing} failed: {exc.params[0] if exc.params else exc.code}",
                                        code=exc.code, params=exc.params[:2], host=host["id"]) from None
                if not is_busy(exc):
                    raise translate(exc, doing) from None
                if attempt + 1 == BUSY_TRIES:
                    raise Conflict(f"{doing}: the plugin is still busy ({exc.params[0]}): try again later",
                                   code=exc.code, params=exc.params[:1], host=host["id"]) from None
                log.info("%s: the plugin is busy, trying again in %g s", doing, BUSY_DELAY)
                self.sleep(BUSY_DELAY)
            except XapiUnreachable as exc:
                raise translate(exc, doing) from None
        raise AssertionError("unreachable")
