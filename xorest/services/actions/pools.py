"""Pool actions: networks, new VMs from templates, emergency shutdown, rolling reboot,
management interface, adding a host."""
import contextlib
from urllib.parse import urlsplit

from ...errors import Conflict, Unprocessable, XorestError
from ..deletions import destroy_vm
from . import Action, vmcreate
from .hosts import RESTART_TIMEOUT, _agent_started, clear_host
from .network import create_network

#: Evacuation blockers a rolling reboot handles by shutting the VM down (Xen Orchestra's).
PINNED_CODES = {"VM_HAS_PCI_ATTACHED", "VM_HAS_VGPU", "VM_HAS_SRIOV_VIF"}


def _network(ctx, pool, body):
    """Create a network in the pool: on a VLAN of a PIF, bonded, or internal; answers its id."""
    return {"id": create_network(ctx, body)}


def _hosts(ctx, pool):
    hosts = ctx.collections.cache.snapshot().collection("hosts")
    return [h for h in hosts.values() if h["$pool"] == pool["id"]]


def emergency_shutdown(ctx, pool, body):
    """Every host disabled, every guest suspended, the members then the master shut down."""
    with contextlib.suppress(Conflict):  # HA_NOT_ENABLED
        ctx.call("pool.disable_ha")
    master = ctx.field("pool", pool["_xapiRef"], "master")
    hosts = ctx.call("host.get_all")
    for host in hosts:
        with ctx.task.subtask("disabling host and suspending its VMs", host={"$ref": host}):
            with contextlib.suppress(XorestError):
                ctx.call("host.disable", host)
            dom0 = ctx.call("host.get_control_domain", host)
            for vm in ctx.call("host.get_resident_VMs", host):
                if vm != dom0:
                    with contextlib.suppress(XorestError):
                        ctx.run("VM.suspend", vm)
    for host in [h for h in hosts if h != master] + [master]:
        with contextlib.suppress(XorestError), ctx.task.subtask("shutting down host", host={"$ref": host}):
            ctx.run("host.shutdown", host)


def rolling_reboot(ctx, pool, body):
    """Reboot every host, the master first, moving their guests away and back."""
    hosts = sorted(_hosts(ctx, pool), key=lambda h: h["id"] != pool["master"])
    down = next((h for h in hosts if h.get("power_state") != "Running"), None)
    if down is not None:
        raise Conflict(f"host {down['id']} is not running", actual=down.get("power_state"), expected="Running",
                       object=down["id"], property="power_state")
    pinned = {}
    for host in hosts:
        blockers = ctx.call("host.get_vms_which_prevent_evacuation", host["_xapiRef"])
        if any(codes[0] not in PINNED_CODES for codes in blockers.values()):
            ctx.call("host.assert_can_evacuate", host["_xapiRef"])  # XAPI's own error, naming them
        pinned[host["id"]] = list(blockers)
    if any(pinned.values()) and not body.get("shutdownPinnedVms"):
        raise Conflict("some VMs cannot leave their host: set shutdownPinnedVms to shut them down meanwhile",
                       actual=[ctx.field("VM", v, "uuid") for refs in pinned.values() for v in refs], expected=[],
                       object=pool["id"], property="pinnedVms")
    with _auto_poweron_off(ctx, pool):
        placement = {vm: ctx.field("VM", vm, "resident_on") for vm in ctx.call("VM.get_all")
                     if ctx.field("VM", vm, "power_state") == "Running"
                     and not ctx.field("VM", vm, "is_control_domain")}
        step = 80.0 / len(hosts)
        with ctx.task.subtask("Restarting hosts"):
            for index, host in enumerate(hosts):
                with ctx.task.span(index * step, (index + 1) * step):
                    _reboot_one(ctx, host, pinned[host["id"]])
        with ctx.task.subtask("Migrate VMs back"), ctx.task.span(80, 100):
            for vm, host in placement.items():
                with contextlib.suppress(XorestError):  # as Xen Orchestra: best effort
                    if ctx.field("VM", vm, "power_state") == "Running" and ctx.field("VM", vm, "resident_on") != host:
                        ctx.run("VM.pool_migrate", vm, host, {"force": "false"})


