"""Stats of VMs, hosts and pools (``GET /<collection>/<id>/stats``), read from the hosts'
``/rrd_updates`` as Xen Orchestra reads them, and a VM's data sources switched on and off.

A ``granularity`` is an archive of the hosts' RRDs (seconds: 5 s steps over 10 minutes,
minutes: 1 min over 2 hours, hours: 1 h over a week, days: 1 day over a year).  As Xen
Orchestra does, the host's own clock (``host.get_servertime``) dates the request, and
the archive is asked from one step less than its whole span back (so that it is never
crossed), averages only.  A VM's data come from the host it runs on, a host's from itself;
a pool's stats are its hosts' stats by host id, with ``{"error": ...}`` for a host that
could not answer.  The answer: ``{"endTimestamp", "interval", "stats"}``
(:mod:`.statkeys`).
"""
import logging

from ..errors import Conflict, NotFound, Unprocessable, UpstreamError
from ..objects.values import parse_datetime
from ..xapi import XapiError, XapiUnreachable, rrd
from .failures import translate, translated
from . import statkeys

log = logging.getLogger(__name__)

#: Xen Orchestra's granularities: the step of the archive each one reads.
GRANULARITIES = {"seconds": 5, "minutes": 60, "hours": 3600, "days": 86400}
DEFAULT_GRANULARITY = "seconds"
assert set(GRANULARITIES.values()) == set(rrd.ROWS)  # one of the archives every host keeps
LIVE = ("Running", "Paused")  # power states with a domain, hence an RRD on a host


def step_of(granularity):
    """The archive step of a granularity (``None``: seconds).

    :raises Unprocessable: an unknown one (Xen Orchestra's 422).
    """
    step = GRANULARITIES.get(granularity or DEFAULT_GRANULARITY)
    if step is None:
        raise Unprocessable(f"unknown granularity {str(granularity)[:40]!r}: use one of "
                            f"{', '.join(GRANULARITIES)}", parameter="granularity")
    return step


