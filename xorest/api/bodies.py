"""Request bodies of actions, edits and creations, as Xen Orchestra's OpenAPI document
declares them; marshmallow checks them strictly (a missing, unknown or ill-typed field
is a 400 naming it, see :func:`xorest.api.params.load`)."""
import re

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from .params import CollectionQuery, FlagField


class Strict(Schema):
    class Meta:
        unknown = RAISE


class Bool(fields.Boolean):
    """JSON ``true``/``false`` only (marshmallow would take ``"yes"`` or ``1``)."""

    def __init__(self, **kwargs):
        super().__init__(truthy={True}, falsy={False}, **kwargs)


class Number(fields.Field):
    """A JSON number (not a boolean, not a string)."""

    def __init__(self, integer=False, **kwargs):
        self.integer = integer
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ValidationError("must be a number")
        if self.integer and value != int(value):
            raise ValidationError("must be an integer")
        return int(value) if self.integer else value


class Size(fields.Field):
    """Bytes: a number, or a string such as ``"4 GiB"``, ``"512M"`` (Xen Orchestra's ``parseSize``)."""

    UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise ValidationError("must be a size in bytes")
        if isinstance(value, (int, float)) and value == value and value >= 0:
            return int(value)
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(value), re.IGNORECASE)
        if not isinstance(value, str) or not match:
            raise ValidationError("must be a size in bytes, a number or text such as 4GiB")
        return int(float(match.group(1)) * self.UNITS[match.group(2).lower()])


def Id(**kwargs):  # noqa: N802 (a field factory, named as the fields it makes)
    return fields.String(validate=validate.Length(min=1, max=200), **kwargs)


def StringMap(**kwargs):  # noqa: N802
    return fields.Dict(keys=fields.String(), values=fields.String(), **kwargs)


def Strings(**kwargs):  # noqa: N802
    return fields.List(fields.String(), **kwargs)


class ActionQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    sync = FlagField(load_default=False)


class NoBody(Strict):
    """Actions without parameters (a body, if any, must be an empty object)."""


class VmStart(Strict):
    hostId = Id()


class VmSnapshot(Strict):
    name_label = fields.String(validate=validate.Length(max=255))


class VmClone(Strict):
    name_label = fields.String(validate=validate.Length(max=255))
    fast = Bool()
    srId = Id()
    compress = fields.String(validate=validate.OneOf(["gzip", "zstd"]))


class VmRevert(Strict):
    snapshotId = Id(required=True)
    snapshotBefore = Bool()


class VmMigrate(Strict):
    hostId = Id(required=True)
    migrationNetworkId = Id()
    srId = Id()
    srIdByVdiId = StringMap()
    networkIdByVifId = StringMap()


class HostDisable(Strict):
    autoEnable = Bool()
    evacuate = Bool()
    force = Bool()
    vmIdsToForceMigrate = fields.List(Id())

    @validates_schema
    def _evacuation_only(self, data, **kwargs):
        for name in ("force", "vmIdsToForceMigrate"):
            if name in data and not data.get("evacuate"):
                raise ValidationError("only with evacuate: true", name)


class HostCleanShutdown(Strict):
    bypassBackupCheck = Bool()
    bypassEvacuate = Bool()


class HostCleanReboot(Strict):
    bypassVersionCheck = Bool()
    bypassBackupCheck = Bool()
    force = Bool()


class HostSmartReboot(Strict):
    bypassCurrentVmCheck = Bool()
    bypassBlockedSuspend = Bool()
    bypassVersionCheck = Bool()
    bypassBackupCheck = Bool()


class HostRestartToolstack(Strict):
    bypassBackupCheck = Bool()


class HostManagement(Strict):
    pif = Id(required=True)


class PoolManagement(Strict):
    network = Id(required=True)


class PoolAddHost(Strict):
    host = Id(required=True)
    force = Bool()


class PoolRollingReboot(Strict):
    shutdownPinnedVms = Bool()


class NetworkBase(Strict):
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    description = fields.String(validate=validate.Length(max=1024))
    mtu = Number(integer=True, validate=validate.Range(min=68, max=65535))
    nbd = Bool()


class NetworkOnVlan(NetworkBase):
    pif = Id(required=True)
    vlan = Number(integer=True, required=True, validate=validate.Range(min=0, max=4094))


