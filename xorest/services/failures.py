"""XAPI's failures as API errors, with XAPI's code and parameters kept in the answer.

A precondition the pool refuses (wrong power state, operation not allowed, object busy
or in use) is a 409; an object the pool no longer has, a 404; an unreachable pool, a 503;
any other XAPI error, a 502.  Never a 500: what the pool says is never xorest's bug.
"""
import contextlib

from ..errors import Conflict, NotFound, Unavailable, UpstreamError
from ..xapi import XapiError, XapiUnreachable

#: XAPI codes meaning "not now, not in this state": the client can fix them.
CONFLICT_CODES = frozenset({
    "VM_BAD_POWER_STATE", "OPERATION_NOT_ALLOWED", "OTHER_OPERATION_IN_PROGRESS", "OPERATION_BLOCKED",
    "VM_IS_TEMPLATE", "VM_IS_SNAPSHOT", "ONLY_PROVISION_TEMPLATE", "ONLY_REVERT_SNAPSHOT", "VM_REQUIRES_SR",
    "VM_LACKS_FEATURE", "VM_IS_IMMOBILE", "VM_NON_SUSPENDABLE", "VM_CANNOT_DELETE_DEFAULT_TEMPLATE",
    "NO_HOSTS_AVAILABLE", "HOST_DISABLED", "HOST_OFFLINE", "HOST_NOT_DISABLED", "HOST_IN_USE", "HOST_IS_LIVE",
    "HOST_NOT_LIVE", "HOST_HAS_RESIDENT_VMS", "HOST_POWER_ON_MODE_DISABLED", "HOST_EVACUATE_IN_PROGRESS",
    "CANNOT_EVACUATE_HOST", "HA_IS_ENABLED", "VDI_IN_USE", "VDI_NEEDS_VM_FOR_MIGRATE", "VDI_IS_SHARABLE",
    "VDI_CBT_ENABLED", "VDI_TOO_SMALL", "VBD_NOT_UNPLUGGABLE", "VBD_NOT_REMOVABLE_MEDIA",
    "DEVICE_ALREADY_ATTACHED", "DEVICE_ALREADY_DETACHED", "DEVICE_ALREADY_EXISTS", "SR_HAS_PBD", "SR_NO_PBDS",
    "SR_NOT_EMPTY", "SR_NOT_ATTACHED", "NETWORK_CONTAINS_PIF", "NETWORK_CONTAINS_VIF",
    "CANNOT_DESTROY_SYSTEM_NETWORK", "PIF_IS_MANAGEMENT_IFACE", "PIF_ALREADY_BONDED", "PIF_VLAN_EXISTS",
    "PIF_IS_VLAN", "PIF_HAS_NO_NETWORK_CONFIGURATION", "PIF_NOT_PRESENT", "MEMORY_CONSTRAINT_VIOLATION",
    "TASK_CANCELLED", "POOL_JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS",
    "POOL_JOINING_HOST_CANNOT_HAVE_RUNNING_VMS", "POOL_JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS",
    "POOL_JOINING_HOST_CANNOT_HAVE_VMS_WITH_CURRENT_OPERATIONS", "HA_NOT_ENABLED",
})
GONE_CODES = frozenset({"HANDLE_INVALID", "UUID_INVALID"})


def translate(exc, doing):
    """The API error for a pool's failure ``exc`` during ``doing`` (e.g. ``"VM.start"``)."""
    if isinstance(exc, XapiUnreachable):
        return Unavailable(f"{doing}: the pool is not reachable: {exc}")
    data = {"code": exc.code, "params": exc.params}
    if exc.code in GONE_CODES:
        return NotFound(f"{doing}: the pool no longer has this object ({exc})", **data)
    if exc.code == "TASK_CANCELLED":
        return Conflict(f"{doing}: aborted ({exc})", **data)
    if exc.code in CONFLICT_CODES:
        return Conflict(f"{doing}: the pool refused: {exc}", **data)
    return UpstreamError(f"{doing}: {exc}", **data)


@contextlib.contextmanager
def translated(doing):
    """Raise :func:`translate`'s error for any pool failure inside the block."""
    try:
        yield
    except (XapiError, XapiUnreachable) as exc:
        raise translate(exc, doing) from None
