"""The fields of every object the API serves, one marshmallow schema per Xen Orchestra type.

These schemas describe what the mappers of this package produce (``host.py``, ``vm.py``...)
for the OpenAPI document; nothing loads objects with them.  ``required`` marks the keys a
mapper always writes; the others are left out when XAPI's record lacks what they are made
of (keys JavaScript would leave ``undefined``).  Unknown keys are not allowed
(``additionalProperties: false``): ``tests/test_openapi.py`` maps the golden pool and checks
every ``fields=*`` object of every collection against its schema, so a key added to a
mapper without its declaration here fails the suite.

IO-free, and no xorest import: the API layer reads :data:`SCHEMAS`.
"""
from marshmallow import INCLUDE, RAISE, Schema, fields, validate


def _meta(description, extra=None):
    return {"description": description, **(extra or {})}


def text(description, required=False, nullable=False, data_key=None, **extra):
    return fields.String(required=required, allow_none=nullable, data_key=data_key,
                         metadata=_meta(description, extra))


def flag(description, required=False):
    return fields.Boolean(required=required, metadata=_meta(description))


def integer(description, required=False, nullable=True):
    """A number read with JavaScript's ``+value``: ``null`` when the record's value is not one."""
    return fields.Integer(required=required, allow_none=nullable, metadata=_meta(description))


def number(description, required=False, nullable=True):
    return fields.Float(required=required, allow_none=nullable, metadata=_meta(description))


def seconds(description, required=False):
    """A Unix time in seconds (possibly fractional); ``null`` for the epoch or an unset date."""
    return fields.Float(required=required, allow_none=True,
                        metadata=_meta(description + " (Unix time in seconds; null when unset)"))


def string_map(description, required=False):
    return fields.Dict(keys=fields.String(), values=fields.String(), required=required,
                       metadata=_meta(description))


def link(description, required=False, nullable=False, data_key=None):
    """The id (usually the uuid) of another object of the same pool."""
    return fields.String(required=required, allow_none=nullable, data_key=data_key,
                         metadata=_meta(description + " (an object's id)"))


def links(description, required=False, data_key=None):
    """Ids of other objects; ``null`` for a reference to an object not known (yet)."""
    return fields.List(fields.String(allow_none=True), required=required, data_key=data_key,
                       metadata=_meta(description + " (objects' ids; null for an unknown one)"))


def strings(description, required=False):
    return fields.List(fields.String(), required=required, metadata=_meta(description))


def anything(description, required=False, **extra):
    """A value of no fixed shape (parsed XML, JSON stored by Xen Orchestra)."""
    return fields.Raw(required=required, allow_none=True, metadata=_meta(description, extra))


def nested(schema, description, required=False, nullable=False):
    return fields.Nested(schema, required=required, allow_none=nullable, metadata=_meta(description))


def one_type(name):
    return fields.String(required=True, validate=validate.OneOf([name]),
                         metadata=_meta("the object's Xen Orchestra type"))


class Strict(Schema):
    class Meta:
        unknown = RAISE  # additionalProperties: false


class XoObject(Strict):
    """What every object has: identity, pool, XAPI reference and its URL."""

    id = text("the object's id in URLs: its uuid (for default templates, the pool's uuid, a dash and "
              "the template's uuid)", required=True)
    uuid = text("the XAPI record's uuid")
    pool_ = text("the uuid of the pool the object belongs to", required=True, data_key="$pool")
    poolId_ = text("the same as $pool", required=True, data_key="$poolId")
    _xapiRef = text("the XAPI opaque reference of the record (OpaqueRef:...)", required=True)
    href = text("the object's URL, relative to the server", required=True, format="uri-reference")
    url = text("the same as href", required=True, format="uri-reference")


class Cpus(Strict):
    cores = integer("CPU cores")
    sockets = integer("CPU sockets")


class HostMemory(Strict):
    usage = integer("bytes in use (0 when the host is not running)")
    size = integer("total memory in bytes, rounded up to a whole GiB")
    total = integer("deprecated: 0 when the host has no metrics")