class NetworkBonded(NetworkBase):
    pifIds = fields.List(Id(), required=True, validate=validate.Length(min=1))
    bondMode = fields.String(required=True, validate=validate.OneOf(["active-backup", "balance-slb", "lacp"]))


class VmVif(Strict):
    network = Id()
    mtu = Number(integer=True, validate=validate.Range(min=68, max=65535))
    mac = fields.String()
    ipv4_allowed = Strings()
    ipv6_allowed = Strings()
    device = fields.String()
    destroy = Bool()

    @validates_schema
    def _one_of(self, data, **kwargs):
        if data.get("destroy"):
            if "device" not in data:
                raise ValidationError("destroy needs the device", "device")
        elif "network" not in data:
            raise ValidationError("Missing data for required field.", "network")


class VmVdi(Strict):
    name_label = fields.String()
    name_description = fields.String()
    size = Size()
    sr = Id()
    userdevice = fields.String()
    userdervice = fields.String()  # sic: Xen Orchestra's schema spells the device of a disk to destroy so
    destroy = Bool()

    @validates_schema
    def _one_of(self, data, **kwargs):
        if data.get("destroy"):
            if "userdevice" not in data and "userdervice" not in data:
                raise ValidationError("destroy needs the userdevice", "userdevice")
        elif "userdevice" not in data:
            for name in ("size", "name_label"):
                if name not in data:
                    raise ValidationError("Missing data for required field (a new disk).", name)


class VmInstall(Strict):
    method = fields.String(required=True, validate=validate.OneOf(["cdrom", "network"]))
    repository = fields.String(required=True)


class PoolCreateVm(Strict):
    name_label = fields.String(required=True, validate=validate.Length(max=255))
    template = Id(required=True)
    name_description = fields.String()
    memory = Size()
    cpus = Number(integer=True, validate=validate.Range(min=1, max=512))
    autoPoweron = Bool()
    affinity = Id()
    high_availability = fields.String(validate=validate.OneOf(["", "best-effort", "restart"]))
    clone = Bool()
    secureBoot = Bool()
    hvmBootFirmware = fields.String(validate=validate.OneOf(["uefi", "bios"]))
    copyHostBiosStrings = Bool()
    vifs = fields.List(fields.Nested(VmVif))
    vdis = fields.List(fields.Nested(VmVdi))
    install = fields.Nested(VmInstall)
    boot = Bool()
    gpuGroup = Id()
    vgpuType = Id()
    cloud_config = fields.String()
    network_config = fields.String()
    destroy_cloud_config_vdi = Bool()
    createVtpm = Bool()


class VdiMigrate(Strict):
    srId = Id(required=True)


#: (collection, action) -> its body schema; ``NoBody`` for the others.
ACTION_BODIES = {
    ("vms", "start"): VmStart(), ("vms", "snapshot"): VmSnapshot(), ("vms", "clone"): VmClone(),
    ("vms", "revert_snapshot"): VmRevert(), ("vms", "migrate"): VmMigrate(),
    ("hosts", "disable"): HostDisable(), ("hosts", "clean_shutdown"): HostCleanShutdown(),
    ("hosts", "clean_reboot"): HostCleanReboot(), ("hosts", "smart_reboot"): HostSmartReboot(),
    ("hosts", "restart_toolstack"): HostRestartToolstack(), ("hosts", "management_reconfigure"): HostManagement(),
    ("pools", "management_reconfigure"): PoolManagement(), ("pools", "add_host"): PoolAddHost(),
    ("pools", "rolling_reboot"): PoolRollingReboot(), ("pools", "create_network"): NetworkOnVlan(),
    ("pools", "create_bonded_network"): NetworkBonded(), ("pools", "create_internal_network"): NetworkBase(),
    ("pools", "create_vm"): PoolCreateVm(), ("vdis", "migrate"): VdiMigrate(),
}
NO_BODY = NoBody()


def action_body(collection, name):
    return ACTION_BODIES.get((collection, name), NO_BODY)


# edits -------------------------------------------------------------------------------

