"""Performance data as XAPI's xcp-rrdd keeps it: round-robin archives of data sources per
host and per running VM, exported by ``/rrd_updates``, ``/host_rrd`` and ``/vm_rrd``.

Archives (``rrdd_shared.timescales``, AVERAGE only unless the pool's
``other_config:create_min_max_in_new_VM_RRDs`` is ``true``):

=========  ====  ============  ======  =====
archive    rows  pdp_per_row   step    span
=========  ====  ============  ======  =====
seconds    120   1             5 s     10 min
minutes    120   12            60 s    2 h
hours      168   720           3600 s  1 week
days       366   17280         86400 s 1 year
=========  ====  ============  ======  =====

Values are computed, not stored: a consolidated data point is a function of the seed, the
owner's uuid, the data source and its time (a daily wave, per-step noise averaged down for
coarser archives), multiplied by what the object was doing then.  A VM only has data while
it runs (from its power history: ``NaN`` before its start and while halted or suspended,
``0`` CPU and traffic while paused, as a paused domain does not run); a host from its boot.
Host aggregates (CPU, PIF traffic, SR I/O) are sums over the VMs resident on it.  Tests can
force values (:meth:`Stats.override`), which perfmon then sees like any other.
"""
import calendar
import hashlib
import math
import random
import time

from .rpc import XapiFailure
from .state import NULL_REF

STEP = 5
TIMESCALES = ((120, 1), (120, 12), (168, 720), (366, 17280))  # (rows, pdp per row)
MRHB = 300.0
INF = float("inf")
NAN = float("nan")
DAY = 86400.0
TABLE_BITS = 16
_MASK = (1 << TABLE_BITS) - 1
LIVE = ("Running", "Paused")


def f_to_s(value):
    """rrd's float printer: ``%0.15g``, ``0.0``, ``NaN``, ``Infinity``/``-Infinity``."""
    if value != value:
        return "NaN"
    if value == 0:
        return "0.0"
    if value in (INF, -INF):
        return "Infinity" if value > 0 else "-Infinity"
    return "%0.15g" % value