class Certificate(Strict):
    fingerprint = text("the certificate's SHA-256 fingerprint")
    notAfter = seconds("end of validity")


class SupplementalPack(Strict):
    name = text("the pack's name")
    description = text("its description")
    author = text("its author")
    version = text("its version")
    guidance = strings("what to do after applying it")
    hosts = links("hosts it is installed on")
    vdi = link("the disk holding it")
    size = integer("its installed size in bytes")


class Pool(XoObject):
    type = one_type("pool")
    auto_poweron = flag("VMs start with the pool", required=True)
    crashDumpSr = link("the SR for crash dumps")
    current_operations = string_map("operations running on the pool (task -> operation)")
    default_SR = link("the default SR for new disks and imports")
    HA_enabled = flag("high availability is on", required=True)
    haRebootVmOnInternalShutdown = flag("HA restarts VMs shut down from inside", required=True)
    haSrs = links("SRs of the HA statefiles", required=True)
    master = link("the pool master host")
    tags = strings("tags")
    name_label = text("the name")
    name_description = text("the description")
    migrationCompression = flag("migrations are compressed")
    otherConfig = string_map("XAPI's other_config")
    cpus = nested(Cpus, "the pool's CPUs", required=True)
    suspendSr = link("the SR for suspend images")
    zstdSupported = flag("the pool can compress exports with zstd", required=True)
    vtpmSupported = flag("VMs may have a vTPM", required=True)
    platform_version = text("the master's platform version")


class Host(XoObject):
    type = one_type("host")
    CPUs = string_map("deprecated: XAPI's cpu_info")
    address = text("the management address")
    bios_strings = string_map("BIOS strings")
    build = text("the build number")
    chipset_info = fields.Dict(keys=fields.String(), values=fields.Boolean(), required=True,
                               metadata=_meta("chipset features (iommu)"))
    enabled = flag("the host accepts new VMs", required=True)
    controlDomain = link("the host's control domain (dom0)")
    cpus = nested(Cpus, "the host's CPUs", required=True)
    current_operations = string_map("operations running on the host (task -> operation)")
    hostname = text("the host name")
    iscsiIqn = text("the iSCSI IQN", required=True)
    zstdSupported = flag("the host can compress exports with zstd", required=True)
    license_params = string_map("license parameters")
    license_server = string_map("license server (address, port)")
    license_expiry = seconds("license expiry", required=True)
    logging = string_map("logging settings (syslog destination)")
    name_label = text("the name")
    name_description = text("the description")
    memory = nested(HostMemory, "memory", required=True)
    multipathing = flag("storage multipathing is on", required=True)
    otherConfig = string_map("XAPI's other_config")
    patches = links("installed patches")
    powerOnMode = text("how the host is powered on remotely (empty: not at all)")
    power_state = text("Running, Halted, or Unknown (no metrics)", required=True,
                       enum=["Running", "Halted", "Unknown"])
    residentVms = links("VMs running on the host")
    startTime = seconds("boot time", required=True)
    supplementalPacks = fields.List(fields.Nested(SupplementalPack), required=True,
                                    metadata=_meta("installed supplemental packs"))
    agentStartTime = seconds("toolstack start time", required=True)
    rebootRequired = flag("updates wait for a reboot", required=True)
    tags = strings("tags")
    version = text("the product version")
    productBrand = text("the product brand (XCP-ng, XenServer...)")
    hvmCapable = flag("the host runs HVM guests", required=True)
    certificates = fields.List(fields.Nested(Certificate), metadata=_meta("the host's TLS certificates"))
    PIFs = links("physical interfaces")
    PIFs_ = links("the same as PIFs", data_key="$PIFs")
    PCIs = links("PCI devices")
    PCIs_ = links("the same as PCIs", data_key="$PCIs")
    PGPUs = links("physical GPUs")
    PGPUs_ = links("the same as PGPUs", data_key="$PGPUs")
    PBDs_ = links("the host's storage connections (PBDs)", data_key="$PBDs")


class VmCpus(Strict):
    max = integer("the most vCPUs the VM can have")
    number = integer("vCPUs now (running with tools) or at start-up")


