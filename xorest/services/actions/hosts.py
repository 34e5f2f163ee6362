"""Host actions: enable/disable (and evacuate), power, reboots, toolstack, forget, detach."""
import contextlib
from urllib.parse import urlsplit, urlunsplit

from ...errors import Conflict, Unprocessable, UpstreamError, XorestError
from . import Action

#: How long a reboot or a toolstack restart may take before the action gives up.
RESTART_TIMEOUT = 600.0
#: Migrations at once while evacuating (XAPI's ``evacuate_batch_size``).
EVACUATION_BATCH = 3
NULL = "OpaqueRef:NULL"


def _count_mismatch(exc):
    return isinstance(exc, UpstreamError) and exc.data.get("code") == "MESSAGE_PARAMETER_COUNT_MISMATCH"


def disable_host(ctx, host, transient=True):
    """``host.disable``; not transient (kept across reboots) needs XAPI 25.31's second
    parameter, which older pools do not take: they disable until the next reboot."""
    if transient:
        ctx.call("host.disable", host["_xapiRef"])
        return
    try:
        ctx.call("host.disable", host["_xapiRef"], False)
    except UpstreamError as exc:
        if not _count_mismatch(exc):
            raise
        ctx.call("host.disable", host["_xapiRef"])
        ctx.warning("this pool cannot keep a host disabled across reboots: it is disabled until its next one")


def clear_host(ctx, host, force=False, transient=True):
    """Disable a host and migrate its guests away; if that fails, the host is enabled
    again and the error raised, unless ``force`` (as Xen Orchestra's ``clearHost``)."""
    disable_host(ctx, host, transient)
    pool = ctx.collections.get("pools", host["$pool"])
    network = (pool.get("otherConfig") or {}).get("xo:migrationNetwork")
    network_ref = ctx.get("networks", network)["_xapiRef"] if network else NULL
    try:
        try:
            ctx.run("host.evacuate", host["_xapiRef"], network_ref, EVACUATION_BATCH)
        except UpstreamError as exc:  # pools older than the optional parameters
            if not _count_mismatch(exc):
                raise
            ctx.run("host.evacuate", host["_xapiRef"])
    except XorestError:
        if not force:
            ctx.call("host.enable", host["_xapiRef"])
            raise


@contextlib.contextmanager
def _migrations_forced(ctx, vm_ids):
    """Lift the migration blocks of these VMs for the time of an evacuation."""
    restore = []
    try:
        for vm_id in vm_ids:
            vm = ctx.get("vms", vm_id, parameter="vmIdsToForceMigrate")
            for operation in ("pool_migrate", "migrate_send"):
                reason = (vm.get("blockedOperations") or {}).get(operation)
                if reason is not None:
                    ctx.call("VM.remove_from_blocked_operations", vm["_xapiRef"], operation)
                    restore.append((vm["_xapiRef"], operation, reason))
        yield
    finally:
        for ref, operation, reason in restore:
            ctx.call("VM.add_to_blocked_operations", ref, operation, reason)


def disable(ctx, host, body):
    """Disable a host (``autoEnable``: until its next reboot), and evacuate it if asked."""
    transient = body.get("autoEnable", False)
    if not body.get("evacuate"):
        disable_host(ctx, host, transient)
        return
    with _migrations_forced(ctx, body.get("vmIdsToForceMigrate") or ()):
        clear_host(ctx, host, body.get("force", False), transient)


def enable(ctx, host, body):
    """Enable a host (XAPI's ``host.enable``)."""
    ctx.call("host.enable", host["_xapiRef"])


def start(ctx, host, body):
    """Power a host on through its power-on mode (XAPI's ``host.power_on``)."""
    ctx.run("host.power_on", host["_xapiRef"])


def clean_shutdown(ctx, host, body):
    """Evacuate a host (unless ``bypassEvacuate``) and shut it down."""
    if body.get("bypassEvacuate"):
        ctx.call("host.disable", host["_xapiRef"])
    else:
        clear_host(ctx, host)
    ctx.run("host.shutdown", host["_xapiRef"])


def clean_reboot(ctx, host, body):
    """Evacuate a host (``force``: even if some guests cannot move) and reboot it."""
    clear_host(ctx, host, body.get("force", False))
    ctx.run("host.reboot", host["_xapiRef"])


def _agent_started(ctx, ref):
    return int(ctx.call("host.get_other_config", ref).get("agent_start_time", "0").split(".")[0])


def _wait_agent_restart(ctx, ref, before, what):
    """Until the host's toolstack started after ``before`` and the host is enabled."""
    def check(call):
        started = int(call("host.get_other_config", ref).get("agent_start_time", "0").split(".")[0])
        return started > before and call("host.get_enabled", ref)
    ctx.wait_until(what, check, RESTART_TIMEOUT)


def restart_toolstack(ctx, host, body):
    """Restart a host's toolstack (XAPI) and wait until it is back."""
    ref = host["_xapiRef"]
    before = _agent_started(ctx, ref)
    ctx.call("host.restart_agent", ref)
    _wait_agent_restart(ctx, ref, before, "restart the toolstack")


