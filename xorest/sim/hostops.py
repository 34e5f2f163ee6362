"""XAPI's host and pool calls: enable/disable, evacuation, reboot, shutdown, power on,
toolstack restarts, forgetting and ejecting hosts, management interfaces.

A host that reboots or shuts down answers first and goes down a second later (XAPI
waits ten); while it is down its metrics say so and its storage is unplugged.  When the
pool master goes down, the pool's API does too: sessions end and connections are
refused until it is back (``XapiApi.master_down``).
"""
import time

from . import lifecycle, vmops
from .operations import boot_error
from .rpc import XapiFailure
from .state import NULL_REF

#: Seconds between the answer of a reboot or shutdown and the host going down.
GOING_DOWN_DELAY = 1.0


def _is_master(db, host):
    return any(pool["master"] == host for pool in db.tables["pool"].values())


def _set_live(db, host, live):
    metrics = db.record("host", host)["metrics"]
    if metrics in db.tables["host_metrics"]:
        db.update("host_metrics", metrics, live=live)
    for pbd in db.record("host", host)["PBDs"]:
        if db.tables["PBD"][pbd]["currently_attached"] != live:
            db.update("PBD", pbd, currently_attached=live)
            lifecycle.refresh(db, "SR", db.tables["PBD"][pbd]["SR"])


def _go_down(db, host):
    """The host stops: its VMs die (nothing should run: XAPI checked), storage unplugs."""
    for vm in list(db.record("host", host)["resident_VMs"]):
        record = db.tables["VM"][vm]
        if not record["is_control_domain"] and record["power_state"] in ("Running", "Paused"):
            db.update("VM", vm, power_state="Halted", resident_on=NULL_REF, domid=-1)
            lifecycle.refresh_vm(db, vm)
    db.update("host", host, enabled=False)
    _set_live(db, host, False)
    lifecycle.refresh(db, "host", host)


def _come_up(db, host, key=None):
    """The host booted: live, enabled, storage plugged, its agent freshly started."""
    now = str(int(time.time()))
    other = dict(db.record("host", host)["other_config"], boot_time=now, agent_start_time=now)
    db.update("host", host, enabled=True, other_config=other)
    _set_live(db, host, True)
    if key is not None:
        lifecycle.release(db, "host", host, key)
    lifecycle.refresh(db, "host", host)


def _assert_no_guests(db, host):
    """XAPI's "bacon mode" check before a reboot or shutdown: no running guest."""
    for vm in db.record("host", host)["resident_VMs"]:
        record = db.tables["VM"][vm]
        if not record["is_control_domain"] and record["power_state"] == "Running":
            raise XapiFailure("HOST_IN_USE", host, "vm", vm)


def disable(op, host):
    with op.locked() as db:
        if db.record("host", host)["enabled"]:
            db.update("host", host, enabled=False)
            lifecycle.refresh(db, "host", host)
    return ""


def enable(op, host):
    with op.locked() as db:
        lifecycle.assert_valid(db, "host", host, "enable")
        if not db.tables["host"][host]["enabled"]:
            db.update("host", host, enabled=True)
            lifecycle.refresh(db, "host", host)
    return ""


def evacuation_plan(db, host):
    """``vm -> target host`` or ``vm -> (code, params)`` for the guests running on ``host``."""
    plan, load = {}, {h: len(r["resident_VMs"]) for h, r in db.tables["host"].items()}
    for vm in db.record("host", host)["resident_VMs"]:
        record = db.tables["VM"][vm]
        if record["is_control_domain"] or record["power_state"] != "Running":
            continue
        blocked = lifecycle.error(db, "VM", vm, "pool_migrate")
        targets = [h for h in db.tables["host"] if h != host and boot_error(db, vm, h) is None]
        if blocked is not None:
            plan[vm] = blocked
        elif not targets:
            others = [boot_error(db, vm, h) for h in db.tables["host"] if h != host]
            plan[vm] = next((e for e in others if e[0] == "VM_REQUIRES_SR"), ("NO_HOSTS_AVAILABLE", []))
        else:
            target = min(targets, key=lambda h: (load[h], h))
            load[target] += 1
            plan[vm] = target
    return plan