OPERATIONS = ("snapshot", "clone", "copy", "create_template", "revert", "checkpoint", "snapshot_with_quiesce",
              "provision", "start", "start_on", "pause", "unpause", "clean_shutdown", "clean_reboot",
              "hard_shutdown", "power_state_reset", "hard_reboot", "suspend", "csvm", "resume", "resume_on",
              "pool_migrate", "migrate_send", "get_boot_record", "send_sysrq", "send_trigger", "query_services",
              "shutdown", "call_plugin", "changing_memory_live", "awaiting_memory_live", "changing_dynamic_range",
              "changing_static_range", "changing_memory_limits", "changing_shadow_memory",
              "changing_shadow_memory_live", "changing_VCPUs", "changing_VCPUs_live", "changing_NVRAM",
              "assert_operation_valid", "data_source_op", "update_allowed_operations", "make_into_template",
              "import", "export", "metadata_export", "reverting", "destroy", "create_vtpm")


class BlockedReason(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if value is not None and not isinstance(value, (bool, str)):
            raise ValidationError("must be true, false, a reason or null")
        return value


class UpdateVm(Strict):
    """Xen Orchestra's ``UpdateVmRequestBody``."""

    nameLabel = fields.String(validate=validate.Length(max=255))
    nameDescription = fields.String()
    affinityHost = Id(allow_none=True)
    autoPoweron = Bool()
    blockedOperations = fields.Dict(keys=fields.String(validate=validate.OneOf(OPERATIONS)), values=BlockedReason())
    coresPerSocket = Number(integer=True, allow_none=True, validate=validate.Range(min=1))
    cpuCap = Number(integer=True, allow_none=True, validate=validate.Range(min=0))
    cpuMask = fields.List(Number(integer=True, validate=validate.Range(min=0)))
    cpuWeight = Number(integer=True, allow_none=True, validate=validate.Range(min=0))
    cpus = Number(integer=True, validate=validate.Range(min=1, max=512))
    cpusStaticMax = Number(integer=True, validate=validate.Range(min=1, max=512))
    creation = fields.Dict(keys=fields.String(), values=fields.String())
    expNestedHvm = Bool()
    hasVendorDevice = Bool()
    highAvailability = fields.String(validate=validate.OneOf(["best-effort", "restart", ""]))
    hvmBootFirmware = fields.String(allow_none=True, validate=validate.OneOf(["uefi", "bios"]))
    memory = Size()
    memoryMax = Size()
    memoryMin = Size()
    memoryStaticMax = Size()
    nestedVirt = Bool()
    nicType = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)
    PV_args = fields.String()
    secureBoot = Bool()
    startDelay = Number(integer=True, validate=validate.Range(min=0))
    suspendSr = Id(allow_none=True)
    tags = Strings()
    uefiMode = fields.String(validate=validate.OneOf(["setup", "user"]))
    vga = fields.String(validate=validate.OneOf(["std", "cirrus"]))
    videoram = Number(integer=True, validate=validate.OneOf([1, 2, 4, 8, 16]))
    viridian = Bool()
    virtualizationMode = fields.String(validate=validate.OneOf(["pv", "hvm"]))
    xenStoreData = fields.Dict(keys=fields.String(validate=validate.Length(min=1)),
                               values=fields.String(allow_none=True))
    resourceSet = fields.String(allow_none=True)
    share = Bool()

    @validates_schema
    def _xenstore_keys(self, data, **kwargs):
        for key in data.get("xenStoreData") or {}:
            stripped = re.sub(r"^(vm-data/)+", "", key)
            if not stripped or ".." in stripped or stripped.startswith("/"):
                raise ValidationError(f"invalid xenstore key {key!r}", "xenStoreData")


class UpdateVdi(Strict):
    name_label = fields.String(validate=validate.Length(max=255))
    name_description = fields.String()
    size = Size()


class UpdateVif(Strict):
    lockingMode = fields.String(validate=validate.OneOf(["network_default", "locked", "unlocked", "disabled"]))
    rateLimit = Number(allow_none=True, validate=validate.Range(min=0))
    txChecksumming = Bool(allow_none=True)
    allowedIpv4Addresses = Strings()
    allowedIpv6Addresses = Strings()


class UpdateNames(Strict):
    """Names and tags, for the objects Xen Orchestra's current API has no PATCH for (as its
    first REST API did)."""

    name_label = fields.String(validate=validate.Length(max=255))
    name_description = fields.String()
    tags = Strings()


# creations ---------------------------------------------------------------------------

