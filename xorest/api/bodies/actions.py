"""Bodies of actions (``POST /<collection>/<id>/actions/<name>``), as Xen Orchestra's
OpenAPI document declares them."""
from marshmallow import ValidationError, fields, validate, validates_schema

from .strict import Bool, Id, Number, Size, Strict, StringMap, Strings


class NoBody(Strict):
    """Actions without parameters (a body, if any, must be an empty object)."""


class VmStart(Strict):
    hostId = Id()


class VmSnapshotBody(Strict):
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
    ("vms", "start"): VmStart(), ("vms", "snapshot"): VmSnapshotBody(), ("vms", "clone"): VmClone(),
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