def _hash(*parts):
    return int.from_bytes(hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def _unit(*parts):
    """A float in [0, 1) from the parts, stable across runs."""
    return _hash(*parts) / 2.0 ** 64


class DataSource:
    """One data source of an RRD (``Ds.ds``): name, rrd type, bounds, units, and how its
    values are made (``level`` and wave/noise shape, or a ``fn`` of the row)."""

    __slots__ = ("name", "ty", "min", "max", "units", "description", "default", "level", "amp", "sigma",
                 "key", "integer", "scale_paused", "fn")

    def __init__(self, name, ty, units, description, *, default=True, min=-INF, max=INF, level=0.0, amp=0.0,
                 sigma=0.0, integer=False, paused=0.0, fn=None):
        self.name, self.ty, self.units, self.description, self.default = name, ty, units, description, default
        self.min, self.max, self.level, self.amp, self.sigma = min, max, level, amp, sigma
        self.integer, self.scale_paused, self.fn = integer, paused, fn
        self.key = 0


class Owner:
    """The RRD of a host, VM or SR: legend prefix, data sources and what drives their values."""

    def __init__(self, kind, uuid, phase, coverage, dss, possible):
        self.kind, self.uuid, self.phase, self.coverage, self.dss = kind, uuid, phase, coverage, dss
        self.possible = possible  # every source it has, recorded or not

    @property
    def prefix(self):
        return f"{self.kind}:{self.uuid}:"


class Stats:
    """The pool's performance data, queried by the HTTP handlers and perfmon.

    :param db: the pool database (read under its lock by the callers).
    :param seed: makes every value reproducible.
    :param clock: the time source (POSIX seconds).
    :param sessions: a callable giving the number of open sessions (master's ``pool_session_count``).
    """

    def __init__(self, db, seed, clock=time.time, sessions=lambda: 0):
        self.db, self.seed, self.clock, self.sessions = db, seed, clock, sessions
        rng = random.Random(f"{seed}:rrd")
        self._noise = [rng.uniform(-1.0, 1.0) for _ in range(1 << TABLE_BITS)]
        self.history = {}  # VM ref -> [(time, power state), ...] ascending
        self.recorded = {}  # owner uuid -> {ds name: time enabled} (record_data_source)
        self.forgotten = {}  # owner uuid -> {ds name: time forgotten} (forget_data_source_archives)
        self.overrides = {}  # owner uuid -> {ds name: (value, since, until)}
        self._owners = {}  # VM ref -> (version, records it was made of, Owner)
        self._version = 0  # bumped when recorded data sources change
        self.started = self.clock()
        db.watch("VM", "power_state", self._power_changed)

    # power history ---------------------------------------------------------------------

    def _initial_history(self, ref, vm, now):
        """What the VM did before the simulator started, from its records."""
        if vm["is_a_template"] or vm["is_a_snapshot"]:
            return []
        metrics = self.db.tables["VM_metrics"].get(vm["metrics"])
        started = _epoch(metrics["start_time"]) if metrics else 0
        state = vm["power_state"]
        if vm["is_control_domain"]:
            host = self.db.tables["host"].get(vm["resident_on"])
            boot = _float((host or {}).get("other_config", {}).get("boot_time"), started)
            return [(boot, "Running")]
        if not started:
            return [(now, state)] if state in LIVE else []
        if state in LIVE:
            return [(started, state)]
        # it ran from its last start until some time before the build
        stopped = started + (now - started) * (0.2 + 0.7 * _unit(self.seed, vm["uuid"], "stopped"))
        return [(started, "Running"), (stopped, state)]

    def history_of(self, ref):
        """``[(time, power state)]`` of a VM, ascending; what it did before the simulator
        started is worked out from its records when first asked."""
        history = self.history.get(ref)
        if history is None:
            vm = self.db.tables["VM"].get(ref)
            history = self.history[ref] = self._initial_history(ref, vm, self.started) if vm else []
        return history

    def _power_changed(self, ref, old, new):
        if ref not in self.history:
            self.history[ref] = self._initial_history(ref, old, self.started)
        self.history[ref].append((self.clock(), new["power_state"]))

    # time -------------------------------------------------------------------------------

    def last_updated(self):
        """The time of rrdd's last 5-second update."""
        now = self.clock()
        return float(int(now) - int(now) % STEP)

    # data sources -----------------------------------------------------------------------

    def host_ref_at(self, address, is_master):
        """The host served at ``address`` (a member serves itself; the master also answers
        for any address that is no host's)."""
        for ref, host in self.db.tables["host"].items():
            if host["address"] == address:
                return ref
        if is_master:
            pool = next(iter(self.db.tables["pool"].values()))
            return pool["master"]
        return None

    def resident_vms(self, host_ref):
        """Running and paused VMs on the host, control domain included: those with an RRD there."""
        db = self.db
        host = db.tables["host"][host_ref]
        return [ref for ref in host["resident_VMs"] if db.tables["VM"][ref]["power_state"] in LIVE]

    def vm_owner(self, vm_ref, archived=False):
        """The RRD of a VM: a running VM's, or (``archived``) the one the master keeps of a VM
        that stopped, with the devices it had.  Kept while the records it is made of are the
        same objects (records are replaced, never changed, when they change)."""
        db = self.db
        vm = db.tables["VM"][vm_ref]
        parts = (vm, db.tables["VM_metrics"].get(vm["metrics"]), db.tables["VM_guest_metrics"].get(vm["guest_metrics"]),
                 *(db.tables["VIF"].get(r) for r in vm["VIFs"]), *(db.tables["VBD"].get(r) for r in vm["VBDs"]))
        cached = self._owners.get(vm_ref)
        if cached is not None and cached[0] == (archived, self._version) and len(cached[1]) == len(parts) \
                and all(a is b for a, b in zip(cached[1], parts)):
            return cached[2]
        owner = self._vm_owner(vm_ref, vm, archived)
        self._owners[vm_ref] = ((archived, self._version), parts, owner)
        return owner

    def _vm_owner(self, vm_ref, vm, archived):
        db = self.db
        uuid = vm["uuid"]
        seed = self.seed
        level = vm_cpu_level(seed, uuid)
        if vm["is_control_domain"]:
            level = 0.02 + 0.05 * _unit(seed, uuid, "cpu")
        metrics = db.tables["VM_metrics"].get(vm["metrics"], {})
        memory = metrics.get("memory_actual") or vm["memory_dynamic_max"]
        vcpus = metrics.get("VCPUs_number") or vm["VCPUs_at_startup"]
        free = 0.12 + 0.5 * _unit(seed, uuid, "free")
        dss = []
        for i in range(max(1, int(vcpus))):
            dss.append(DataSource(f"cpu{i}", "DERIVE", "(fraction)", f"CPU{i} usage", min=0.0, max=1.0,
                                  level=level * (0.7 + 0.6 * _unit(seed, uuid, "cpu", i)), amp=0.5, sigma=0.35))
        dss.append(DataSource("cpu_usage", "DERIVE", "(fraction)", "Domain CPU usage", min=0.0, max=1.0,
                              level=level, amp=0.5, sigma=0.15))
        for name, description in RUNSTATES:
            share = {"runstate_fullrun": level, "runstate_blocked": 1 - level}.get(name, level * 0.02)
            dss.append(DataSource(name, "DERIVE", "(fraction)", description, default=False, min=0.0, max=1.0,
                                  level=share, amp=0.3, sigma=0.2))
        dss.append(DataSource("memory", "GAUGE", "B", "Memory currently allocated to VM", min=0.0,
                              level=float(memory), integer=True, paused=NAN))
        dss.append(DataSource("memory_target", "GAUGE", "B", "Target of VM balloon driver", min=0.0,
                              level=float(vm["memory_dynamic_max"]), integer=True, paused=NAN))
        guest = db.tables["VM_guest_metrics"].get(vm["guest_metrics"])
        if guest is not None or vm["is_control_domain"]:
            dss.append(DataSource("memory_internal_free", "GAUGE", "KiB", "Memory used as reported by the guest "
                                  "agent", min=0.0, level=memory / 1024 * free, amp=-0.3, sigma=0.03, integer=True,
                                  paused=NAN))
        for vif in vm["VIFs"]:
            record = db.tables["VIF"].get(vif)
            if record is None or not (record["currently_attached"] or archived):
                continue
            device = record["device"]
            for direction in ("rx", "tx"):
                rate = self.vif_level(uuid, device, direction)
                dss.append(DataSource(f"vif_{device}_{direction}", "DERIVE", "B/s",
                                      f"Bytes per second {'received' if direction == 'rx' else 'transmitted'} on "
                                      f"virtual interface number '{device}'", min=0.0, level=rate, amp=0.6,
                                      sigma=0.5))
                dss.append(DataSource(f"vif_{device}_{direction}_errors", "DERIVE", "err/s",
                                      f"{'Receive' if direction == 'rx' else 'Transmit'} errors per second on virtual "
                                      f"interface number '{device}'", default=False, min=0.0, level=0.0))
        for vbd in vm["VBDs"]:
            record = db.tables["VBD"].get(vbd)
            if record is None or not (record["currently_attached"] or archived) or record["VDI"] == NULL_REF \
                    or not record["device"]:
                continue
            dss.extend(self._disk_sources(f"vbd_{record['device']}_", uuid, record["device"], "VDI"))
        phase = 2 * math.pi * _unit(seed, uuid, "phase")
        return Owner("vm", uuid, phase, self.history_of(vm_ref), *self._keyed(uuid, dss))

    def vif_level(self, vm_uuid, device, direction):
        base = 10 ** (3 + 3.3 * _unit(self.seed, vm_uuid, "vif", device))
        return base * (0.4 + 0.6 * _unit(self.seed, vm_uuid, "vif", device, direction))

    def disk_level(self, owner_uuid, device, direction):
        base = 10 ** (3 + 3.5 * _unit(self.seed, owner_uuid, "vbd", device))
        return base * (0.3 + 0.7 * _unit(self.seed, owner_uuid, "vbd", device, direction))

    def _disk_sources(self, prefix, owner_uuid, device, what, read=None, write=None):
        """iostat's data sources of one disk (a VM's VBD, ``vbd_<dev>_<key>``) or one SR on a host
        (``<key>_<sr8>``); ``read``/``write`` levels in B/s (default: the disk's own)."""
        read = self.disk_level(owner_uuid, device, "r") if read is None else read
        write = self.disk_level(owner_uuid, device, "w") if write is None else write
        block_r = 4096 * (1 + int(15 * _unit(self.seed, owner_uuid, device, "bs")))
        block_w = 4096 * (1 + int(7 * _unit(self.seed, owner_uuid, device, "bsw")))
        latency = 150 + 2500 * _unit(self.seed, owner_uuid, device, "lat") ** 2  # µs

        def name(key):
            return f"{prefix}{key}" if what == "VDI" else f"{key}_{prefix}"

        iops_r, iops_w = read / block_r, write / block_w
        busy = (iops_r + iops_w) * latency / 1e6
        return [
            DataSource(name("read"), "DERIVE", "B/s", f"Reads from device '{device}' in B/s", level=read, amp=0.5,
                       sigma=0.6),
            DataSource(name("write"), "DERIVE", "B/s", f"Writes to device '{device}' in B/s", level=write,
                       amp=0.5, sigma=0.6),
            DataSource(name("read_latency"), "GAUGE", "μs", f"Reads from device '{device}' in microseconds",
                       level=latency, amp=0.2, sigma=0.3, integer=True),
            DataSource(name("write_latency"), "GAUGE", "μs", f"Writes to device '{device}' in microseconds",
                       level=latency * 1.4, amp=0.2, sigma=0.3, integer=True),
            DataSource(name("io_throughput_read"), "ABSOLUTE", "MiB/s", f"Data read from the {what}, in MiB/s",
                       min=0.0, level=read / 2 ** 20, amp=0.5, sigma=0.6),
            DataSource(name("io_throughput_write"), "ABSOLUTE", "MiB/s", f"Data written to the {what}, in MiB/s",
                       min=0.0, level=write / 2 ** 20, amp=0.5, sigma=0.6),
            DataSource(name("io_throughput_total"), "ABSOLUTE", "MiB/s", f"All {what} I/O, in MiB/s", min=0.0,
                       level=(read + write) / 2 ** 20, amp=0.5, sigma=0.5),
            DataSource(name("iops_read"), "ABSOLUTE", "requests/s", "Read requests per second", min=0.0,
                       level=iops_r, amp=0.5, sigma=0.6),
            DataSource(name("iops_write"), "ABSOLUTE", "requests/s", "Write requests per second", min=0.0,
                       level=iops_w, amp=0.5, sigma=0.6),
            DataSource(name("iops_total"), "ABSOLUTE", "requests/s", "I/O requests per second", min=0.0,
                       level=iops_r + iops_w, amp=0.5, sigma=0.5),
            DataSource(name("iowait"), "ABSOLUTE", "s/s", "Total I/O wait time (all requests) per second",
                       min=0.0, level=busy, amp=0.5, sigma=0.5),
            DataSource(name("inflight"), "GAUGE", "requests", "Number of I/O requests currently in flight",
                       min=0.0, level=busy, amp=0.5, sigma=0.8, integer=True),
            DataSource(name("latency"), "GAUGE", "μs", "Average I/O latency", min=0.0, level=latency * 1.2,
                       amp=0.2, sigma=0.3),
            DataSource(name("avgqu_sz"), "GAUGE", "requests", "Average I/O queue size", min=0.0, level=busy,
                       amp=0.5, sigma=0.5),
        ]

    def host_owner(self, host_ref):
        db = self.db
        host = db.tables["host"][host_ref]
        uuid = host["uuid"]
        seed = self.seed
        pcpus = len(host["host_CPUs"]) or int(host["cpu_info"].get("cpu_count", 1))
        vms = self.resident_vms(host_ref)
        load, vcpus, reclaimable = 0.0, 0, 0
        for vm_ref in vms:
            vm = db.tables["VM"][vm_ref]
            n = vm["VCPUs_at_startup"]
            vcpus += n
            if vm["power_state"] == "Running":
                load += n * (vm_cpu_level(seed, vm["uuid"]) if not vm["is_control_domain"] else 0.05)
            reclaimable += vm["memory_dynamic_max"] - vm["memory_dynamic_min"]
        level = min(0.95, 0.015 + load / pcpus)
        metrics = db.tables["host_metrics"].get(host["metrics"], {})
        dss = []
        for i in range(pcpus):
            dss.append(DataSource(f"cpu{i}", "DERIVE", "(fraction)", f"Physical cpu usage for cpu {i}", min=0.0,
                                  max=1.0, level=level * (0.75 + 0.5 * _unit(seed, uuid, "cpu", i)), amp=0.3,
                                  sigma=0.3))
        dss += [
            DataSource("cpu_avg", "DERIVE", "(fraction)", "Average physical cpu usage", min=0.0, max=1.0, level=level,
                       amp=0.3, sigma=0.1),
            DataSource("loadavg", "GAUGE", "(fraction)", "Domain0 loadavg", level=0.25 + 1.5 * level, amp=0.3,
                       sigma=0.25),
            DataSource("hostload", "GAUGE", "(fraction)", "Host load per physical cpu, where load refers to the "
                       "number of vCPU(s) in running or runnable status.", min=0.0, level=load / pcpus, amp=0.3,
                       sigma=0.2),
            DataSource("running_vcpus", "GAUGE", "count", "The total number of running vCPUs per host", min=0.0,
                       level=float(vcpus), integer=True),
            DataSource("running_domains", "GAUGE", "count", "The total number of running domains per host",
                       min=0.0, level=float(len(vms)), integer=True),
            DataSource("memory_reclaimed", "GAUGE", "B", "Host memory reclaimed by squeezed", level=0.0,
                       integer=True),
            DataSource("memory_reclaimed_max", "GAUGE", "B", "Host memory that could be reclaimed by squeezed",
                       level=float(reclaimable), integer=True),
            DataSource("memory_total_kib", "GAUGE", "KiB", "Total amount of memory in the host", min=0.0,
                       level=metrics.get("memory_total", 0) / 1024, integer=True),
            DataSource("memory_free_kib", "GAUGE", "KiB", "Total amount of free memory", min=0.0,
                       level=metrics.get("memory_free", 0) / 1024, sigma=0.002, integer=True),
        ]
        dss += self._pif_sources(host_ref, host, vms)
        dss += [
            DataSource("xapi_memory_usage_kib", "GAUGE", "KiB", "Total memory allocated used by xapi daemon",
                       min=0.0, level=180000 + 90000 * _unit(seed, uuid, "xapi"), sigma=0.01, integer=True),
            DataSource("xapi_free_memory_kib", "GAUGE", "KiB", "Free memory available to the xapi daemon", min=0.0,
                       level=30000 + 30000 * _unit(seed, uuid, "xapif"), sigma=0.1, integer=True),
            DataSource("xapi_live_memory_kib", "GAUGE", "KiB", "Live memory used by xapi daemon", min=0.0,
                       level=110000 + 60000 * _unit(seed, uuid, "xapil"), sigma=0.03, integer=True),
            DataSource("xapi_allocation_kib", "DERIVE", "KiB", "Memory allocation done by the xapi daemon", min=0.0,
                       level=2000 + 6000 * _unit(seed, uuid, "xapia"), amp=0.3, sigma=0.4),
            DataSource("xapi_open_fds", "GAUGE", "file descriptors", "Number of open file descriptors held by xapi",
                       min=0.0, level=90 + 60 * _unit(seed, uuid, "fds"), sigma=0.05, integer=True),
        ]
        pool = next(iter(db.tables["pool"].values()))
        if pool["master"] == host_ref:
            dss += [
                DataSource("pool_session_count", "GAUGE", "sessions", "Number of sessions", min=0.0,
                           fn=lambda _t: float(self.sessions()), integer=True),
                DataSource("pool_task_count", "GAUGE", "tasks", "Number of tasks", min=0.0,
                           fn=lambda _t: float(len(db.tables["task"])), integer=True),
                DataSource("pool_session_creation_rate", "DERIVE", "sessions/s", "Number of sessions created per "
                           "second", min=0.0, level=0.05, sigma=0.8),
                DataSource("pool_vgpu_migration_rate", "ABSOLUTE", "migrations/s", "Number of vGPU migrations "
                           "occurred per second", min=0.0, level=0.0),
            ]
        dss += self._sr_sources(host_ref, host, vms)
        dss.append(DataSource("Tapdisks_in_low_memory_mode", "ABSOLUTE", "count", "Tapdisks in low memory mode",
                              min=0.0, level=0.0))
        if pool["ha_enabled"]:
            for vdi in pool["ha_statefiles"]:
                record = db.tables["VDI"].get(vdi)
                if record is not None:
                    dss.append(DataSource(f"statefile/{record['uuid']}/latency", "GAUGE", "s", "Turn-around time "
                                          "of the latest State-File access from the local host", level=0.008,
                                          sigma=0.3))
            dss.append(DataSource("network/latency", "GAUGE", "s", "Interval between the last two heartbeats "
                                  "transmitted from the local host to all Online hosts", level=0.9, sigma=0.05))
            dss.append(DataSource("xapi_healthcheck/latency", "GAUGE", "s", "Turn-around time of the latest xapi "
                                  "status monitoring call on the local host", level=0.015, sigma=0.3))
        cache = host["local_cache_sr"]
        if cache in db.tables["SR"]:
            sr_uuid = db.tables["SR"][cache]["uuid"]
            dss += [
                DataSource(f"sr_{sr_uuid}_cache_size", "GAUGE", "B", "Size in bytes of the cache SR", min=0.0,
                           level=40 * 2 ** 30 * (0.3 + _unit(seed, sr_uuid, "cache")), sigma=0.01, integer=True),
                DataSource(f"sr_{sr_uuid}_cache_hits", "GAUGE", "hits/s", "Hits per second of the cache", min=0.0,
                           level=120.0, amp=0.5, sigma=0.5, integer=True),
                DataSource(f"sr_{sr_uuid}_cache_misses", "GAUGE", "misses/s", "Misses per second of the cache",
                           min=0.0, level=15.0, amp=0.5, sigma=0.5, integer=True),
            ]
        phase = 2 * math.pi * _unit(seed, uuid, "phase")
        boot = _float(host["other_config"].get("boot_time"), 0.0)
        return Owner("host", uuid, phase, [(boot, "Running")], *self._keyed(uuid, dss))

    def _pif_sources(self, host_ref, host, vms):
        """pif_<device>_rx/tx for the host's physical interfaces and bonds (not VLANs): traffic of
        the VMs whose networks they carry, storage traffic, the management traffic on eth0."""
        db = self.db
        pifs = {ref: db.tables["PIF"][ref] for ref in host["PIFs"] if ref in db.tables["PIF"]}
        by_network = {}
        for ref, pif in pifs.items():
            by_network[pif["network"]] = pif["device"]
        traffic = {}
        for vm_ref in vms:
            vm = db.tables["VM"][vm_ref]
            if vm["is_control_domain"] or vm["power_state"] != "Running":
                continue
            for vif in vm["VIFs"]:
                record = db.tables["VIF"].get(vif)
                device = by_network.get(record["network"]) if record else None
                if device is None:
                    continue
                rx, tx = traffic.get(device, (0.0, 0.0))
                traffic[device] = (rx + self.vif_level(vm["uuid"], record["device"], "tx"),
                                   tx + self.vif_level(vm["uuid"], record["device"], "rx"))
        dss, total_rx, total_tx = [], 0.0, 0.0
        devices = []
        for pif in pifs.values():
            if pif["VLAN"] < 0 and pif["device"] not in devices:
                devices.append(pif["device"])
        bonds = {}
        for pif in pifs.values():
            for bond in pif["bond_master_of"]:
                record = db.tables["Bond"].get(bond)
                if record:
                    bonds[pif["device"]] = (record, [db.tables["PIF"][s]["device"] for s in record["slaves"]
                                                     if s in db.tables["PIF"]])
        levels = {}
        for device in devices:
            rx, tx = traffic.get(device, (0.0, 0.0))
            if device == "eth0":
                rx, tx = rx + 25_000.0, tx + 40_000.0  # xapi, storage and the gateway's own traffic
            if device not in bonds:
                levels[device] = levels.get(device, (0.0, 0.0))
                levels[device] = (levels[device][0] + rx, levels[device][1] + tx)
            else:
                bond, slaves = bonds[device]
                shares = [1.0, 0.0] if bond["mode"] == "active-backup" else [0.5, 0.5]
                for slave, share in zip(slaves, shares):
                    old = levels.get(slave, (0.0, 0.0))
                    levels[slave] = (old[0] + rx * share, old[1] + tx * share)
        for device in devices:
            if device in bonds:
                slaves = bonds[device][1]
                levels[device] = (sum(levels.get(s, (0, 0))[0] for s in slaves),
                                  sum(levels.get(s, (0, 0))[1] for s in slaves))
        for device in devices:
            rx, tx = levels.get(device, (0.0, 0.0))
            if device not in bonds:
                total_rx, total_tx = total_rx + rx, total_tx + tx
            for direction, level in (("rx", rx), ("tx", tx)):
                verb = "received" if direction == "rx" else "sent"
                dss.append(DataSource(f"pif_{device}_{direction}", "DERIVE", "B/s",
                                      f"Bytes per second {verb} on physical interface {device}", min=0.0,
                                      level=level, amp=0.4, sigma=0.3))
                dss.append(DataSource(f"pif_{device}_{direction}_errors", "DERIVE", "err/s",
                                      f"{'Receive' if direction == 'rx' else 'Transmit'} errors per second on "
                                      f"physical interface {device}", default=False, min=0.0, level=0.0))
        dss.append(DataSource("pif_aggr_rx", "DERIVE", "B/s", "Bytes per second received on all physical interfaces",
                              min=0.0, level=total_rx, amp=0.4, sigma=0.2))
        dss.append(DataSource("pif_aggr_tx", "DERIVE", "B/s", "Bytes per second sent on all physical interfaces",
                              min=0.0, level=total_tx, amp=0.4, sigma=0.2))
        return dss

    def _sr_sources(self, host_ref, host, vms):
        """iostat's per-SR host data sources (``<key>_<sr8>``): the I/O of the host's VMs."""
        db = self.db
        io = {}
        for pbd in host["PBDs"]:
            record = db.tables["PBD"].get(pbd)
            sr = db.tables["SR"].get(record["SR"]) if record else None
            if sr is not None and record["currently_attached"] and sr["content_type"] == "user":
                io[record["SR"]] = [0.0, 0.0]
        for vm_ref in vms:
            vm = db.tables["VM"][vm_ref]
            if vm["power_state"] != "Running":
                continue
            for vbd in vm["VBDs"]:
                record = db.tables["VBD"].get(vbd)
                vdi = db.tables["VDI"].get(record["VDI"]) if record else None
                if vdi is None or vdi["SR"] not in io or not record["device"]:
                    continue
                io[vdi["SR"]][0] += self.disk_level(vm["uuid"], record["device"], "r")
                io[vdi["SR"]][1] += self.disk_level(vm["uuid"], record["device"], "w")
        dss = []
        for sr_ref, (read, write) in io.items():
            short = db.tables["SR"][sr_ref]["uuid"][:8]
            dss += self._disk_sources(short, host["uuid"], short, "SR", read=read + 1.0, write=write + 1.0)
        return dss

    def _keyed(self, uuid, dss):
        """``(recorded, possible)``: the sources in the RRD (defaults not forgotten, and those
        recorded on request) and every source the owner has."""
        enabled = self.recorded.get(uuid, {})
        forgotten = self.forgotten.get(uuid, {})
        kept = []
        for ds in dss:
            ds.key = _hash(self.seed, uuid, ds.name)
            if ds.name in enabled or (ds.default and ds.name not in forgotten):
                kept.append(ds)
        return kept, dss

    # values ---------------------------------------------------------------------------------

    def state_at(self, owner, t0, t1):
        """``"Running"``, ``"Paused"`` or ``None`` (no data) for the interval ``(t0, t1]``: a
        consolidated point is unknown when the owner ran less than half of it (rrd's xff 0.5)."""
        history = owner.coverage
        if not history or t1 <= history[0][0]:
            return None
        last_time, last_state = history[-1]
        if last_time <= t0:
            return last_state if last_state in LIVE else None
        running = paused = 0.0
        for i, (start, state) in enumerate(history):
            end = history[i + 1][0] if i + 1 < len(history) else INF
            lo, hi = max(start, t0), min(end, t1)
            if hi > lo:
                if state == "Running":
                    running += hi - lo
                elif state == "Paused":
                    paused += hi - lo
        if (running + paused) * 2 < t1 - t0:
            return None
        return "Running" if running >= paused else "Paused"

    def states(self, owner, times, step):
        """What the series of one owner at ``times`` share: its state, the daily wave (averaged
        over each step) and the step index of each time."""
        two_pi_day = 2 * math.pi / DAY
        phase = owner.phase
        states, waves, steps = [], [], []
        cos = math.cos
        for t in times:
            states.append(self.state_at(owner, t - step, t))
            a, b = two_pi_day * (t - step) + phase, two_pi_day * t + phase
            waves.append((cos(a) - cos(b)) / (b - a))
            steps.append(int(t // step))
        return states, waves, steps

    def series(self, owner, ds, times, step, frame=None):
        """Consolidated values of ``ds`` at the CDP end times ``times`` (archive step ``step``);
        ``frame`` is :meth:`states` of the same times, when the caller has it."""
        states, waves, steps = frame if frame is not None else self.states(owner, times, step)
        noise, mask = self._noise, _MASK
        sigma = ds.sigma * 0.5 / math.sqrt(step / STEP)
        overrides = self.overrides.get(owner.uuid)
        override = None
        if overrides:
            override = overrides.get(ds.name)
            if override is None and ds.name.startswith("cpu") and ds.name[3:].isdigit():
                override = overrides.get("cpu_usage" if owner.kind == "vm" else "cpu_avg")
        enabled_at = self.recorded.get(owner.uuid, {}).get(ds.name)
        out = []
        key, level, amp, low, high, integer = ds.key, ds.level, ds.amp, ds.min, ds.max, ds.integer
        fn, paused = ds.fn, ds.scale_paused
        for t, state, wave, n in zip(times, states, waves, steps):
            if state is None or (enabled_at is not None and t - step < enabled_at):
                out.append(NAN)
                continue
            if override is not None and override[1] <= t <= override[2]:
                out.append(override[0])
                continue
            if fn is not None:
                value = fn(t)
            elif state == "Paused":  # the domain does not run: no CPU, no I/O, no memory reports
                out.append(paused)
                continue
            else:
                jitter = noise[(key ^ (n * 0x9E3779B1)) & mask] + noise[(key + n * 0x85EBCA6B + step) & mask]
                value = level * (1.0 + amp * wave) * (1.0 + sigma * jitter)
            if value < low:
                value = low
            elif value > high:
                value = high
            if integer:
                value = float(round(value))
            out.append(value)
        return out

    # archives ------------------------------------------------------------------------------

    def rras(self):
        """``[(cf, rows, pdp_per_row, xff)]`` in the order rrdd creates them."""
        pool = next(iter(self.db.tables["pool"].values()))
        min_max = pool["other_config"].get("create_min_max_in_new_VM_RRDs") == "true"
        result = []
        for rows, pdp in TIMESCALES:
            if pdp > 1 and min_max:
                result += [("AVERAGE", rows, pdp, 1.0), ("MIN", rows, pdp, 1.0), ("MAX", rows, pdp, 1.0)]
            else:
                result.append(("AVERAGE", rows, pdp, 0.5))
        return result

    def cf_series(self, owner, ds, times, step, cf, states=None):
        values = self.series(owner, ds, times, step, states)
        if cf == "AVERAGE":
            return values
        spread = 0.25 if ds.sigma or ds.amp else 0.0
        factor = 1 - spread if cf == "MIN" else 1 + spread
        return [min(ds.max, max(ds.min, v * factor)) if v == v else v for v in values]

    # the data source API ----------------------------------------------------------------------

    def record(self, uuid, name, possible):
        if name not in {ds.name for ds in possible}:
            raise datasource_missing(name)
        self.recorded.setdefault(uuid, {})[name] = self.clock()
        self.forgotten.get(uuid, {}).pop(name, None)
        self._version += 1

    def forget(self, uuid, name):
        self.recorded.get(uuid, {}).pop(name, None)
        self.forgotten.setdefault(uuid, {})[name] = self.clock()
        self._version += 1

    def query(self, owner, name):
        for ds in owner.dss:
            if ds.name == name:
                last = self.last_updated()
                return self.series(owner, ds, [last], STEP)[0]
        raise datasource_missing(name)

    def override(self, uuid, values, since=None, until=None):
        """Force data sources of ``uuid`` to constant values from ``since`` to ``until``
        (default: the last ten minutes and on); ``cpu_usage`` of a VM, ``cpu_avg`` of a host
        also drive its ``cpuN``."""
        now = self.clock()
        since = now - 600 if since is None else float(since)
        until = INF if until is None else float(until)
        target = self.overrides.setdefault(uuid, {})
        for name, value in values.items():
            target[name] = (float(value), since, until)

    def reset_overrides(self, uuid=None):
        if uuid is None:
            self.overrides.clear()
        else:
            self.overrides.pop(uuid, None)


RUNSTATES = [
    ("runstate_fullrun", "Fraction of time that all vCPUs are running"),
    ("runstate_full_contention", "Fraction of time that all vCPUs are runnable (i.e., waiting for CPU)"),
    ("runstate_concurrency_hazard", "Fraction of time that some vCPUs are running and some are runnable"),
    ("runstate_blocked", "Fraction of time that all vCPUs are blocked or offline"),
    ("runstate_partial_run", "Fraction of time that some vCPUs are running and some are blocked"),
    ("runstate_partial_contention", "Fraction of time that some vCPUs are runnable and some are blocked"),
    ("runnable_any", "Fraction of time that at least one vCPU is runnable in the domain"),
]


def vm_cpu_level(seed, uuid):
    """A VM's typical CPU use: most VMs idle along, a few are busy."""
    return 0.01 + 0.45 * _unit(seed, uuid, "cpu") ** 3


def datasource_missing(name):
    """rrdd's ``Datasource_missing``, as XAPI passes it on."""
    return XapiFailure("INTERNAL_ERROR", f"Rrd_interface.Rrdd_error([Datasource_missing, {name}])")


def _epoch(value):
    """POSIX seconds of a XAPI datetime ``YYYYMMDDTHH:MM:SSZ`` (0 for anything else)."""
    text = str(value)
    try:
        return float(calendar.timegm((int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[9:11]),
                                      int(text[12:14]), int(text[15:17]), 0, 0, 0)))
    except (ValueError, OverflowError):
        return 0.0


def _float(value, default):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


# exports ------------------------------------------------------------------------------------

class NoRRA(Exception):
    """rrd's ``No_RRA_Available``."""


def find_best_rras(rras, last_updated, pdp_interval, cf, start):
    """rrd's ``find_best_rras``: the archives (same CF filter) with enough resolution that
    still hold ``start``, or else the longest one; ``[]`` when none fits."""
    candidates = [r for r in rras if cf is None or r[0] == cf]
    if not candidates:
        raise NoRRA()
    last_pdp = STEP * (int(last_updated) // STEP)

    def contains(t, rra):
        return rra[2] >= pdp_interval and t > last_pdp - STEP * rra[1] * rra[2]

    first = next((r for r in candidates if contains(start, r)), None)
    if first is not None:
        return [r for r in candidates if r[1] == first[1] and r[2] == first[2]]
    longest = candidates[-1]
    newstart = 1 + last_pdp - STEP * longest[1] * longest[2]
    return [r for r in candidates if contains(newstart, r)]


def export_updates(stats, owners, start, interval, cf, json_output):
    """``Rrd_updates.export``: rows of the chosen archive from ``start`` on, newest first."""
    if not owners:
        raise NoRRA()
    last = stats.last_updated()
    if start < 0:
        start = int(start + last)
    rras = stats.rras()
    chosen = find_best_rras(rras, last, interval // STEP, cf, start)
    if not chosen:
        raise NoRRA()
    first = chosen[0]
    step = STEP * first[2]
    last_cdp = step * (int(last) // step)
    first_cdp = step * (int(start) // step) + step
    times = []
    i = 0
    while i < first[1]:
        t = last_cdp - i * step
        if t < start:
            break
        times.append(t)
        i += 1
    legend, columns = [], []
    for owner in owners:
        states = stats.states(owner, times, step)
        for rra in chosen:
            for ds in owner.dss:
                legend.append(f"{rra[0]}:{owner.prefix}{ds.name}")
                columns.append([f_to_s(v) for v in stats.cf_series(owner, ds, times, step, rra[0], states)])
    rows = [[column[r] for column in columns] for r in range(len(times))]
    if json_output:
        import json

        doc = {"meta": {"start": str(first_cdp), "step": str(step), "end": str(last_cdp), "rows": str(len(times)),
                        "columns": str(len(legend)), "legend": legend},
               "data": [{"t": str(t), "values": row} for t, row in zip(times, rows)]}
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<xport><meta>', f"<start>{first_cdp}</start>",
           f"<step>{step}</step><end>{last_cdp}</end><rows>{len(times)}</rows>",
           f"<columns>{len(legend)}</columns><legend>"]
    out += [f"<entry>{_xml(name)}</entry>" for name in legend]
    out.append("</legend></meta><data>")
    for t, row in zip(times, rows):
        out.append(f"<row><t>{t}</t>")
        out += [f"<v>{v}</v>" for v in row]
        out.append("</row>")
    out.append("</data></xport>")
    return "".join(out).encode()


def export_rrd(stats, owner, json_output, last=None):
    """``Rrd_unix.to_fd``: the whole RRD (``/host_rrd``, ``/vm_rrd``), rrdtool's dump layout."""
    last = stats.last_updated() if last is None else last
    archives = []
    for cf, rows, pdp, xff in stats.rras():
        step = STEP * pdp
        last_cdp = step * (int(last) // step)
        times = [last_cdp - (rows - 1 - r) * step for r in range(rows)]  # oldest first
        states = stats.states(owner, times, step)
        columns = [stats.cf_series(owner, ds, times, step, cf, states) for ds in owner.dss]
        archives.append((cf, pdp, xff, columns, last - last_cdp))
    latest = [stats.series(owner, ds, [last], STEP)[0] for ds in owner.dss]
    uptime = max(0.0, last - owner.coverage[0][0]) if owner.coverage else 0.0
    if json_output:
        import json

        doc = {"version": "0003", "step": str(STEP), "lastupdate": f_to_s(last), "ds": [
            {"name": ds.name, "type": ds.ty, "minimal_heartbeat": f_to_s(MRHB), "min": f_to_s(ds.min),
             "max": f_to_s(ds.max), "last_ds": _last_ds(ds, value, uptime), "value": f_to_s(0.0), "unknown_sec": f_to_s(0.0),
             "last_updated": f_to_s(last)} for ds, value in zip(owner.dss, latest)], "rra": [
            {"cf": cf, "pdp_per_row": str(pdp), "params": {"xff": f_to_s(xff)},
             "cdp_prep": {"ds": [{"primary_value": "0.0", "secondary_value": "0.0",
                                  "value": f_to_s(_partial(column, age, pdp)), "unknown_datapoints": "0"}
                                 for column in columns]},
             "database": [[f_to_s(column[r]) for column in columns] for r in range(len(columns[0]) if columns else 0)]}
            for cf, pdp, xff, columns, age in archives]}
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<rrd><version>0003</version>', f"<step>{STEP}</step>",
           f"<lastupdate>{int(last)}</lastupdate>"]
    for ds, value in zip(owner.dss, latest):
        out.append(f"<ds><name>{_xml(ds.name)}</name><type>{ds.ty}</type><minimal_heartbeat>{f_to_s(MRHB)}"
                   f"</minimal_heartbeat><min>{f_to_s(ds.min)}</min><max>{f_to_s(ds.max)}</max>"
                   f"<last_ds>{_last_ds(ds, value, uptime)}</last_ds><value>0.0</value><unknown_sec>0</unknown_sec></ds>")
    for cf, pdp, xff, columns, age in archives:
        out.append(f"<rra><cf>{cf}</cf><pdp_per_row>{pdp}</pdp_per_row><params><xff>{f_to_s(xff)}</xff></params>"
                   "<cdp_prep>")
        for column in columns:
            out.append(f"<ds><primary_value>0.0</primary_value><secondary_value>0.0</secondary_value>"
                       f"<value>{f_to_s(_partial(column, age, pdp))}</value>"
                       f"<unknown_datapoints>0</unknown_datapoints></ds>")
        out.append("</cdp_prep><database>")
        for r in range(len(columns[0]) if columns else 0):
            out.append("<row>" + "".join(f"<v>{f_to_s(column[r])}</v>" for column in columns) + "</row>")
        out.append("</database></rra>")
    out.append("</rrd>")
    return "".join(out).encode()


def _partial(column, age, pdp):
    """The CDP being prepared: the part of the next average the PDPs since the last CDP make."""
    if pdp == 1 or not column or column[-1] != column[-1]:
        return 0.0
    return column[-1] * min(1.0, age / (STEP * pdp))


def _last_ds(ds, value, uptime):
    """The last raw value: a DERIVE source's counter (its rate over the uptime: CPU seconds,
    bytes), the reading of the others."""
    if value != value:
        return "0.0"
    if ds.ty == "DERIVE":
        counter = value * uptime
        return str(int(counter)) if ds.units.endswith("/s") else f_to_s(counter)
    return str(int(value)) if ds.integer else f_to_s(value)


_XML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def _xml(text):
    return text.translate(_XML_ESCAPES)


def client_prefers_json(accept, query):
    """rrdd's ``client_prefers_json``: the ``Accept`` header's preference between JSON and
    XML when it states one, else whether the query has a ``json`` key (any value)."""
    if accept:
        preferred = _preferred(accept)
        if preferred is not None:
            return preferred == "application/json"
    return "json" in query


def _preferred(accept):
    ranges = []
    for item in accept.split(","):
        parts = [p.strip() for p in item.split(";")]
        media = parts[0].lower()
        if not media or "/" not in media:
            return None  # unparsable: fall back to the query
        q = 1000
        for param in parts[1:]:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    q = int(float(value) * 1000)
                except ValueError:
                    return None
        ty, _, sub = media.partition("/")
        specificity = 0 if ty == "*" else (1 if sub == "*" else 2)
        ranges.append((q, specificity, ty, sub))
    ranges.sort(key=lambda r: (-r[0], -r[1]))
    while ranges:
        q = ranges[0][0]
        best = [r for r in ranges if r[0] == q]
        ranges = [r for r in ranges if r[0] != q]
        for candidate in ("application/json", "text/xml"):
            ty, sub = candidate.split("/")
            if any(r[2] == "*" or (r[2] == ty and r[3] in ("*", sub)) for r in best):
                return candidate
    return None


__all__ = ["Stats", "export_updates", "export_rrd", "client_prefers_json", "NoRRA", "f_to_s"]