class StatsService:
    """Reads stats through the pools' connections.

    :param collections: the :class:`~.collections.CollectionService` (objects, in the
        request's scope).
    :param pools: the :class:`~.pools.PoolService` (the connection of an object's pool).
    """

    def __init__(self, collections, pools, config):
        self.collections, self.pools, self.config = collections, pools, config

    def stats(self, collection, key, granularity=None):
        """The stats of a VM, host or pool (``collection``: ``vms``, ``hosts`` or ``pools``).

        :raises NotFound: no such object (or out of the token's scope).
        :raises Unprocessable: an unknown granularity, or a VM that does not run.
        """
        obj = self.collections.get(collection, key)
        step = step_of(granularity)
        conn = self.pools.connection_for(obj)
        if collection == "vms":
            return self._vm_stats(conn, obj, step)
        if collection == "hosts":
            with translated("stats of the host"):
                return self._host_stats(conn, obj, step)
        return self._pool_stats(conn, obj, step)

    # where the data are ----------------------------------------------------------------

    def _host(self, key):
        """A host of the cache, out of the token's scope too (a VM in scope may run on it)."""
        return self.collections.cache.snapshot().find("hosts", key)

    def _address(self, host):
        """Where to ask ``host`` for its RRDs: ``None`` for the pool's URL (its master,
        whose certificate names that URL), else the member's address."""
        pool = self.collections.cache.snapshot().find("pools", host["$pool"]) or {}
        return None if pool.get("master") == host["id"] else host.get("address")

    def _resident_host(self, conn, vm):
        """The host a VM runs on (XAPI's ``resident_on``: a live VM's ``$container``, as
        Xen Orchestra maps it), or ``None``."""
        if vm.get("power_state") not in LIVE or not vm.get("$container"):
            return None
        return self._host(vm["$container"])

    # reading -----------------------------------------------------------------------------

    def _read(self, conn, keeper, step, uuid, kind, **which):
        """The stats of owner ``uuid`` (a ``kind``) from the RRDs host ``keeper`` keeps (``which``:
        the RRDs to ask for, see :func:`rrd.query`)."""
        now = self.server_time(conn, keeper)
        start = now - step * rrd.ROWS[step] + step  # one step less than the archive: never crossed
        updates = self.updates(conn, keeper, start, step, **which)
        sources = updates.owned_by(kind, uuid) if updates.times else []
        if not sources:
            return {"endTimestamp": now, "interval": step, "stats": {}}
        return {"endTimestamp": updates.end, "interval": updates.step, "stats": statkeys.stats(kind, sources)}

    def server_time(self, conn, host):
        """The host's clock (POSIX seconds), which dates its RRDs' rows.

        :raises UpstreamError: an unreadable time.
        """
        now = parse_datetime(conn.rpc.call("host.get_servertime", host["_xapiRef"]))
        if now is None:
            raise UpstreamError(f"host {host['id']} gave no readable time")
        return now

    def updates(self, conn, keeper, start, step, **which):
        """The ``/rrd_updates`` answer of host ``keeper`` (its archive of ``step`` seconds from
        ``start`` on; ``which``: see :func:`rrd.query`).

        :raises UpstreamError: the answer is unreadable, or of another archive.
        :raises XapiError, XapiUnreachable: as :func:`rrd.fetch`.
        """
        try:
            updates = rrd.fetch(conn.rpc, rrd.query(start, step, **which), host=self._address(keeper),
                                read_timeout=self.config.xapi_read_timeout)
        except rrd.RrdError as exc:
            raise UpstreamError(f"the /rrd_updates answer of host {keeper['id']} is unreadable: {exc}") from None
        if updates.step != step:
            raise UpstreamError(f"host {keeper['id']} answered {updates.step} s steps for {step} s ones")
        return updates

    def _host_stats(self, conn, host, step):
        return self._read(conn, host, step, host["uuid"], "host", host=True, vm_uuid="none")

    def _vm_stats(self, conn, vm, step):
        host = self._resident_host(conn, vm)
        if host is None:
            raise Unprocessable(f"VM {vm['id']} is {str(vm.get('power_state')).lower()}: only a running VM has "
                                "stats (the host it runs on keeps them)", power_state=vm.get("power_state"))
        with translated("stats of the VM"):
            # with the host's own RRD, as Xen Orchestra asks: a VM whose RRD is not there yet
            # (it just started) then has empty stats, not an error (no archive to export)
            return self._read(conn, host, step, vm["uuid"], "vm", host=True, vm_uuid=vm["uuid"])

    def _pool_stats(self, conn, pool, step):
        hosts = [host for host in self.collections.cache.snapshot().collection("hosts").values()
                 if host.get("$pool") == pool["id"]]
        result = {}
        for host in sorted(hosts, key=lambda h: h["id"]):
            try:
                result[host["id"]] = self._host_stats(conn, host, step)
            except (XapiError, XapiUnreachable) as exc:
                log.info("pool %s: no stats from host %s: %s", pool["id"], host["id"], exc)
                error = translate(exc, "stats of the host")
                result[host["id"]] = {"error": {"message": error.message, **error.data}}
            except UpstreamError as exc:
                result[host["id"]] = {"error": {"message": exc.message, **exc.data}}
        return result

    # data sources --------------------------------------------------------------------------

    def data_source(self, key, name, enabled):
        """Record (``enabled``) or forget a data source of a running VM, as XAPI's
        ``VM.record_data_source`` and ``VM.forget_data_source_archives`` do: what is
        forgotten loses its archives.

        :raises NotFound: no such VM, or (to record) no such data source for it.
        :raises Conflict: the VM does not run (it has no RRD).
        """
        vm = self.collections.get("vms", key)
        if vm.get("power_state") not in LIVE:
            raise Conflict(f"VM {vm['id']} is {str(vm.get('power_state')).lower()}: only a running VM has data "
                           "sources", power_state=vm.get("power_state"))
        method = "VM.record_data_source" if enabled else "VM.forget_data_source_archives"
        conn = self.pools.connection_for(vm)
        try:
            conn.rpc.call(method, vm["_xapiRef"], name)
        except XapiError as exc:
            if "Datasource_missing" in " ".join(map(str, exc.params)):  # rrdd's error, passed on by XAPI
                raise NotFound(f"VM {vm['id']} has no data source {name}", code=exc.code,
                               params=exc.params) from None
            raise translate(exc, method) from None
        except XapiUnreachable as exc:
            raise translate(exc, method) from None