class VmMemory(Strict):
    dynamic = fields.List(fields.Integer(allow_none=True), validate=validate.Length(equal=2),
                          metadata=_meta("dynamic minimum and maximum, bytes"))
    static = fields.List(fields.Integer(allow_none=True), validate=validate.Length(equal=2),
                         metadata=_meta("static minimum and maximum, bytes"))
    size = integer("memory of the VM now (running) or at start-up, bytes")
    usage = integer("memory in use as the guest agent reports it, bytes")


class XenTools(Strict):
    major = integer("major version")
    minor = integer("minor version")
    version = number("major.minor as a number")


class Docker(Strict):
    enabled = flag("the xscontainer plugin monitors this VM", required=True)
    info = anything("docker info, as reported")
    containers = fields.List(fields.Raw(allow_none=True), metadata=_meta("running containers"))
    process = anything("deprecated: docker ps, as reported")
    version = anything("docker version, as reported")


class Xsa468(Strict):
    reason = text("why the VM may be vulnerable", required=True,
                  enum=["pv-driver-version-vulnerable", "no-pv-drivers-detected"])
    driver = text("the vulnerable driver")
    version = text("its version")


class Vulnerabilities(Strict):
    xsa468 = anything("false, or why the VM's Windows PV drivers may be vulnerable to XSA-468", required=True,
                      anyOf=[{"type": "boolean", "enum": [False]}, {"$ref": "#/components/schemas/Xsa468"}])


class VmBase(XoObject):
    """The fields of the four VM types (VM, VM-snapshot, VM-template, VM-controller)."""

    addresses = string_map("IP addresses the guest agent reports (device/protocol/index -> address)",
                           required=True)
    affinityHost = link("the host the VM prefers to start on")
    attachedPcis = fields.List(fields.String(allow_none=True), metadata=_meta("PCI devices passed through"))
    auto_poweron = flag("the VM starts with the pool", required=True)
    bios_strings = string_map("BIOS strings")
    blockedOperations = string_map("operations refused, with the reason")
    boot = string_map("HVM boot parameters (order, firmware)")
    CPUs = nested(VmCpus, "vCPUs", required=True)
    creation = anything("when and by whom Xen Orchestra created the VM")
    current_operations = string_map("operations running (task id -> operation)", required=True)
    docker = nested(Docker, "the xscontainer plugin's view of Docker in the VM")
    expNestedHvm = flag("nested virtualisation (exp-nested-hvm)", required=True)
    isNestedVirtEnabled = flag("nested virtualisation is on", required=True)
    viridian = flag("Viridian (Hyper-V) enlightenments", required=True)
    mainIpAddress = text("the first IPv4 address the guest reports, else the first IPv6 one")
    high_availability = text("HA restart priority (empty: not protected)")
    isFirmwareSupported = flag("the template allows the VM's firmware", required=True)
    memory = nested(VmMemory, "memory", required=True)
    installTime = seconds("installation time")
    name_label = text("the name")
    name_description = text("the description")
    needsVtpm = flag("the VM wants a vTPM", required=True)
    notes = text("Xen Orchestra's notes")
    other = string_map("XAPI's other_config")
    os_version = fields.Dict(keys=fields.String(), values=fields.String(), required=True, allow_none=True,
                             metadata=_meta("the guest OS as its agent reports it; null when unknown"))
    parent = link("the snapshot the VM was made from")
    power_state = text("power state", enum=["Halted", "Paused", "Running", "Suspended"])
    hasVendorDevice = flag("the Windows update device is present")
    resourceSet = anything("Xen Orchestra's resource set")
    snapshots = links("snapshots of the VM")
    startDelay = integer("seconds to wait after starting it (in a pool start)", required=True)
    startTime = seconds("start time")
    secureBoot = flag("UEFI secure boot", required=True)
    suspendSr = link("the SR for its suspend image")
    tags = strings("tags")
    VIFs = links("virtual interfaces")
    VTPMs = links("virtual TPMs")
    virtualizationMode = text("hvm, pv or pvh", required=True)
    xenTools = anything("deprecated: false, or the PV drivers' version",
                        anyOf=[{"type": "boolean", "enum": [False]}, {"$ref": "#/components/schemas/XenTools"}])
    managementAgentDetected = flag("the guest's management agent answers")
    pvDriversDetected = flag("PV drivers are present")
    pvDriversVersion = text("their version (major.minor.micro-build)")
    pvDriversUpToDate = flag("they are up to date")
    container_ = link("the host running the VM (or holding its local disks), else the pool", required=True,
                      data_key="$container")
    VBDs_ = links("its disk slots (VBDs)", data_key="$VBDs")
    VGPUs = links("virtual GPUs")
    VGPUs_ = links("the same as VGPUs", data_key="$VGPUs")
    nicType = text("the emulated network card")
    xenStoreData = string_map("XenStore entries given to the guest")
    vga = text("the emulated graphics card (HVM)")
    videoram = number("video memory in MiB (HVM)")
    coresPerSocket = number("vCPUs per socket")
    cpuCap = number("CPU cap (percent of one CPU)")
    cpuWeight = number("CPU weight")
    cpuMask = fields.List(fields.Float(allow_none=True), metadata=_meta("CPUs the vCPUs may run on"))
    PV_args = text("kernel arguments (not HVM)")