VDI_TYPES = ("system", "user", "ephemeral", "suspend", "crashdump", "ha_statefile", "metadata", "redo_log", "rrd",
             "pvs_cache", "cbt_metadata")
SR_TYPES = ("iso", "cephfs", "dummy", "ext", "file", "glusterfs", "hba", "largeblock", "linstor", "lvm", "lvmofcoe",
            "lvmohba", "lvmoiscsi", "moosefs", "nfs", "shm", "smb", "udev", "xfs", "zfs")


class CreateVdi(Strict):
    srId = Id(required=True)
    virtual_size = Number(integer=True, required=True, validate=validate.Range(min=0))
    name_label = fields.String()
    name_description = fields.String()
    tags = Strings()
    type = fields.String(validate=validate.OneOf(VDI_TYPES))
    read_only = Bool()
    sharable = Bool()
    xenstore_data = StringMap()
    other_config = StringMap()
    sm_config = StringMap()


class CreateVbd(Strict):
    VM = Id(required=True)
    VDI = Id(required=True)
    type = fields.String(validate=validate.OneOf(["CD", "Disk", "Floppy"]))
    mode = fields.String(validate=validate.OneOf(["RO", "RW"]))
    bootable = Bool()
    empty = Bool()
    unpluggable = Bool()
    userdevice = fields.String()
    other_config = StringMap()
    qos_algorithm_type = fields.String()
    qos_algorithm_params = StringMap()


class CreateVif(Strict):
    vmId = Id(required=True)
    networkId = Id(required=True)
    device = fields.String()
    MTU = Number(integer=True, validate=validate.Range(min=68, max=65535))
    MAC = fields.String()
    currently_attached = Bool()
    ipv4_allowed = Strings()
    ipv6_allowed = Strings()
    locking_mode = fields.String(validate=validate.OneOf(["network_default", "locked", "unlocked", "disabled"]))
    qos_algorithm_type = fields.String()
    qos_algorithm_params = StringMap()
    other_config = StringMap()


class CreateSr(Strict):
    hostId = Id(required=True)
    SR_type = fields.String(required=True, validate=validate.OneOf(SR_TYPES))
    name_label = fields.String(required=True, validate=validate.Length(min=1, max=255))
    name_description = fields.String()
    content_type = fields.String(validate=validate.OneOf(["user", "iso", "disk"]))
    sm_config = StringMap()
    device_config = StringMap(required=True)
    size = Number(integer=True, validate=validate.Range(min=0))


class CreateNetwork(NetworkBase):
    """Not in Xen Orchestra's API (which creates networks through pool actions): the
    same body with the pool's id."""

    poolId = Id(required=True)
    pif = Id()
    vlan = Number(integer=True, validate=validate.Range(min=0, max=4094))

    @validates_schema
    def _vlan_with_pif(self, data, **kwargs):
        if ("pif" in data) != ("vlan" in data):
            raise ValidationError("pif and vlan go together", "vlan" if "pif" in data else "pif")


class CreateServer(Strict):
    """Xen Orchestra's ``InsertableXoServer``."""

    host = fields.String(required=True, validate=validate.Length(min=1, max=2048))
    username = fields.String(required=True, validate=validate.Length(min=1, max=255))
    password = fields.String(required=True, validate=validate.Length(max=1024))
    label = fields.String(validate=validate.Length(max=255))
    allowUnauthorized = Bool()
    httpProxy = fields.String()
    readOnly = Bool()


CREATION_BODIES = {"vdis": CreateVdi(), "vbds": CreateVbd(), "vifs": CreateVif(), "networks": CreateNetwork(),
                   "srs": CreateSr(), "servers": CreateServer()}
EDIT_BODIES = {"vms": UpdateVm(), "vdis": UpdateVdi(), "vifs": UpdateVif()}
UPDATE_NAMES = UpdateNames()


# tasks -------------------------------------------------------------------------------

class TaskListQuery(CollectionQuery):
    watch = FlagField(load_default=False)


class TaskQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    # ``result`` is the older API's spelling of the same wait
    wait = fields.String(load_default=None, validate=validate.OneOf(["true", "false", "1", "0", "", "result"]))


ACTION_QUERY = ActionQuery()
TASK_LIST_QUERY = TaskListQuery()
TASK_QUERY = TaskQuery()