def vms_preventing_evacuation(op, host):
    with op.locked() as db:
        return {vm: [step[0], *step[1]] for vm, step in evacuation_plan(db, host).items()
                if isinstance(step, tuple)}


def assert_can_evacuate(op, host):
    with op.locked() as db:
        errors = [",".join([code, *params]) for code, params in
                  (s for s in evacuation_plan(db, host).values() if isinstance(s, tuple))]
    if errors:
        raise XapiFailure("CANNOT_EVACUATE_HOST", "|".join(errors))
    return ""


def evacuate(op, host, _network, _batch_size):
    """``host.evacuate``: every running guest migrated elsewhere, one after the other."""
    with op.locked() as db:
        lifecycle.assert_valid(db, "host", host, "evacuate")
        plan = evacuation_plan(db, host)
        refused = next((s for s in plan.values() if isinstance(s, tuple)), None)
        if refused is not None:
            raise XapiFailure(refused[0], *refused[1])
        op.claim("host", host, "evacuate")
    op.work()
    for index, (vm, target) in enumerate(plan.items()):
        vmops.migrate(op, vm, target, share=1.0 / (len(plan) - index))
    return ""


def _going_down(operation, stays_down):
    def call(op, host):
        with op.locked() as db:
            lifecycle.assert_valid(db, "host", host, operation)
            _assert_no_guests(db, host)
            # The claim lasts until the host is back: not released with the call.
            key = db.new_ref()
            lifecycle.claim(db, "host", host, key, operation)
        op.work()
        down = op.api.timing.seconds("host.reboot:down")
        master = _is_master(op.db, host)

        def go_down(db):
            _go_down(db, host)
            if master:
                op.api.master_down(None if stays_down else down)
            if stays_down:
                op.api.down_hosts[host] = key
            else:
                op.later(down, lambda db: _come_up(db, host, key))
        op.later(GOING_DOWN_DELAY, go_down)
        return ""
    call.__name__ = operation
    return call


def power_on(op, host):
    """``host.power_on`` (through its power-on mode, e.g. IPMI); the host boots."""
    with op.locked() as db:
        lifecycle.assert_valid(db, "host", host, "power_on")
        op.claim("host", host, "power_on")
    op.work()
    boot(op.api, host)
    return ""


def boot(api, host):
    """A stopped host starts (its power button pressed, or ``power_on``)."""
    with api.db.lock:
        _come_up(api.db, host, api.down_hosts.pop(host, None))
        api.db.commit()
    if _is_master(api.db, host):
        api.master_up()


def restart_agent(op, host):
    """``host.restart_agent``: answers, then the toolstack restarts (the master's API with it)."""
    with op.locked() as db:
        if not lifecycle.host_live(db, host):
            raise XapiFailure("HOST_OFFLINE", host)
    down = op.api.timing.seconds("host.restart_agent:down")
    master = _is_master(op.db, host)

    def restart(db):
        if master:
            op.api.master_down(down)
        op.later(down, lambda db: db.update("host", host, other_config=dict(
            db.record("host", host)["other_config"], agent_start_time=str(int(time.time()) + 1))))
    op.later(GOING_DOWN_DELAY / 2, restart)
    return ""


def destroy(op, host):
    """``host.destroy``: forget a host that is gone for good (not live, no guests)."""
    with op.locked() as db:
        record = db.record("host", host)
        if lifecycle.host_live(db, host) or _is_master(db, host):
            raise XapiFailure("HOST_IS_LIVE", host)
        if any(not db.tables["VM"][v]["is_control_domain"] for v in record["resident_VMs"]):
            raise XapiFailure("HOST_HAS_RESIDENT_VMS", host)
    op.work()
    with op.locked() as db:
        forget_host(db, host)
    return ""