class Vm(VmBase):
    type = one_type("VM")
    vulnerabilities = nested(Vulnerabilities, "known vulnerabilities of the guest", required=True)


class VmSnapshot(VmBase):
    type = one_type("VM-snapshot")
    snapshot_time = seconds("when the snapshot was taken", required=True)
    snapshot_of_ = link("the VM it is a snapshot of", data_key="$snapshot_of")
    suspendVdi = link("the disk holding its memory (snapshots with memory)")


class TemplateDisk(Schema):
    """A disk a template creates; other attributes of the template's XML are kept."""

    class Meta:
        unknown = "include"

    device = text("its position")
    size = integer("its size in bytes")
    bootable = flag("it is bootable")
    type = text("its kind")
    SR = text("its SR")


class TemplateInfo(Strict):
    arch = text("architecture")
    disks = fields.List(fields.Nested(TemplateDisk), required=True, metadata=_meta("disks it creates"))
    install_methods = strings("installation methods", required=True)
    install_repository = text("installation repository")


class VmTemplate(VmBase):
    type = one_type("VM-template")
    isDefaultTemplate = flag("a template shipped with XAPI", required=True)
    template_info = nested(TemplateInfo, "installation details", required=True)


class VmController(VmBase):
    type = one_type("VM-controller")


class Sr(XoObject):
    type = one_type("SR")
    content_type = text("content type (user, iso...)")
    physical_usage = integer("bytes used on the storage")
    allocationStrategy = text("thin or thick provisioning", enum=["thin", "thick", "unknown"])
    current_operations = string_map("operations running (task -> operation)")
    inMaintenanceMode = flag("in maintenance mode", required=True)
    name_label = text("the name")
    name_description = text("the description")
    size = integer("size in bytes")
    shared = flag("shared between the pool's hosts", required=True)
    SR_type = text("the SR driver (ext, lvm, nfs...)")
    tags = strings("tags")
    usage = integer("bytes allocated to disks")
    VDIs = links("its disks")
    other_config = string_map("XAPI's other_config")
    sm_config = string_map("XAPI's sm_config")
    container_ = link("the pool (shared SR) or the host (local SR)", required=True, data_key="$container")
    PBDs_ = links("its PBDs", data_key="$PBDs")


class Sm(XoObject):
    type = one_type("SM")
    name_label = text("the name")
    name_description = text("the description")
    SM_type = text("the driver's SR type")
    configuration = string_map("configuration keys and their descriptions")
    vendor = text("vendor")
    features = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata=_meta("features and versions"))
    driver_filename = text("the driver's file")
    required_cluster_stack = strings("cluster stacks it needs")
    supported_image_formats = strings("disk image formats", required=True)