@contextlib.contextmanager
def _auto_poweron_off(ctx, pool):
    """VMs must not start by themselves on the hosts as they come back."""
    on = (pool.get("otherConfig") or {}).get("auto_poweron") == "true"
    if on:
        ctx.map_entry("pool", pool["_xapiRef"], "other_config", "auto_poweron", "false")
    try:
        yield
    finally:
        if on:
            ctx.map_entry("pool", pool["_xapiRef"], "other_config", "auto_poweron", "true")


def _reboot_one(ctx, host, pinned):
    ref = host["_xapiRef"]
    with ctx.task.subtask(f"Restarting host {host['id']}", hostId=host["id"], hostName=host.get("name_label")):
        for vm in pinned:
            with ctx.task.subtask("Shutting down pinned VM", vmId=ctx.field("VM", vm, "uuid")):
                try:
                    ctx.run("VM.clean_shutdown", vm)
                except XorestError:
                    ctx.run("VM.hard_shutdown", vm)
        with ctx.task.subtask("Check evacuation precondition"):
            ctx.call("host.assert_can_evacuate", ref)
        with ctx.task.subtask("Evacuate"):
            clear_host(ctx, host)
        before = _agent_started(ctx, ref)
        with ctx.task.subtask("Restart"):
            ctx.run("host.reboot", ref)
        with ctx.task.subtask("Waiting for host to be up"):
            metrics = ctx.field("host", ref, "metrics")
            ctx.wait_until(f"reboot host {host['id']}", lambda call: call("host.get_enabled", ref) and int(
                call("host.get_other_config", ref).get("agent_start_time", "0").split(".")[0]) > before
                and call("host_metrics.get_live", metrics), RESTART_TIMEOUT)
        for vm in pinned:
            with ctx.task.subtask("Restarting pinned VM", vmId=ctx.field("VM", vm, "uuid")):
                ctx.run("VM.start_on", vm, ref, False, False)


def create_vm(ctx, pool, body):
    """A new VM from a template (Xen Orchestra's body); answers its id."""
    uuid, ref = vmcreate.create(ctx, pool, body)
    try:
        vmcreate.configure(ctx, pool, ref, uuid, body)
        if body.get("boot"):
            ctx.run("VM.start", ref, False, False)
    except BaseException:
        with contextlib.suppress(XorestError):
            destroy_vm(ctx, ref)
        raise
    return {"id": uuid}


def management_reconfigure(ctx, pool, body):
    """Move every host's management interface to a network of the pool."""
    network = ctx.get("networks", body["network"], same_pool=False, parameter="network")
    if network["$pool"] != pool["id"]:
        raise Unprocessable(f"the network {network['id']} does not belong to pool {pool['id']}",
                            parameter="network")
    ctx.run("pool.management_reconfigure", network["_xapiRef"])


def add_host(ctx, pool, body):
    """Make a host of another connected pool join this one (XAPI's ``pool.join``)."""
    host = ctx.get("hosts", body["host"], same_pool=False, parameter="host")
    if host["$pool"] == pool["id"]:
        raise Unprocessable(f"the host {host['id']} is already in this pool", parameter="host")
    server = ctx.conn().server
    parts = urlsplit(server["url"])
    # XAPI reaches a master on its standard port; another one (a simulator) is kept in the address
    address = parts.hostname if parts.port in (None, 443) else parts.netloc
    method = "pool.join_force" if body.get("force") else "pool.join"
    ctx.call(method, address, server["username"], server["password"], obj=host)  # sync, as XO: the host then
    # answers HOST_IS_SLAVE, its task would be out of reach


ACTIONS = [
    Action("pools", "create_network", "create network", _network, "pool.admin", created="networks", sync_status=201),
    Action("pools", "create_bonded_network", "create bonded network", _network, "pool.admin", created="networks",
           sync_status=201),
    Action("pools", "create_internal_network", "create internal network", _network, "pool.admin",
           created="networks", sync_status=201),
    Action("pools", "emergency_shutdown", "pool emergency shutdown", emergency_shutdown, "pool.admin"),
    Action("pools", "rolling_reboot", "rolling pool reboot", rolling_reboot, "pool.admin"),
    Action("pools", "create_vm", "create VM", create_vm, "vm.admin", created="vms", sync_status=201,
           unprocessable="the template is in another pool, or a disk of the template would shrink"),
    Action("pools", "management_reconfigure", "reconfigure pool management interface", management_reconfigure,
           "pool.admin", unprocessable="the network is in another pool"),
    Action("pools", "add_host", "add host", add_host, "pool.admin", unprocessable="the host is already in this pool"),
]