def forget_host(db, host):
    """Remove a host's records and what only it had (its PBDs, PIFs, CPUs, dom0)."""
    record = db.record("host", host)
    for pbd in list(record["PBDs"]):
        sr = db.tables["PBD"][pbd]["SR"]
        db.destroy("PBD", pbd)
        lifecycle.refresh(db, "SR", sr)
    for pif in list(record["PIFs"]):
        metrics = db.tables["PIF"][pif]["metrics"]
        db.destroy("PIF", pif)
        if metrics in db.tables["PIF_metrics"]:
            db.destroy("PIF_metrics", metrics)
    for cpu in list(record["host_CPUs"]):
        db.destroy("host_cpu", cpu)
    for vm in list(record["resident_VMs"]):
        if db.tables["VM"][vm]["is_control_domain"]:
            metrics = db.tables["VM"][vm]["metrics"]
            db.destroy("VM", vm)
            if metrics in db.tables["VM_metrics"]:
                db.destroy("VM_metrics", metrics)
    metrics = record["metrics"]
    db.destroy("host", host)
    if metrics in db.tables["host_metrics"]:
        db.destroy("host_metrics", metrics)


def eject(op, host):
    """``pool.eject``: a member leaves the pool (XAPI refuses the master and busy hosts)."""
    with op.locked() as db:
        db.record("host", host)
        if _is_master(db, host):
            raise XapiFailure("INTERNAL_ERROR", "Xapi_pool.Cannot_eject_master")
        if any(not db.tables["VM"][v]["is_control_domain"] for v in db.tables["host"][host]["resident_VMs"]):
            raise XapiFailure("OPERATION_NOT_ALLOWED", "VM resident on host")
    op.work()
    with op.locked() as db:
        forget_host(db, host)
    return ""


def _management(db, pif):
    record = db.record("PIF", pif)
    if record["ip_configuration_mode"] == "None" and record["primary_address_type"] == "IPv4":
        raise XapiFailure("PIF_HAS_NO_NETWORK_CONFIGURATION", pif)
    return record


def host_management_reconfigure(op, pif):
    """``host.management_reconfigure``: the host's management interface moves to ``pif``."""
    with op.locked() as db:
        record = _management(db, pif)
        if not lifecycle.host_live(db, record["host"]):
            raise XapiFailure("HOST_OFFLINE", record["host"])
    op.work()
    with op.locked() as db:
        _set_management(db, db.tables["PIF"][pif]["host"], pif)
    return ""


def pool_management_reconfigure(op, network):
    """``pool.management_reconfigure``: every host's management moves to ``network``."""
    with op.locked() as db:
        db.record("network", network)
        chosen = {}
        for host in db.tables["host"]:
            pif = next((p for p in db.tables["host"][host]["PIFs"] if db.tables["PIF"][p]["network"] == network),
                       None)
            if pif is None:
                raise XapiFailure("PIF_NOT_PRESENT", host, network)
            _management(db, pif)
            chosen[host] = pif
    op.work()
    with op.locked() as db:
        for host, pif in chosen.items():
            _set_management(db, host, pif)
    return ""


def _set_management(db, host, chosen):
    for pif in db.record("host", host)["PIFs"]:
        if db.tables["PIF"][pif]["management"] != (pif == chosen):
            db.update("PIF", pif, management=pif == chosen)


def scan_pifs(op, host):
    """``PIF.scan``: looks for new physical interfaces (the simulated hardware never changes)."""
    with op.locked() as db:
        db.record("host", host)
        if not lifecycle.host_live(db, host):
            raise XapiFailure("HOST_OFFLINE", host)
    op.work()
    return ""


def disable_ha(op):
    with op.locked() as db:
        if not any(pool["ha_enabled"] for pool in db.tables["pool"].values()):
            raise XapiFailure("HA_NOT_ENABLED")
    return ""


HANDLERS = {
    ("host", "disable"): disable, ("host", "enable"): enable, ("host", "evacuate"): evacuate,
    ("host", "get_vms_which_prevent_evacuation"): vms_preventing_evacuation,
    ("host", "assert_can_evacuate"): assert_can_evacuate,
    ("host", "reboot"): _going_down("reboot", stays_down=False),
    ("host", "shutdown"): _going_down("shutdown", stays_down=True),
    ("host", "power_on"): power_on, ("host", "restart_agent"): restart_agent, ("host", "destroy"): destroy,
    ("host", "management_reconfigure"): host_management_reconfigure,
    ("pool", "management_reconfigure"): pool_management_reconfigure, ("pool", "eject"): eject,
    ("pool", "disable_ha"): disable_ha, ("PIF", "scan"): scan_pifs,
}