class VdiBase(XoObject):
    cbt_enabled = flag("changed block tracking")
    missing = flag("the SR scan did not find it")
    name_label = text("the name")
    name_description = text("the description")
    parent = text("the uuid of its parent in the VHD chain")
    image_format = text("its image format (vhd, qcow2...)")
    size = integer("virtual size in bytes")
    snapshots = links("its snapshots")
    tags = strings("tags")
    usage = integer("bytes used on the SR")
    VDI_type = text("XAPI's type (user, system, suspend...)")
    current_operations = string_map("operations running (task -> operation)")
    other_config = string_map("XAPI's other_config")
    SR_ = link("its SR", data_key="$SR")
    VBDs_ = links("the VBDs using it", data_key="$VBDs")
    read_only = flag("read-only (imports refuse it)", required=True)


class Vdi(VdiBase):
    type = one_type("VDI")
    chainPhysicalUsage = integer("bytes used by it and its VHD parents", required=True)


class VdiSnapshot(VdiBase):
    type = one_type("VDI-snapshot")
    snapshot_time = seconds("when the snapshot was taken", required=True)
    snapshot_of_ = link("the disk it is a snapshot of", data_key="$snapshot_of")


class Vbd(XoObject):
    type = one_type("VBD")
    attached = flag("plugged", required=True)
    bootable = flag("bootable", required=True)
    device = text("the device name in the guest (null when not attached)", required=True, nullable=True)
    is_cd_drive = flag("a CD drive", required=True)
    position = text("its user device number")
    read_only = flag("read-only", required=True)
    VDI = link("its disk (none for an empty CD drive)")
    VM = link("its VM")


class Pbd(XoObject):
    type = one_type("PBD")
    attached = flag("plugged", required=True)
    host = link("its host")
    SR = link("its SR")
    device_config = anything("the storage's configuration, secrets hidden", type="object")
    otherConfig = string_map("XAPI's other_config")


class Network(XoObject):
    type = one_type("network")
    automatic = flag("new VMs get an interface on it", required=True)
    bridge = text("the bridge's name")
    current_operations = string_map("operations running (task -> operation)")
    defaultIsLocked = flag("interfaces are locked by default", required=True)
    MTU = integer("MTU")
    name_label = text("the name")
    name_description = text("the description")
    other_config = string_map("XAPI's other_config")
    tags = strings("tags")
    PIFs = links("its physical interfaces")
    VIFs = links("its virtual interfaces")
    nbd = flag("NBD is served on it (TLS)")
    insecureNbd = flag("NBD is served on it without TLS")
    isBonded = flag("one of its PIFs is bonded", required=True)


class Vif(XoObject):
    type = one_type("VIF")
    allowedIpv4Addresses = strings("IPv4 addresses it may use when locked")
    allowedIpv6Addresses = strings("IPv6 addresses it may use when locked")
    attached = flag("plugged", required=True)
    device = text("its device number")
    lockingMode = text("locking mode", enum=["network_default", "locked", "unlocked", "disabled"])
    MAC = text("MAC address")
    MTU = integer("MTU")
    other_config = string_map("XAPI's other_config")
    txChecksumming = flag("transmit checksum offloading", required=True)
    rateLimit = number("rate limit in kB/s")
    network_ = link("its network", data_key="$network")
    VM_ = link("its VM", data_key="$VM")


class Pif(XoObject):
    type = one_type("PIF")
    attached = flag("plugged", required=True)
    isBondMaster = flag("the interface of a bond", required=True)
    isBondSlave = flag("a member of a bond", required=True)
    bondMaster = link("its bond's interface")
    bondSlaves = links("its bond's members")
    device = text("device name (eth0...)")
    deviceName = text("the card's name")
    dns = text("DNS servers")
    disallowUnplug = flag("may not be unplugged", required=True)
    gateway = text("IPv4 gateway")
    ip = text("IPv4 address")
    ipv6 = strings("IPv6 addresses")
    mac = text("MAC address")
    management = flag("the management interface", required=True)
    carrier = flag("link detected", required=True)
    mode = text("IPv4 configuration mode (None, DHCP, Static)")
    ipv6Mode = text("IPv6 configuration mode")
    mtu = integer("MTU")
    netmask = text("IPv4 netmask")
    physical = flag("a physical interface (not a VLAN or bond)", required=True)
    primaryAddressType = text("IPv4 or IPv6")
    vlan = integer("VLAN tag (-1: none)")
    speed = integer("link speed in Mbit/s")
    host_ = link("its host", data_key="$host")
    network_ = link("its network", data_key="$network")