def smart_reboot(ctx, host, body):
    """Suspend the host's guests, reboot it, resume them (Xen Orchestra's smart reboot)."""
    ref = host["_xapiRef"]
    ctx.run("host.disable", ref)
    suspended, restore = [], []
    try:
        guests = [vm for vm in ctx.call("host.get_resident_VMs", ref)
                  if not ctx.call("VM.get_is_control_domain", vm)]
        blocked = []
        for vm in guests:
            record = ctx.call("VM.get_record", vm)
            if record["power_state"] in ("Halted", "Suspended"):
                continue
            try:
                ctx.call("VM.assert_operation_valid", vm, "suspend")
                cannot = "suspend" in record["blocked_operations"]
            except Conflict:
                cannot = True
            if cannot:
                blocked.append(record)
        if blocked and not body.get("bypassBlockedSuspend"):
            raise Conflict("these VMs cannot be suspended: set bypassBlockedSuspend to shut them down instead",
                           actual=[r["uuid"] for r in blocked], expected=[], object="suspendBlocked")
        for record in blocked:
            if "suspend" in record["blocked_operations"]:
                reason = record["blocked_operations"]["suspend"]
                ctx.call("VM.remove_from_blocked_operations", ctx.call("VM.get_by_uuid", record["uuid"]), "suspend")
                restore.append((record["uuid"], reason))
        for vm in guests:
            _suspend_or_stop(ctx, vm, suspended)
        before = _agent_started(ctx, ref)
        ctx.run("host.reboot", ref)
        _wait_agent_restart(ctx, ref, before, "reboot the host")
    except BaseException:
        with contextlib.suppress(XorestError):
            ctx.run("host.enable", ref)
        raise
    finally:
        for vm in suspended:
            with contextlib.suppress(XorestError):
                ctx.run("VM.resume", vm, False, False)
        for uuid, reason in restore:
            with contextlib.suppress(XorestError):
                ctx.call("VM.add_to_blocked_operations", ctx.call("VM.get_by_uuid", uuid), "suspend", reason)


def _suspend_or_stop(ctx, vm, suspended):
    try:
        ctx.run("VM.suspend", vm)
        suspended.append(vm)
    except Conflict as exc:
        code, params = exc.data.get("code"), exc.data.get("params") or []
        if code == "OPERATION_NOT_ALLOWED":
            return
        if code == "VM_BAD_POWER_STATE" and params[-1:] and params[-1].lower() in ("halted", "suspended"):
            return
        try:
            ctx.run("VM.clean_shutdown", vm)
        except XorestError:
            ctx.run("VM.hard_shutdown", vm)


def emergency_shutdown(ctx, host, body):
    """Disable a host, suspend its guests (as far as they let themselves be) and shut it down."""
    ref = host["_xapiRef"]
    ctx.call("host.disable", ref)
    for vm in ctx.call("host.get_resident_VMs", ref):
        if not ctx.call("VM.get_is_control_domain", vm):
            with contextlib.suppress(XorestError):
                ctx.run("VM.suspend", vm)
    ctx.run("host.shutdown", ref)


def detach(ctx, host, body):
    """Eject a running member from its pool; it is then registered as a server of its own."""
    pool = ctx.collections.get("pools", host["$pool"])
    if pool.get("master") == host["id"]:  # XAPI fails it with an internal error
        raise Conflict(f"host {host['id']} is the pool's master: designate another master first",
                       actual=host["id"], expected="a member", object=pool["id"], property="master")
    _must_be(ctx.collections.get("hosts", host["id"]), "Running", "detach")  # ejecting needs the host itself
    conn = ctx.conn()
    ctx.call("pool.eject", host["_xapiRef"])
    parts = urlsplit(conn.server["url"])
    url = urlunsplit((parts.scheme, host["address"] + (f":{parts.port}" if parts.port else ""), "", "", ""))
    server = ctx.store.add_server(url, conn.server["username"], conn.server["password"],
                                  conn.server.get("ca_file"), conn.server.get("insecure"), host.get("name_label", ""))
    ctx.pools.servers_changed()
    ctx.task.info("the host was registered as a server of its own", {"serverId": server, "url": url})


def _must_be(host, state, doing):
    if host.get("power_state") != state:
        raise Conflict(f"cannot {doing} a host that is {host.get('power_state')}", actual=host.get("power_state"),
                       expected=state, object=host["id"], property="power_state")


def forget(ctx, host, body):
    """Forget a host that is gone for good (it must be halted)."""
    _must_be(ctx.collections.get("hosts", host["id"]), "Halted", "forget")
    ctx.run("host.destroy", host["_xapiRef"])


def scan_pifs(ctx, host, body):
    """Look for new network interfaces on a running host (XAPI's ``PIF.scan``)."""
    _must_be(ctx.collections.get("hosts", host["id"]), "Running", "scan the interfaces of")
    ctx.run("PIF.scan", host["_xapiRef"])


def management_reconfigure(ctx, host, body):
    """Move a host's management interface to one of its PIFs."""
    pif = ctx.get("pifs", body["pif"], parameter="pif")
    if pif.get("$host") != host["id"]:
        raise Unprocessable(f"the PIF {pif['id']} does not belong to host {host['id']}", parameter="pif")
    ctx.run("host.management_reconfigure", pif["_xapiRef"])


#: When a host action answers 422.
UNPROCESSABLE = {"management_reconfigure": "the PIF is not one of this host's"}

ACTIONS = [
    Action("hosts", name, title, run, "pool.operate", unprocessable=UNPROCESSABLE.get(name))
    for name, title, run in (
        ("management_reconfigure", "reconfigure host management interface", management_reconfigure),
        ("disable", "disable host", disable), ("enable", "enable host", enable), ("start", "start host", start),
        ("clean_shutdown", "clean shutdown host", clean_shutdown),
        ("clean_reboot", "clean reboot host", clean_reboot), ("smart_reboot", "smart reboot host", smart_reboot),
        ("restart_toolstack", "restart host's toolstack", restart_toolstack),
        ("emergency_shutdown", "emergency shutdown host", emergency_shutdown),
        ("detach", "detach host", detach), ("forget", "forget host", forget), ("scan_pifs", "scan pifs", scan_pifs),
    )
]
