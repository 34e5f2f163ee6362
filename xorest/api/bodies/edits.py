"""Bodies of edits (``PATCH /<collection>/<id>``) and creations (``POST /<collection>``)."""
import re

from marshmallow import ValidationError, fields, validate, validates_schema

from .actions import NetworkBase
from .strict import Bool, Id, Number, Size, Strict, StringMap, Strings


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