class Task(XoObject):
    type = one_type("task")
    allowedOperations = strings("operations allowed on the task")
    created = seconds("creation time", required=True)
    current_operations = string_map("operations running on the task")
    finished = seconds("end time", required=True)
    name_label = text("the name")
    name_description = text("the description")
    progress = number("progress, 0 to 1", required=True)
    result = text("the result (XML-RPC value)")
    status = text("status", enum=["pending", "success", "failure", "cancelling", "cancelled"])
    xapiRef = text("the task's opaque reference")
    applies_to = text("the uuid of the object it works on")
    host_ = link("the host running it", data_key="$host")
    error_info = strings("why it failed: XAPI's error code and parameters")


class Message(XoObject):
    type = one_type("message")
    body = text("the message's text")
    name = text("the message's name (its kind)")
    time = seconds("when it was sent", required=True)
    object_ = text("the uuid of the object it is about", data_key="$object")
    priority = integer("XAPI's priority, 1 (most urgent) to 5 (informational)")


class AlarmBody(Strict):
    value = text("the measured value in percent, one decimal")
    name = text("what is measured (cpu_usage, memory_free_kib...), or the whole text")


class AlarmObject(Strict):
    type = text("the object's type (unknown when it is not known)", required=True)
    uuid = text("its uuid")
    href = text("its URL", format="uri-reference")


class Alarm(XoObject):
    """An alarm message, in the shape of Xen Orchestra's REST alarms."""

    type = one_type("message")
    name = text("the alarm's kind (ALARM...)")
    priority = integer("XAPI's priority, 1 (most urgent) to 5 (informational)")
    body = nested(AlarmBody, "what triggered it", required=True)
    object = nested(AlarmObject, "what it is about", required=True)
    time = fields.Float(required=True, metadata=_meta("when it was raised, Unix time in milliseconds"))


class Pci(XoObject):
    type = one_type("PCI")
    class_name = text("device class")
    device_name = text("device name")
    pci_id = text("PCI address")
    host_ = link("its host", data_key="$host")


class Pgpu(XoObject):
    type = one_type("PGPU")
    dom0Access = text("dom0's access to it")
    enabledVgpuTypes = links("vGPU types enabled")
    gpuGroup = link("its GPU group")
    isSystemDisplayDevice = flag("the host's console display", required=True)
    pci = link("its PCI device")
    supportedVgpuTypes = links("vGPU types supported")
    host = link("its host")
    host_ = link("its host", data_key="$host")
    vgpus = links("vGPUs on it")
    vgpus_ = links("the same as vgpus", data_key="$vgpus")


class Local(Strict):
    """Objects of xorest's own store, served with a URL."""

    id = text("the object's id", required=True)
    href = text("the object's URL, relative to the server", required=True, format="uri-reference")
    url = text("the same as href", required=True, format="uri-reference")


class Server(Local):
    """A pool xorest connects to (``xorest server add``) and the state of that connection."""

    type = one_type("server")
    host = text("the pool master's URL", required=True)
    username = text("the XAPI user", required=True)
    label = text("a label", required=True, nullable=True)
    allowUnauthorized = flag("TLS is not verified", required=True)
    enabled = flag("xorest connects to it (false: disconnected through the API)", required=True)
    readOnly = flag("always false: xorest writes to every pool it connects to", required=True)
    caFile = text("the CA file verifying the pool's certificate", required=True, nullable=True)
    status = text("connection state", required=True, enum=["connecting", "connected", "disconnected"])
    error = text("the last connection error", required=True, nullable=True)
    lastEventTime = seconds("when the last XAPI event arrived")
    connectedSince = seconds("when the connection was made")
    failedAttempts = integer("failed connection attempts since the last success", nullable=False)
    poolId = text("the pool's uuid", nullable=True)


class User(Local):
    email = text("the user's email", required=True)
    permission = text("Xen Orchestra's: admin (the pool-admin role), or none", required=True,
                      enum=["admin", "none"])
    role = text("the user's role (XAPI's RBAC role names; null: none, only their own tokens)", required=True,
                nullable=True, enum=["read-only", "vm-operator", "vm-admin", "pool-operator", "pool-admin", None])
    created_at = number("creation time, Unix seconds", required=True, nullable=False)


class TaskNote(Strict):
    message = text("what happened", required=True)
    data = anything("its details", required=True)


class XapiTaskLink(Strict):
    id = text("the XAPI task's uuid", required=True)
    method = text("the XAPI call it runs", required=True)
    href = text("its URL (in /rest/v0/xapi-tasks)", required=True, format="uri-reference")


class TaskProperties(Schema):
    class Meta:
        unknown = INCLUDE  # Xen Orchestra's tasks have more keys, of their own kinds

    name = text("what the task does", required=True)
    type = text("its kind (xo:rest-api:action, xo:rest-api:export...)")
    objectId = text("the id of the object it is about", nullable=True)
    objectType = text("that object's Xen Orchestra type", nullable=True)
    userId = text("who started it", nullable=True)
    params = anything("its parameters (the action's body)")
    progress = number("percent done (also the task's progress)", nullable=False)
    xapiTasks = fields.List(fields.Nested(XapiTaskLink), metadata=_meta("the XAPI tasks it drove"))


class XoTask(Strict):
    """A task of xorest's task log, in Xen Orchestra's shape (an action, an export, an import)."""

    id = text("the task's id (its start time in base 36 and a random part)", required=True)
    properties = nested(TaskProperties, "what the task is", required=True)
    start = number("when it started, Unix milliseconds", required=True, nullable=False)
    end = number("when it ended, Unix milliseconds", nullable=False)
    updatedAt = number("its last change, Unix milliseconds", nullable=False)
    status = text("its state", required=True, enum=["pending", "success", "failure", "interrupted"])
    progress = number("percent done", nullable=False)
    result = anything("what it made (an id), or its error")
    infos = fields.List(fields.Nested(TaskNote), metadata=_meta("notes as it ran"))
    warnings = fields.List(fields.Nested(TaskNote), metadata=_meta("warnings as it ran"))
    tasks = fields.List(fields.Raw(), metadata=_meta("its sub-tasks, each an XoTask"))
    abortionRequestedAt = number("when an abort was asked, Unix milliseconds", nullable=False)
    href = text("the task's URL, relative to the server", required=True, format="uri-reference")
    url = text("the same as href", required=True, format="uri-reference")


class AuditEntry(Local):
    """One request of the audit trail (every write, export, token change; refused ones too)."""

    type = one_type("audit")
    at = number("when, Unix seconds", required=True, nullable=False)
    time = integer("when, Unix milliseconds", required=True, nullable=False)
    user_id = text("who", nullable=True)
    user_email = text("who, by email", nullable=True)
    token_id = text("the id (a hash) of the token used", nullable=True)
    address = text("the client's address", nullable=True)
    method = text("the HTTP method", required=True)
    path = text("the path (secrets redacted)", required=True)
    operation = text("the operation (its endpoint)", nullable=True)
    status = integer("the answer's status")
    error = text("why it was refused or failed", nullable=True)


#: XO type -> schema class, for the objects served from the pools.
SCHEMAS = {
    "pool": Pool, "host": Host, "VM": Vm, "VM-snapshot": VmSnapshot, "VM-template": VmTemplate,
    "VM-controller": VmController, "SR": Sr, "SM": Sm, "VDI": Vdi, "VDI-snapshot": VdiSnapshot, "VBD": Vbd,
    "PBD": Pbd, "network": Network, "VIF": Vif, "PIF": Pif, "task": Task, "message": Message, "alarm": Alarm,
    "PCI": Pci, "PGPU": Pgpu, "server": Server, "user": User, "xo-task": XoTask, "audit": AuditEntry,
}
#: Schemas other schemas name in ``anyOf`` (``#/components/schemas/<class name>``).
REFERENCED = (XenTools, Xsa468)
