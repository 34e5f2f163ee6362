"""Seeded generation of a realistic pool, with the variety and the record counts of a real one.

Per host: 16 logical CPUs (``host_cpu``), a control domain with its consoles, four NICs
(eth0 management, eth1+eth2 bonded, eth3 spare) with their PCI devices and PIF metrics, the
VLANs on the bond, a RAID or NVMe controller, the onboard VGA as the system display PGPU,
a ``host`` and a ``host_internal`` certificate, local storage and removable-media SRs; one
host in three carries a GRID K2 (two PGPUs, vGPU types).  Pool-wide: NFS storage (the
default SR, with the HA statefile and redo log when HA is on), an ISO library, the XCP-ng
Tools SR, an iSCSI SR, the usual XCP-ng storage drivers, default templates with their
``other_config.disks`` and recommendations, a supplemental pack (``pool_update`` and the
``pool_patch``/``host_patch`` records XAPI derives from it).

VMs: Linux and Windows guests, BIOS and UEFI (secure boot on, auto, off), vTPMs on Windows 11
and some Windows Server VMs, vGPUs on GPU hosts, 1-3 disks and a CD drive (empty, an ISO or
the guest tools), 1-2 VIFs.  Guest metrics only for VMs running with a guest agent, whose
``networks`` keys are those that agent writes; halted VMs that never started have
``VM_metrics.start_time`` at the epoch; suspended VMs have their suspend VDI; snapshots sit on
VHD chains (``sm_config.vhd-parent`` naming a hidden base copy).

Every time is relative to the build time ``now``: given the same seed and ``now``, two pools
are identical, refs and uuids included.
"""
import base64
import gc
import hashlib
import random
import time

from . import catalog
from .disks import MiB
from .rpc import EPOCH, DateTime
from .state import NULL_REF

GiB = 1024 * MiB
DAY = 86400
ROLES = ["web", "db", "cache", "mail", "ci", "dns", "proxy", "backup", "app", "monitor"]
ENVS = ["prod", "staging", "dev", "test"]
DISK_SIZES = [512 * MiB, 1 * GiB, 2 * GiB, 4 * GiB]
HOST_MEMORY = [256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384, 24576, 32768]
DOM0_MEMORY = 8 * GiB
POWER_STATES, POWER_WEIGHTS = ["Running", "Halted", "Suspended", "Paused"], [70, 95, 98, 100]
#: (power state, on shared storage) of the first VMs after the hosts' own: even a small pool
#: has each kind a client may act on (start, migrate, resume...) and hosts it can evacuate,
#: whatever the seed.
COVERAGE = [("Halted", True), ("Running", True), ("Halted", True), ("Running", False), ("Suspended", True),
            ("Paused", True), ("Halted", False), ("Running", True), ("Halted", True)]
GUEST_WEIGHTS = list(__import__("itertools").accumulate(g["weight"] for g in catalog.GUESTS))
HOST_CPUS = 16
VM_BIOS_STRINGS = {"bios-vendor": "Xen", "bios-version": "", "system-manufacturer": "Xen",
                   "system-product-name": "HVM domU", "system-version": "", "system-serial-number": "",
                   "baseboard-manufacturer": "", "baseboard-product-name": "", "baseboard-version": "",
                   "baseboard-serial-number": "", "baseboard-asset-tag": "", "baseboard-location-in-chassis": "",
                   "enclosure-asset-tag": "", "hp-rombios": "", "oem-1": "Xen",
                   "oem-2": "MS_VM_CERT/SHA1/bdbeb6e0a816d43fa6d3fe8aaef04c2bad9d3e3d"}
XENSTORE_DATA = {"vm-data": "", "vm-data/mmio-hole-size": "268435456"}
SOFTWARE_VERSION = {
    "product_version": "8.3.0", "product_version_text": "8.3", "product_version_text_short": "8.3",
    "platform_name": "XCP", "platform_version": "3.4.0", "product_brand": "XCP-ng",
    "build_number": "release/8.3", "git_id": "0", "hostname": "localhost", "date": "2024-10-02",
    "dbv": "2024.0711", "is_preview_release": "false", "xapi": "24.19", "xapi_build": "24.19.2",
    "xen": "4.17.5-3", "linux": "4.19.0+1", "xencenter_min": "2.21", "xencenter_max": "2.21",
    "network_backend": "openvswitch", "db_schema": "5.780",
}
RESTRICTIONS = {name: "false" for name in (
    "restrict_vswitch_controller", "restrict_lab", "restrict_stage", "restrict_storagelink",
    "restrict_storagelink_site_recovery", "restrict_web_selfservice", "restrict_web_selfservice_manager",
    "restrict_hotfix_apply", "restrict_export_resource_data", "restrict_read_caching", "restrict_cifs",
    "restrict_health_check", "restrict_xcm", "restrict_vm_memory_introspection", "restrict_batch_hotfix_apply",
    "restrict_management_on_vlan", "restrict_ws_proxy", "restrict_vlan", "restrict_qos", "restrict_pool_attached_storage",
    "restrict_netapp", "restrict_equalogic", "restrict_pooling", "restrict_xen_motion", "restrict_dmc",
    "restrict_rbac", "restrict_ad", "restrict_nested_virt", "restrict_live_patching", "restrict_set_vcpus_number_live",
    "restrict_pvs_proxy", "restrict_igmp_snooping", "restrict_rpu", "restrict_pool_size", "restrict_cbt",
    "restrict_usb_passthrough", "restrict_network_sriov", "restrict_corosync", "restrict_zstd_export",
    "restrict_pool_secret_rotation", "restrict_certificate_verification", "restrict_updates",
    "restrict_internal_repo_access", "restrict_vtpm", "restrict_vss", "restrict_marathon", "restrict_ha",
    "restrict_email_alerting", "restrict_historical_performance", "restrict_wlb", "restrict_rbac",
    "restrict_gpu", "restrict_vgpu", "restrict_integrated_gpu_passthrough", "restrict_dr", "restrict_vmpr",
    "restrict_intellicache", "restrict_pci_device_for_auto_update", "restrict_xen_motion",
    "restrict_guest_agent_auto_update", "restrict_guest_ip_setting")}
PERFMON_VM = ('<config><variable><name value="cpu_usage"/><alarm_trigger_level value="0.9"/>'
              '<alarm_trigger_period value="60"/><alarm_auto_inhibit_period value="3600"/></variable></config>')
PERFMON_VM_MEMORY = ('<config><variable><name value="cpu_usage"/><alarm_trigger_level value="0.8"/></variable>'
                     '<variable><name value="memory_internal_free"/><alarm_trigger_level value="262144"/>'
                     '</variable></config>')
PERFMON_HOST = ('<config><variable><name value="cpu_usage"/><alarm_trigger_level value="0.85"/></variable>'
                '<variable><name value="network_usage"/><alarm_trigger_level value="104857600"/></variable>'
                '<variable><name value="memory_free_kib"/><alarm_trigger_level value="2097152"/></variable>'
                '</config>')
PERFMON_SR = '<config><variable><name value="physical_utilisation"/><alarm_trigger_level value="0.8"/></variable></config>'


def datetime_of(epoch):
    """A XAPI datetime for a POSIX time."""
    return DateTime(time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime(epoch)))


class PoolBuilder:
    """Fills a :class:`Database` with a pool of ``hosts`` hosts and ``vms`` user VMs.

    :param now: the build time (POSIX seconds), default the current time.
    :param internals: also build what a real pool has that clients of the simulator did not
        expect before: the hidden VHD base copies (unmanaged VDIs, the ``vhd-parent`` of
        snapshots and their disks), and what ``monitoring`` builds.
    :param monitoring: ``other_config:perfmon`` on some VMs, the master and the shared SR (so
        perfmon raises alarms by itself), and ALARM messages from before the build, as a pool
        that has been watched for a while has them.
    """

    def __init__(self, db, disks, seed, hosts=3, vms=50, now=None, internals=False, monitoring=False):
        self.internals = internals
        self.monitoring = monitoring or internals
        self.db = db
        self.disks = disks  # vdi ref -> DiskContent factory registry (see Simulator)
        self.seed = seed
        self.rng = random.Random(seed)
        self.hosts, self.vms = max(1, hosts), vms
        self.now = int(time.time() if now is None else now)
        self.host_refs, self.local_srs, self.host_info = [], {}, {}
        self.networks = {}
        self.templates = {}  # name -> ref
        self.vif_networks = []
        self.gpu_pgpus = []  # (host, pgpu) of GRID GPUs
        self.vgpu_types = {}
        self.vgpu_room = {}  # pgpu -> free vGPU slots of the K240Q type
        self.agents = {}  # VM ref -> the guest metrics its agent reports (VMs with tools)
        self._nvram = [base64.b64encode(random.Random(f"{seed}:nvram:{i}").randbytes(96)).decode()
                       for i in range(8)]

    def create(self, xapi_class, **fields):
        return self.db.create(xapi_class, fields, track=False)

    def update(self, xapi_class, ref, **fields):
        return self.db.update(xapi_class, ref, track=False, **fields)

    def at(self, seconds_ago):
        return datetime_of(self.now - seconds_ago)

    def _mac(self):
        h = "%010x" % self.rng.getrandbits(40)
        return f"02:{h[0:2]}:{h[2:4]}:{h[4:6]}:{h[6:8]}:{h[8:10]}"

    # the whole pool -------------------------------------------------------------------

    def build(self):
        collecting = gc.isenabled()
        gc.disable()  # a million young objects that all live: collections would only cost
        try:
            return self._build()
        finally:
            if collecting:
                gc.enable()

    def _build(self):
        self._storage_types()
        self._hosts()
        self._gpus()
        shared, iso, tools = self._shared_storage()
        self.shared_sr, self.iso_sr, self.tools_sr = shared, iso, tools
        self._networks()
        pool = self._pool(shared)
        self._templates()
        for index in range(self.vms):
            self._vm(index)
        self._custom_templates()
        self._finish_hosts()
        self._finish_srs()
        self._updates()
        self._messages()
        self._tasks()
        self._alarm_history()  # last: the records before it are the same with or without it
        return pool

    # storage drivers ----------------------------------------------------------------

    def _storage_types(self):
        for sm_type, label, description, vendor, driver, config, caps in catalog.SM_DRIVERS:
            capabilities = catalog.sm_capabilities(caps)
            features = catalog.sm_feature_versions(caps)
            self.create("SM", name_label=label, name_description=description, type=sm_type, vendor=vendor,
                        copyright="(C) 2008 Citrix Systems Inc" if vendor.startswith("Citrix") else "(C) Vates SAS",
                        version="1.0", required_api_version="1.0", configuration=dict(config),
                        capabilities=capabilities, features=features,
                        driver_filename=f"/opt/xensource/sm/{driver}",
                        required_cluster_stack=[])

    # hosts ----------------------------------------------------------------------------

    def _hosts(self):
        rng = self.rng
        for index in range(self.hosts):
            name = f"xcp-host-{index + 1:02d}"
            address = f"127.0.0.{index + 1}"
            uptime = rng.randint(3, 60) * DAY + rng.randrange(DAY)
            boot = self.now - uptime
            model = catalog.HOST_MODELS[index % len(catalog.HOST_MODELS)]
            gpu_host = index % 3 == 1
            iqn = f"iqn.2024-03.org.example:{rng.getrandbits(32):08x}"
            other = {"boot_time": str(boot), "agent_start_time": str(boot + 95 + rng.randrange(30)),
                     "iscsi_iqn": iqn, "multipathing": "true" if index % 2 == 0 else "false",
                     "multipathhandle": "dmp"}
            if index == 0 and self.monitoring:
                other["perfmon"] = PERFMON_HOST
            metrics = self.create("host_metrics", memory_total=256 * GiB, memory_free=128 * GiB, live=True,
                                  last_updated=self.at(rng.randrange(5)))
            cpu_info = {"cpu_count": str(HOST_CPUS), "socket_count": "2", "threads_per_core": "2",
                        "vendor": catalog.CPU["vendor"], "speed": f"{catalog.CPU['speed']}.000",
                        "modelname": catalog.CPU["modelname"], "family": str(catalog.CPU["family"]),
                        "model": str(catalog.CPU["model"]), "stepping": catalog.CPU["stepping"],
                        "flags": catalog.CPU["flags"], "features_pv": catalog.CPU["features_pv"],
                        "features_hvm": catalog.CPU["features_hvm"],
                        "features_pv_host": catalog.CPU["features_pv"],
                        "features_hvm_host": catalog.CPU["features_hvm"]}
            host = self.create(
                "host", name_label=name, name_description="Default install", hostname=name,
                address=address, enabled=True, metrics=metrics, API_version_major=2, API_version_minor=21,
                API_version_vendor="XenSource", API_version_vendor_implementation={},
                software_version=dict(SOFTWARE_VERSION, hostname=name),
                cpu_info=cpu_info, cpu_configuration={}, sched_policy="credit",
                supported_bootloaders=["pygrub", "eliloader"],
                capabilities=["xen-3.0-x86_64", "hvm-3.0-x86_32", "hvm-3.0-x86_32p", "hvm-3.0-x86_64"],
                license_params={"restrict_zstd_export": "false", "restrict_vtpm": "false", "sku_type": "xcp-ng",
                                "sku_marketing_name": "XCP-ng", "expiry": "20380119T03:14:07Z", "grace": "no",
                                "productcode": "", "serialnumber": "", "version": "", "name": "", "company": ""},
                license_server={"address": "localhost", "port": "27000"}, edition="xcp-ng", editions=["xcp-ng"],
                other_config=other, logging={} if index else {"syslog_destination": "syslog.example.org"},
                bios_strings={"bios-vendor": model["vendor"], "bios-version": model["bios"],
                              "system-manufacturer": model["vendor"], "system-product-name": model["product"],
                              "system-version": "", "system-serial-number": f"{rng.getrandbits(28):07X}",
                              "baseboard-manufacturer": model["vendor"], "hp-rombios": "", "oem-1": "Xen",
                              "oem-2": "MS_VM_CERT/SHA1/bdbeb6e0a816d43fa6d3fe8aaef04c2bad9d3e3d"},
                chipset_info={"iommu": "true" if gpu_host or index % 2 == 0 else "false"},
                iscsi_iqn=iqn, multipathing=index % 2 == 0,
                power_on_mode="IPMI" if index == 0 else "",
                power_on_config={"power_on_ip": "10.0.0.201", "power_on_user": "root"} if index == 0 else {},
                memory_overhead=1 * GiB, ssl_legacy=False, https_only=False, tls_verification_enabled=True,
                virtual_hardware_platform_versions=[0, 1, 2], display="enabled",
                guest_VCPUs_params={}, latest_synced_updates_applied="unknown",
            )
            for number in range(HOST_CPUS):
                self.create("host_cpu", host=host, number=number, vendor=catalog.CPU["vendor"],
                            speed=catalog.CPU["speed"], modelname=catalog.CPU["modelname"],
                            family=catalog.CPU["family"], model=catalog.CPU["model"],
                            stepping=catalog.CPU["stepping"], flags=catalog.CPU["flags"],
                            features=catalog.CPU["features"], utilisation=0.0)
            self.host_refs.append(host)
            self.host_info[host] = {"index": index, "boot": boot, "address": address, "gpu": gpu_host,
                                    "name": name, "load": DOM0_MEMORY, "pcis": {}}
            self._control_domain(host, name, boot)
            self._host_pcis(host, index, gpu_host)
            self._certificates(host, name, boot)
            self._host_storage(host, name, index)

    def _control_domain(self, host, name, boot):
        metrics = self.create("VM_metrics", memory_actual=DOM0_MEMORY, VCPUs_number=HOST_CPUS,
                              VCPUs_utilisation={}, VCPUs_CPU={}, VCPUs_params={}, VCPUs_flags={}, state=[],
                              start_time=datetime_of(boot), install_time=datetime_of(boot - 30 * DAY),
                              last_updated=DateTime(EPOCH), hvm=False, current_domain_type="pv")
        dom0 = self.create(
            "VM", name_label=f"Control domain on host: {name}", name_description="The domain which manages "
            "physical devices and manages other domains", is_control_domain=True, power_state="Running",
            resident_on=host, affinity=host, metrics=metrics, memory_static_max=DOM0_MEMORY,
            memory_dynamic_max=DOM0_MEMORY, memory_dynamic_min=DOM0_MEMORY, memory_static_min=DOM0_MEMORY,
            memory_target=DOM0_MEMORY, VCPUs_max=HOST_CPUS, VCPUs_at_startup=HOST_CPUS, VCPUs_params={},
            domid=0, domain_type="pv", user_version=1, is_a_template=False, actions_after_shutdown="destroy",
            actions_after_reboot="restart", actions_after_crash="restart", PV_bootloader="", PV_kernel="",
            PV_ramdisk="", PV_args="", PV_bootloader_args="", PV_legacy_args="", HVM_boot_policy="",
            HVM_boot_params={}, platform={}, PCI_bus="", other_config={"is_system_domain": "true"},
            domarch="x64", recommendations="", allowed_operations=[],
        )
        self.update("host", host, control_domain=dom0)
        address = self.host_info[host]["address"]
        for protocol in ("rfb", "vt100"):
            uuid = self.db.new_uuid()
            self.create("console", uuid=uuid, protocol=protocol, VM=dom0, other_config={},
                        location=f"https://{address}/console?uuid={uuid}")

    def _host_pcis(self, host, index, gpu_host):
        info = self.host_info[host]
        storage = catalog.PCI_NVME if index % 3 == 2 else catalog.PCI_STORAGE
        self.create("PCI", host=host, dependencies=[], other_config={}, **storage)
        for device, pci_id, _vid, _did, vendor, name, driver, _speed in catalog.NICS:
            info["pcis"][device] = self.create(
                "PCI", host=host, class_name="Ethernet controller", vendor_name=vendor, device_name=name,
                subsystem_vendor_name=vendor, subsystem_device_name=name, driver_name=driver, pci_id=pci_id,
                dependencies=[], other_config={})
        info["vga"] = self.create("PCI", host=host, dependencies=[], other_config={}, **catalog.PCI_VGA)
        info["gpus"] = [self.create("PCI", host=host, dependencies=[], other_config={}, **gpu)
                        for gpu in (catalog.PCI_GPUS if gpu_host else ())]

    def _certificates(self, host, name, boot):
        rng = self.rng
        for kind, days in (("host", 3650), ("host_internal", 3650)):
            issued = boot - rng.randint(30, 400) * DAY
            digest = hashlib.sha256(f"{self.seed}:{name}:{kind}".encode()).hexdigest().upper()
            self.create("Certificate", name="", type=kind, host=host, not_before=datetime_of(issued),
                        not_after=datetime_of(issued + days * DAY),
                        fingerprint=":".join(digest[i:i + 2] for i in range(0, 64, 2)))

    def _sr(self, label, sr_type, content_type, shared, hosts, size, description="", other_config=None,
            sm_config=None, device_config=None, **extra):
        sr = self.create("SR", name_label=label, name_description=description, type=sr_type,
                         content_type=content_type, shared=shared, physical_size=size, physical_utilisation=0,
                         virtual_allocation=0, other_config=other_config or {}, sm_config=sm_config or {},
                         allowed_operations=["forget", "VDI.create", "VDI.snapshot", "plug", "update", "destroy",
                                             "VDI.destroy", "scan", "VDI.clone", "VDI.resize", "unplug"]
                         if content_type == "user" else ["plug", "update", "scan", "unplug"], **extra)
        for host in hosts:
            config = dict(device_config or {})
            if sr_type in ("lvm", "ext") and not shared:
                config.setdefault("device", f"/dev/disk/by-id/scsi-36f4ee0806a1{self.rng.getrandbits(40):010x}-part3")
            self.create("PBD", SR=sr, host=host, currently_attached=True, device_config=config,
                        other_config={})
        return sr

    def _host_storage(self, host, name, index):
        local_type = "lvm" if index % 2 == 0 else "ext"
        sr = self._sr(f"Local storage on {name}", local_type, "user", False, [host], 1800 * GiB,
                      other_config={"i18n-original-value-name_label": "Local storage", "i18n-key": "local-storage"},
                      sm_config={"allocation": "thick" if local_type == "lvm" else "thin",
                                 "use_vhd": "true", "devserial": "scsi-36f4ee0806a1"})
        self.local_srs[host] = sr
        if local_type == "ext" and index == 1:  # IntelliCache on an ext local SR
            self.update("SR", sr, local_cache_enabled=True)
            self.update("host", host, local_cache_sr=sr)
        self._sr("Removable storage", "udev", "disk", False, [host], 0,
                 other_config={"i18n-original-value-name_label": "Removable storage", "i18n-key": "local-hotplug-disk"},
                 sm_config={"type": "cd"}, device_config={"location": "/dev/xapi/block"})
        dvd = self._sr("DVD drives", "udev", "iso", False, [host], 0,
                       other_config={"i18n-original-value-name_label": "DVD drives", "i18n-key": "local-hotplug-cd"},
                       sm_config={"type": "cd"}, device_config={"location": "/dev/xapi/cd"})
        self.create("VDI", name_label="SCSI 0:0:0:0", name_description="HL-DT-ST DVD+-RW GTA0N", SR=dvd,
                    virtual_size=0, physical_utilisation=0, type="user", read_only=True, sharable=True,
                    managed=True, location="/dev/xapi/cd/sr0", missing=False, storage_lock=False,
                    other_config={}, sm_config={"hotplugged_at": str(self.host_info[host]["boot"])})

    # GPUs ---------------------------------------------------------------------------------

    def _gpus(self):
        types = {}
        for model, vendor, fb, heads, rx, ry, impl, ident, _room in catalog.VGPU_TYPES:
            if model != "passthrough" and not any(i["gpu"] for i in self.host_info.values()):
                continue
            types[model] = self.create("VGPU_type", vendor_name=vendor, model_name=model, framebuffer_size=fb,
                                       max_heads=heads, max_resolution_x=rx, max_resolution_y=ry,
                                       implementation=impl, identifier=ident, experimental=False,
                                       compatible_types_in_vm=[])
        self.vgpu_types = types
        passthrough = types["passthrough"]
        vga_group = self.create("GPU_group", name_label=f"Group of {catalog.PCI_VGA['vendor_name']} "
                                f"{catalog.PCI_VGA['device_name']} GPUs", GPU_types=[catalog.VGA_TYPE],
                                other_config={}, allocation_algorithm="depth_first",
                                supported_VGPU_types=[passthrough], enabled_VGPU_types=[passthrough])
        vga_pgpus = []
        for host in self.host_refs:
            info = self.host_info[host]
            vga_pgpus.append(self.create(
                "PGPU", PCI=info["vga"], GPU_group=vga_group, host=host, other_config={},
                supported_VGPU_types=[passthrough], enabled_VGPU_types=[passthrough],
                supported_VGPU_max_capacities={passthrough: 1}, dom0_access="enabled",
                is_system_display_device=True, compatibility_metadata={}))
        grid = [t for name, t in types.items() if name != "passthrough"]
        grid_pgpus, grid_group = [], None
        if grid:
            grid_group = self.create("GPU_group", name_label=f"Group of NVIDIA Corporation GK104GL [GRID K2] GPUs",
                                     GPU_types=[catalog.GPU_TYPE], other_config={},
                                     allocation_algorithm="breadth_first",
                                     supported_VGPU_types=[passthrough, *grid], enabled_VGPU_types=grid)
            rooms = {types[v[0]]: v[-1] for v in catalog.VGPU_TYPES if v[0] in types}
            for host in self.host_refs:
                for pci in self.host_info[host]["gpus"]:
                    pgpu = self.create(
                        "PGPU", PCI=pci, GPU_group=grid_group, host=host, other_config={},
                        supported_VGPU_types=[passthrough, *grid], enabled_VGPU_types=grid,
                        supported_VGPU_max_capacities={t: rooms[t] for t in [passthrough, *grid]},
                        dom0_access="disabled", is_system_display_device=False, compatibility_metadata={})
                    grid_pgpus.append(pgpu)
                    self.gpu_pgpus.append((host, pgpu))
                    self.vgpu_room[pgpu] = rooms[types["GRID K240Q"]]
        self.grid_group = grid_group
        self.update("VGPU_type", passthrough, supported_on_PGPUs=vga_pgpus + grid_pgpus, enabled_on_PGPUs=vga_pgpus,
                    supported_on_GPU_groups=[vga_group] + ([grid_group] if grid_group else []),
                    enabled_on_GPU_groups=[vga_group], compatible_types_in_vm=[])
        for vgpu_type in grid:
            self.update("VGPU_type", vgpu_type, supported_on_PGPUs=list(grid_pgpus), enabled_on_PGPUs=list(grid_pgpus),
                        supported_on_GPU_groups=[grid_group], enabled_on_GPU_groups=[grid_group],
                        compatible_types_in_vm=[vgpu_type])

    # shared storage -------------------------------------------------------------------

    def _shared_storage(self):
        hosts = self.host_refs
        shared = self._sr("NFS shared storage", "nfs", "user", True, hosts, 20 * 1024 * GiB,
                          description="NFS SR [nfs.example.org:/export/xcp]",
                          other_config={"auto-scan": "true", **({"perfmon": PERFMON_SR} if self.monitoring else {})},
                          device_config={"server": "nfs.example.org", "serverpath": "/export/xcp",
                                         "nfsversion": "4.1"})
        iso = self._sr("ISO library", "iso", "iso", True, hosts, 2 * 1024 * GiB,
                       description="NFS ISO Library [nfs.example.org:/export/iso]",
                       sm_config={"iso_type": "nfs_iso"}, other_config={"auto-scan": "true"},
                       device_config={"location": "nfs.example.org:/export/iso", "type": "nfs_iso"})
        for name in catalog.ISO_IMAGES:
            size = (700 + self.rng.randrange(5000)) * MiB
            self.create("VDI", name_label=name, SR=iso, virtual_size=size, physical_utilisation=size,
                        type="user", read_only=True, managed=True, sharable=True, location=name, missing=False,
                        storage_lock=False, other_config={}, sm_config={})
        tools = self._sr("XCP-ng Tools", "iso", "iso", True, hosts, 0, is_tools_sr=True,
                         description="XCP-ng Tools ISOs",
                         other_config={"xensource_internal": "true", "i18n-key": "xenserver-tools",
                                       "i18n-original-value-name_label": "XCP-ng Tools",
                                       "i18n-original-value-name_description": "XCP-ng Tools ISOs"},
                         sm_config={}, device_config={"location": "/opt/xensource/packages/iso",
                                                      "legacy_mode": "true"})
        self.tools_iso = self.create("VDI", name_label="guest-tools.iso", name_description="", SR=tools,
                                     virtual_size=62 * MiB, physical_utilisation=62 * MiB, type="user",
                                     read_only=True, managed=True, sharable=True, location="guest-tools.iso",
                                     is_tools_iso=True, missing=False, storage_lock=False, other_config={},
                                     sm_config={})
        self.iscsi_sr = self._sr(
            "iSCSI SAN", "lvmoiscsi", "user", True, hosts, 8 * 1024 * GiB,
            description="iSCSI SR [10.100.0.50 (iqn.2024-01.org.example:storage.lun1; LUN 1)]",
            sm_config={"allocation": "thick", "use_vhd": "true", "multipathable": "true"},
            device_config={"target": "10.100.0.50", "port": "3260",
                           "targetIQN": "iqn.2024-01.org.example:storage.lun1",
                           "SCSIid": "36001405a9c1e2d3f4b5a6978695a4b3c", "chapuser": "xcp",
                           "chappassword": "s3cr3t-chap", "multihomelist": "10.100.0.50:3260"})
        self.isos = [r for r, v in self.db.tables["VDI"].items() if v["SR"] == iso]
        return shared, iso, tools

    # networks -----------------------------------------------------------------------------

    def _network(self, key, label, bridge, mtu=1500, **fields):
        fields.setdefault("other_config", {})
        ref = self.create("network", name_label=label, bridge=bridge, MTU=mtu, managed=True, assigned_ips={},
                          **fields)
        self.networks[key] = ref
        return ref

    def _networks(self):
        rng = self.rng
        self._network("eth0", "Pool-wide network associated with eth0", "xenbr0",
                      other_config={"automatic": "true"}, purpose=["nbd"])
        for device, bridge in (("eth1", "xenbr1"), ("eth2", "xenbr2"), ("eth3", "xenbr3")):
            self._network(device, f"Pool-wide network associated with {device}", bridge,
                          other_config={"automatic": "true"})
        self._network("bond0", "Bond 1+2", "xapi1", 9000, other_config={"automatic": "false", "create_in_progress": "false"})
        self._network("vlan100", "VLAN 100 (storage)", "xapi2", 9000, default_locking_mode="unlocked")
        self._network("vlan20", "VLAN 20 (DMZ)", "xapi3", 1500, default_locking_mode="disabled")
        self._network("internal", "Host internal management network", "xenapi", 1500,
                      name_description="Network on which guests will be assigned a private link-local IP "
                                       "address which can be used to talk XenAPI",
                      other_config={"is_guest_installer_network": "true",
                                    "is_host_internal_management_network": "true",
                                    "ip_begin": "169.254.0.1", "ip_end": "169.254.255.254",
                                    "netmask": "255.255.0.0"})
        self.vif_networks = [self.networks["eth0"], self.networks["bond0"], self.networks["vlan20"]]
        for h_index, host in enumerate(self.host_refs):
            info = self.host_info[host]
            pifs = {}
            for device, pci_id, vid, did, vendor, name, _driver, speed in catalog.NICS:
                carrier = not (device == "eth3" and h_index % 2 == 1)  # a spare NIC with no cable
                pifs[device] = self._pif(host, device, self.networks[device], self._mac(), info,
                                         physical=True, pci=info["pcis"][device], carrier=carrier, speed=speed,
                                         metrics_fields={"vendor_id": vid, "device_id": did,
                                                         "vendor_name": vendor, "device_name": name,
                                                         "pci_bus_path": pci_id})
            mgmt = info["address"]
            self.update("PIF", pifs["eth0"], management=True, IP=mgmt, netmask="255.255.255.0",
                        gateway="127.0.0.254", DNS="127.0.0.53", ip_configuration_mode="Static",
                        disallow_unplug=True)
            if h_index % 2:
                self.update("PIF", pifs["eth3"], currently_attached=False)
            # bond0 = eth1 + eth2 (the master PIF carries the bond's network)
            master = self._pif(host, "bond0", self.networks["bond0"], self.db.record("PIF", pifs["eth1"])["MAC"],
                               info, physical=False, carrier=True, speed=11000, mtu=9000,
                               metrics_fields={"vendor_name": "", "device_name": "", "pci_bus_path": "N/A"})
            mode = "lacp" if h_index % 3 == 2 else "active-backup"
            bond = self.create("Bond", master=master, other_config={}, mode=mode, links_up=2, auto_update_mac=True,
                               properties={"hashing_algorithm": "tcpudp_ports", "lacp-time": "slow"}
                               if mode == "lacp" else {})
            for device in ("eth1", "eth2"):
                self.update("PIF", pifs[device], bond_slave_of=bond)
            self.update("Bond", bond, primary_slave=pifs["eth1"])
            # VLANs on the bond
            for key, tag, ip in (("vlan100", 100, f"10.100.0.{11 + h_index}"), ("vlan20", 20, "")):
                vlan = self.create("VLAN", tagged_PIF=master, tag=tag, other_config={})
                untagged = self._pif(host, "bond0", self.networks[key], self.db.record("PIF", master)["MAC"], info,
                                     physical=False, carrier=True, speed=11000, vlan=tag,
                                     mtu=9000 if tag == 100 else 1500,
                                     metrics_fields={"vendor_name": "", "device_name": "", "pci_bus_path": "N/A"})
                if ip:
                    self.update("PIF", untagged, IP=ip, netmask="255.255.255.0", ip_configuration_mode="Static",
                                ipv6_configuration_mode="Autoconf",
                                IPv6=[f"fe80::{rng.getrandbits(16):x}:{rng.getrandbits(16):x}/64"])
                self.update("PIF", untagged, VLAN_master_of=vlan)
                self.update("VLAN", vlan, untagged_PIF=untagged)
            info["pifs"] = pifs

    def _pif(self, host, device, network, mac, info, *, physical, carrier, speed, pci=NULL_REF, vlan=-1, mtu=1500,
             metrics_fields=None):
        metrics = self.create("PIF_metrics", carrier=carrier, speed=speed if carrier else 0, duplex=carrier,
                              vendor_id=(metrics_fields or {}).get("vendor_id", ""),
                              device_id=(metrics_fields or {}).get("device_id", ""),
                              vendor_name=(metrics_fields or {}).get("vendor_name", ""),
                              device_name=(metrics_fields or {}).get("device_name", ""),
                              pci_bus_path=(metrics_fields or {}).get("pci_bus_path", ""),
                              last_updated=self.at(self.rng.randrange(5)), other_config={})
        return self.create("PIF", device=device, host=host, network=network, MAC=mac, MTU=mtu, VLAN=vlan,
                           physical=physical, currently_attached=True, management=False, metrics=metrics,
                           ip_configuration_mode="None", ipv6_configuration_mode="None", PCI=pci,
                           properties={"gro": "on"} if physical else {},
                           capabilities=["fcoe"] if physical and speed >= 10000 else [],
                           igmp_snooping_status="inactive" if physical else "unknown",
                           primary_address_type="IPv4", other_config={})

    # the pool record --------------------------------------------------------------------

    def _pool(self, shared):
        rng = self.rng
        ha = self.hosts >= 3 and rng.random() < 0.6
        master = self.host_refs[0]
        fields = {}
        if ha:
            statefile = self.create("VDI", name_label="Statefile for HA", name_description="Used for storage "
                                    "heartbeating", SR=shared, virtual_size=4 * MiB, physical_utilisation=4 * MiB,
                                    type="ha_statefile", read_only=False, managed=True, sharable=True,
                                    missing=False, storage_lock=False, other_config={}, sm_config={})
            redo = self.create("VDI", name_label="Metadata redo-log", name_description="Used when HA is disabled, "
                               "while extra security is still desired", SR=shared, virtual_size=4 * MiB,
                               physical_utilisation=4 * MiB, type="redo_log", read_only=False, managed=True,
                               sharable=True, missing=False, storage_lock=False, other_config={}, sm_config={})
            fields = {"ha_enabled": True, "ha_configuration": {"timeout": "60"}, "ha_statefiles": [statefile],
                      "ha_host_failures_to_tolerate": 1, "ha_plan_exists_for": 1, "ha_allow_overcommit": False,
                      "ha_overcommitted": False, "ha_cluster_stack": "xhad", "redo_log_enabled": True,
                      "redo_log_vdi": redo}
            for host in self.host_refs:
                peers = [self.host_info[h]["address"] for h in self.host_refs if h != host]
                self.update("host", host, ha_statefiles=[statefile], ha_network_peers=peers)
        self.ha = ha
        cpu = catalog.CPU
        return self.create(
            "pool", name_label="Simulated pool", name_description="xorest XAPI simulator", master=master,
            default_SR=shared, suspend_image_SR=shared, crash_dump_SR=shared,
            other_config={"auto_poweron": "false", "memory-ratio-hvm": "0.25", "memory-ratio-pv": "0.25",
                          "cpuid_feature_mask": "ffffff7f-ffffffff-ffffffff-ffffffff"},
            restrictions=dict(RESTRICTIONS), tags=["production"] if ha else [],
            cpu_info={"cpu_count": str(HOST_CPUS * self.hosts), "socket_count": str(2 * self.hosts),
                      "vendor": cpu["vendor"], "features_pv": cpu["features_pv"], "features_hvm": cpu["features_hvm"],
                      "features_pv_host": cpu["features_pv"], "features_hvm_host": cpu["features_hvm"]},
            guest_agent_config={}, gui_config={}, health_check_config={}, blobs={}, metadata_VDIs=[],
            migration_compression=False, tls_verification_enabled=True, coordinator_bias=True,
            allowed_operations=["ha_disable", "cluster_create", "designate_new_master"] if ha
            else ["ha_enable", "cluster_create", "designate_new_master"],
            **fields,
        )

    # templates ----------------------------------------------------------------------------

    def _templates(self):
        for name, label, distro, disks, (mem_min, mem_max), uefi, bios, secure, linux in catalog.TEMPLATES:
            firmware = "uefi" if bios == "no" else "bios"
            other = {"default_template": "true", "disks": catalog._disks(*disks),
                     "install-methods": LINUX_METHODS if linux else "cdrom",
                     "mac_seed": self.db.new_uuid()}
            if linux:
                other.update({"linux_template": "true", "install-arch": "amd64", "install-distro": distro,
                              "install-repository": ""} if distro else {"linux_template": "true"})
            platform = {"timeoffset": "0", "device-model": "qemu-upstream-" + ("uefi" if firmware == "uefi" else "compat"),
                        "viridian": "false" if linux else "true", "nx": "true", "acpi": "1", "apic": "true",
                        "pae": "true", "hpet": "true", "vga": "std", "videoram": "8"}
            if not linux and linux is not None:
                platform.update({"device_id": "0002", "viridian_reference_tsc": "true",
                                 "viridian_time_ref_count": "true", "viridian_apic_assist": "true",
                                 "viridian_crash_ctl": "true", "viridian_stimer": "true"})
                if label == "windows-11":
                    platform.update(secureboot="true", vtpm="true")
            metrics = self.create("VM_metrics", install_time=self.at(200 * DAY), start_time=DateTime(EPOCH),
                                  last_updated=DateTime(EPOCH), VCPUs_CPU={}, VCPUs_params={}, VCPUs_flags={},
                                  state=[], current_domain_type="unspecified")
            self.templates[name] = self.create(
                "VM", name_label=name, name_description=f"Template which allows VM installation from install media",
                is_a_template=True, is_default_template=True, reference_label=label, other_config=other,
                memory_static_max=mem_max * GiB, memory_dynamic_max=mem_max * GiB,
                memory_dynamic_min=mem_min * GiB, memory_static_min=mem_min * GiB // 2 if linux else mem_min * GiB,
                VCPUs_max=2 if linux else 4, VCPUs_at_startup=2 if linux else 4, VCPUs_params={}, domain_type="hvm",
                HVM_boot_policy="BIOS order", HVM_boot_params={"order": "dc", "firmware": firmware},
                platform=platform, power_state="Halted", metrics=metrics, user_version=1, domid=-1,
                actions_after_shutdown="destroy", actions_after_reboot="restart", actions_after_crash="restart",
                recommendations=catalog._restrictions(uefi, bios, secure, vendor_device="true" if linux is False
                                                      else "false"),
                PV_bootloader="", PV_kernel="", PV_ramdisk="", PV_args="", PV_bootloader_args="", PV_legacy_args="",
                PCI_bus="", domarch="", affinity=NULL_REF, resident_on=NULL_REF, allowed_operations=["clone", "copy",
                                                                                                      "export"],
                has_vendor_device=linux is False, hardware_platform_version=2 if linux is False else 0,
            )

    def _custom_templates(self):
        """A couple of templates made from VMs (not default: with disks of their own)."""
        for index, name in enumerate(("Debian 12 golden image", "Windows Server 2022 hardened")):
            if self.vms == 0:
                return
            base = self.templates["Debian Bookworm 12" if index == 0 else "Windows Server 2022 (64-bit)"]
            source = self.db.record("VM", base)
            metrics = self.create("VM_metrics", install_time=self.at((90 + index * 30) * DAY),
                                  start_time=self.at((91 + index * 30) * DAY), last_updated=DateTime(EPOCH),
                                  VCPUs_CPU={}, VCPUs_params={}, VCPUs_flags={}, state=[],
                                  current_domain_type="unspecified")
            other = {k: v for k, v in source["other_config"].items() if k not in ("default_template", "disks")}
            other["base_template_name"] = source["name_label"]
            template = self.create(
                "VM", name_label=name, name_description="Made by the infrastructure team", is_a_template=True,
                is_default_template=False, other_config=other, memory_static_max=source["memory_static_max"],
                memory_dynamic_max=source["memory_dynamic_max"], memory_dynamic_min=source["memory_dynamic_min"],
                memory_static_min=source["memory_static_min"], VCPUs_max=source["VCPUs_max"],
                VCPUs_at_startup=source["VCPUs_at_startup"], VCPUs_params={}, domain_type="hvm",
                HVM_boot_policy="BIOS order", HVM_boot_params=dict(source["HVM_boot_params"]),
                platform=dict(source["platform"]), power_state="Halted", metrics=metrics, user_version=1,
                domid=-1, actions_after_shutdown="destroy", actions_after_reboot="restart",
                actions_after_crash="restart", recommendations=source["recommendations"], PV_bootloader="",
                PV_kernel="", PV_ramdisk="", PV_args="", PV_bootloader_args="", PV_legacy_args="", PCI_bus="",
                domarch="", affinity=NULL_REF, resident_on=NULL_REF, allowed_operations=["clone", "copy", "export"],
                bios_strings=VM_BIOS_STRINGS, tags=["golden"])
            self._disk(template, self.shared_sr, 0, f"{name} disk 0", attached=False, device="xvda")
            self._cd(template, attached=False, device="xvdd")
            self.create("VIF", VM=template, network=self.networks["eth0"], device="0", MAC=self._mac(), MTU=1500,
                        currently_attached=False, locking_mode="network_default", other_config={},
                        qos_algorithm_type="", qos_algorithm_params={}, qos_supported_algorithms=["ratelimit"],
                        runtime_properties={}, status_code=0, status_detail="", MAC_autogenerated=True,
                        ipv4_configuration_mode="None", ipv6_configuration_mode="None")

    # VMs ----------------------------------------------------------------------------------

    def _vm(self, index):
        rng = self.rng
        role, env = rng.choice(ROLES), rng.choice(ENVS)
        guest = rng.choices(catalog.GUESTS, cum_weights=GUEST_WEIGHTS)[0]
        windows = guest["agent"] == "windows"
        host = self.host_refs[index] if index < self.hosts else rng.choice(self.host_refs)
        info = self.host_info[host]
        state = rng.choices(POWER_STATES, cum_weights=POWER_WEIGHTS)[0]
        if index < self.hosts:
            covered = ("Halted", False)  # on its host's local storage, without pinning the host
        else:
            covered = COVERAGE[index - self.hosts] if index - self.hosts < len(COVERAGE) else None
        if covered:
            state = covered[0]
        running = state in ("Running", "Paused")
        memory = rng.choice((2, 4, 8, 16) if windows else (1, 2, 4, 8, 16)) * GiB
        cpus = rng.choice((2, 4, 8) if windows else (1, 2, 4, 8))
        label = f"{role}-{env}-{index:04d}"
        template = self.templates[guest["template"]]
        install = self.now - rng.randint(20, 900) * DAY
        # a halted VM may never have started (start_time at the epoch), or have run before
        ever_started = state != "Halted" or rng.random() < 0.15
        started = self.now - rng.randint(600, 45 * DAY) if ever_started else None
        info["load"] += memory if running else 0

        firmware = guest["firmware"]
        if firmware == "uefi" and rng.random() < 0.15:
            firmware = "bios"  # installed in BIOS mode anyway
        boot = {"order": "cdn"} if firmware is None else {"order": "cdn", "firmware": firmware}
        platform = {"timeoffset": "0", "device-model": "qemu-upstream-uefi" if firmware == "uefi"
                    else "qemu-upstream-compat", "viridian": "true" if windows else "false", "nx": "true",
                    "acpi": "1", "apic": "true", "pae": "true", "hpet": "true", "videoram": "8", "vga": "std"}
        if cpus > 1:
            platform["cores-per-socket"] = str(cpus if rng.random() < 0.6 else cpus // 2)
        vtpm = False
        if windows:
            platform.update({"device_id": "0002", "viridian_reference_tsc": "true", "viridian_time_ref_count": "true",
                             "viridian_apic_assist": "true", "viridian_crash_ctl": "true", "viridian_stimer": "true"})
            vtpm = firmware == "uefi" and (guest["template"] == "Windows 11" or rng.random() < 0.3)
        if firmware == "uefi":
            platform["secureboot"] = rng.choices(["true", "auto", "false"], [6, 1, 2])[0] if windows or \
                rng.random() < 0.5 else "false"
        if vtpm:
            platform["vtpm"] = "true"
        if role == "ci" and rng.random() < 0.5:
            platform["nested-virt"] = "true"
        other = {"base_template_name": guest["template"], "mac_seed": self.db.new_uuid(),
                 "auto_poweron": "true" if env == "prod" else "false"}
        if role == "db" and env == "prod":
            perfmon = PERFMON_VM_MEMORY
        else:
            perfmon = PERFMON_VM if rng.random() < 0.05 else None
        if perfmon and self.monitoring:  # what perfmon watches (its alarms surprised older clients)
            other["perfmon"] = perfmon
        ha_priority = ""
        if self.ha and env == "prod":
            ha_priority = "restart" if rng.random() < 0.7 else "best-effort"
        params = {"weight": "256"}
        if rng.random() < 0.08:
            params["cap"] = "50"
        tools = guest["agent"] is not None and rng.random() < 0.95

        metrics = self.create(
            "VM_metrics", memory_actual=memory if running else 0, VCPUs_number=cpus if running else 0,
            VCPUs_utilisation={}, VCPUs_CPU={}, VCPUs_params={}, VCPUs_flags={}, state=[],
            start_time=datetime_of(started) if started else DateTime(EPOCH), install_time=datetime_of(install),
            last_updated=DateTime(EPOCH), other_config={}, hvm=running, nested_virt="nested-virt" in platform
            and running, nomigrate=False, current_domain_type="hvm" if running else "unspecified")
        gm = NULL_REF
        tags = sorted({env, role} | ({"backup"} if rng.random() < 0.3 else set()))
        vm = self.create(
            "VM", name_label=label, name_description=f"{guest['name']} {role} server", power_state=state,
            resident_on=host if running else NULL_REF, affinity=host if rng.random() < 0.3 else NULL_REF,
            scheduled_to_be_resident_on=NULL_REF, metrics=metrics, guest_metrics=gm, tags=tags,
            memory_static_max=memory, memory_dynamic_max=memory, memory_dynamic_min=memory,
            memory_static_min=memory // 2 if not windows else memory, memory_target=memory if running else 0,
            memory_overhead=memory // 128 + 8 * MiB, VCPUs_max=cpus, VCPUs_at_startup=cpus, VCPUs_params=params,
            domain_type="hvm", HVM_boot_policy="BIOS order", HVM_boot_params=boot, HVM_shadow_multiplier=1.0,
            platform=platform, domid=index + 1 if running else -1, user_version=1, is_a_template=False,
            actions_after_shutdown="destroy", actions_after_reboot="restart", actions_after_crash="restart",
            PV_bootloader="", PV_kernel="", PV_ramdisk="", PV_args="", PV_bootloader_args="", PV_legacy_args="",
            PCI_bus="", domarch="", other_config=other, recommendations=self.db.record("VM", template)["recommendations"],
            xenstore_data=XENSTORE_DATA, bios_strings=VM_BIOS_STRINGS if ever_started else {},
            last_boot_CPU_flags={"vendor": catalog.CPU["vendor"], "features": catalog.CPU["features_hvm"]}
            if ever_started else {},
            NVRAM={"EFI-variables": self._nvram[index % len(self._nvram)]} if firmware == "uefi" and ever_started
            else {},
            has_vendor_device=windows, hardware_platform_version=2 if windows else 0,
            generation_id=f"{rng.getrandbits(63)}:{rng.getrandbits(63)}" if windows else "",
            ha_restart_priority=ha_priority, ha_always_run=ha_priority == "restart",
            blocked_operations={"destroy": "true"} if env == "prod" and role == "db" else {},
            allowed_operations=["snapshot", "clone", "copy", "export"],
        )
        sr = self.shared_sr if rng.random() < 0.7 else self.local_srs[host]
        if index < self.hosts:
            sr = self.local_srs[host]  # every host's local storage holds some VM's disks
        elif rng.random() < 0.08:
            sr = self.iscsi_sr
        if covered:
            sr = self.shared_sr if covered[1] else self.local_srs[host]
        devices = "abcefgh"
        disks = rng.choice((1, 1, 1, 2, 2, 3))
        vdis = []
        for position in range(disks):
            vdis.append(self._disk(vm, sr, position, f"{label} disk {position}", attached=running,
                                   device=f"xvd{devices[position]}" if ever_started else "",
                                   owner=position == 0))
        self._cd(vm, attached=running, device="xvdd" if ever_started else "", windows=windows)
        vifs = 1 if rng.random() < 0.75 else 2
        addresses = []
        for position in range(vifs):
            network = self.vif_networks[0] if position == 0 else rng.choice(self.vif_networks[1:])
            mac = self._mac()
            vif = self.create("VIF", VM=vm, network=network, device=str(position), MAC=mac,
                              MTU=self.db.record("network", network)["MTU"], currently_attached=running,
                              locking_mode="network_default", other_config={}, qos_algorithm_type="",
                              qos_algorithm_params={}, qos_supported_algorithms=["ratelimit"], runtime_properties={},
                              status_code=0, status_detail="", MAC_autogenerated=True,
                              ipv4_configuration_mode="None", ipv6_configuration_mode="None")
            if position == 1 and rng.random() < 0.2:
                self.update("VIF", vif, qos_algorithm_type="ratelimit", qos_algorithm_params={"kbps": "102400"},
                            other_config={"ethtool-tx": "off"})
            addresses.append((str(position), network, mac))
        if tools:
            report = self._guest_report(index, guest, addresses)
            self.agents[vm] = report  # what the agent reports each time the VM starts
            if state != "Halted":
                gm = self.create("VM_guest_metrics", **report, live=running,
                                 last_updated=self.at(rng.randrange(60)))
                self.update("VM", vm, guest_metrics=gm)
        if running:
            self._console(vm, info["address"])
        if vtpm:
            self.create("VTPM", VM=vm, backend=NULL_REF, persistence_backend="xapi", is_unique=False,
                        is_protected=False, allowed_operations=[] if running else ["destroy"],
                        current_operations={})
        if info["gpu"] and self.grid_group is not None and rng.random() < 0.12:
            self._vgpu(vm, host, running)
        if state == "Suspended":
            suspend = self.create("VDI", name_label=f"Suspend image", name_description=f"Suspend image of {label}",
                                  SR=self.shared_sr, virtual_size=memory + 16 * MiB,
                                  physical_utilisation=memory + 16 * MiB, type="suspend", read_only=False,
                                  managed=True, sharable=False, missing=False, storage_lock=False,
                                  other_config={}, sm_config={"vdi_type": "vhd"})
            self.update("VM", vm, suspend_VDI=suspend, suspend_SR=self.shared_sr,
                        last_booted_record="", domid=-1)
        snaps = rng.random()
        if snaps < 0.2:
            self._snapshot(vm, f"{label} before upgrade", rng.randint(2, 40) * DAY)
            if snaps < 0.04:
                self._snapshot(vm, f"{label} nightly", rng.randint(1, 20) * 3600)

    def _disk(self, vm, sr, position, label, *, attached, device, owner=False):
        size = self.rng.choice(DISK_SIZES)
        uuid = self.db.new_uuid()
        vdi = self.create("VDI", uuid=uuid, name_label=label, SR=sr, virtual_size=size,
                          physical_utilisation=size // 8, type="user", managed=True, sharable=False,
                          read_only=False, missing=False, storage_lock=False, location=uuid, other_config={},
                          sm_config={"image-format": "vhd", "vdi_type": "vhd"},
                          allowed_operations=["forget", "generate_config", "update", "resize", "destroy", "clone",
                                              "copy", "snapshot"])
        self.disks.create(vdi)
        self.create("VBD", VM=vm, VDI=vdi, type="Disk", mode="RW", userdevice=str(position), device=device,
                    bootable=position == 0, currently_attached=attached, empty=False, unpluggable=position != 0,
                    storage_lock=False, status_code=0, status_detail="", runtime_properties={},
                    other_config={"owner": ""} if owner else {}, qos_algorithm_type="", qos_algorithm_params={},
                    qos_supported_algorithms=[], allowed_operations=["attach", "unpause", "pause"]
                    if attached else ["attach"])
        return vdi

    def _cd(self, vm, *, attached, device, windows=False):
        rng = self.rng
        vdi, empty = NULL_REF, True
        pick = rng.random()
        if windows and pick < 0.1:
            vdi, empty = self.tools_iso, False
        elif pick < 0.12 and self.isos:
            vdi, empty = rng.choice(self.isos), False
        self.create("VBD", VM=vm, VDI=vdi, type="CD", mode="RO", userdevice="3", device=device, empty=empty,
                    bootable=False, currently_attached=attached, unpluggable=True, storage_lock=False, status_code=0,
                    status_detail="", runtime_properties={}, other_config={}, qos_algorithm_type="",
                    qos_algorithm_params={}, qos_supported_algorithms=[],
                    allowed_operations=["attach", "eject"] if not empty else ["attach", "insert"])

    def _console(self, vm, address):
        uuid = self.db.new_uuid()
        self.create("console", uuid=uuid, protocol="rfb", VM=vm, other_config={},
                    location=f"https://{address}/console?uuid={uuid}")

    def _guest_report(self, index, guest, addresses):
        """The guest metrics the VM's agent writes, keys as that agent writes them."""
        rng = self.rng
        agent = guest["agent"]
        networks = {}
        for device, network, mac in addresses:
            if network == self.networks["vlan20"]:
                ipv4 = f"192.168.20.{index % 250 + 2}"
            elif network == self.networks["bond0"]:
                ipv4 = f"172.16.{index // 250 % 250}.{index % 250 + 2}"
            else:
                ipv4 = f"10.{10 + index // 62500}.{index // 250 % 250}.{index % 250 + 2}"
            link_local = _link_local(mac)
            if agent == "xe-guest-utilities":
                networks[f"{device}/ip"] = ipv4  # the old key, next to its N/ipv4/0 alias
                networks[f"{device}/ipv4/0"] = ipv4
                networks[f"{device}/ipv6/0"] = link_local
            else:
                networks[f"{device}/ipv4/0"] = ipv4
                if device == "0" and rng.random() < 0.1:
                    networks[f"{device}/ipv4/1"] = f"10.250.{index // 250 % 250}.{index % 250 + 2}"
                networks[f"{device}/ipv6/0"] = link_local
                if agent == "windows" or rng.random() < 0.3:
                    networks[f"{device}/ipv6/1"] = f"2001:db8:{index // 65536:x}:{index % 65536:x}::{int(device) + 1:x}"
        versions = catalog.PV_DRIVERS[agent]
        version = versions[0] if rng.random() < 0.8 else rng.choice(versions)
        up_to_date = version is versions[0]
        return {"os_version": guest["os"], "PV_drivers_version": version, "PV_drivers_up_to_date": up_to_date,
                "PV_drivers_detected": True, "memory": {}, "disks": {}, "networks": networks,
                "other": catalog.GUEST_OTHER[agent], "other_config": {}, "can_use_hotplug_vbd": "yes",
                "can_use_hotplug_vif": "yes"}

    def _vgpu(self, vm, host, running):
        pgpus = [p for h, p in self.gpu_pgpus if h == host and self.vgpu_room.get(p, 0) > 0]
        vgpu_type = self.vgpu_types["GRID K240Q"]
        resident = NULL_REF
        if running:
            if not pgpus:
                return
            resident = pgpus[0]
            self.vgpu_room[resident] -= 1
        self.create("VGPU", VM=vm, GPU_group=self.grid_group, device="0", currently_attached=running,
                    other_config={}, type=vgpu_type, resident_on=resident, scheduled_to_be_resident_on=NULL_REF,
                    compatibility_metadata={}, extra_args="", PCI=NULL_REF)

    def _snapshot(self, vm, label, age):
        """A snapshot taken ``age`` seconds ago; with ``internals``, on a VHD chain as XAPI leaves
        it: the disk and its snapshot both have a hidden base copy (``managed`` false) as their
        ``vhd-parent``, the base copies of older snapshots further up the chain."""
        snapshot = self.snapshot(vm, label)
        when = self.at(age)
        self.update("VM", snapshot, snapshot_time=when)
        record = self.db.record("VM", snapshot)
        if record["metrics"] in self.db.tables["VM_metrics"]:
            source_metrics = self.db.record("VM_metrics", self.db.record("VM", vm)["metrics"])
            self.update("VM_metrics", record["metrics"], install_time=source_metrics["install_time"],
                        start_time=DateTime(EPOCH), last_updated=DateTime(EPOCH))
        for vbd in record["VBDs"]:
            vdi = self.db.record("VBD", vbd)["VDI"]
            if vdi == NULL_REF or self.db.record("VBD", vbd)["type"] != "Disk":
                continue
            snap = self.db.record("VDI", vdi)
            if not self.internals:
                self.update("VDI", vdi, snapshot_time=when, location=snap["uuid"])
                continue
            original = snap["snapshot_of"]
            source = self.db.record("VDI", original)
            parent = source["sm_config"].get("vhd-parent")
            size = source["virtual_size"]
            base_uuid = self.db.new_uuid()
            self.create("VDI", uuid=base_uuid, name_label="base copy", name_description="", SR=source["SR"],
                        virtual_size=size, physical_utilisation=size // 10, type="user", managed=False,
                        sharable=False, read_only=True, missing=False, storage_lock=False, location=base_uuid,
                        other_config={}, sm_config={"vdi_type": "vhd", **({"vhd-parent": parent} if parent else {})})
            self.update("VDI", vdi, snapshot_time=when, sm_config={**snap["sm_config"], "vhd-parent": base_uuid},
                        location=snap["uuid"], physical_utilisation=size // 64, allowed_operations=[
                            "forget", "generate_config", "update", "destroy", "clone", "copy", "snapshot"])
            self.update("VDI", original, sm_config={**source["sm_config"], "vhd-parent": base_uuid},
                        physical_utilisation=max(size // 64, source["physical_utilisation"] // 4))
        return snapshot

    def snapshot(self, vm, label):
        """A snapshot made at build time (same shape as VM.snapshot at run time)."""
        from .operations import snapshot_vm  # avoid an import cycle at module load

        return snapshot_vm(self.db, self.disks, vm, label, track=False)

    # totals -------------------------------------------------------------------------------

    def _finish_hosts(self):
        for host in self.host_refs:
            info = self.host_info[host]
            load = info["load"] + 1 * GiB
            total_gib = next((m for m in HOST_MEMORY if m * GiB >= load * 1.15), HOST_MEMORY[-1])
            total = total_gib * GiB
            record = self.db.record("host", host)
            self.update("host_metrics", record["metrics"], memory_total=total, memory_free=max(total - load, 256 * MiB))

    def _finish_srs(self):
        usage = {}
        for vdi in self.db.tables["VDI"].values():
            physical, virtual = usage.get(vdi["SR"], (0, 0))
            usage[vdi["SR"]] = (physical + vdi["physical_utilisation"], virtual + vdi["virtual_size"])
        for sr, record in self.db.tables["SR"].items():
            physical, virtual = usage.get(sr, (0, 0))
            if record["content_type"] == "user":
                size = record["physical_size"]
                while size < physical * 1.25:
                    size *= 2
                self.update("SR", sr, physical_size=size, physical_utilisation=physical + 4 * GiB,
                            virtual_allocation=virtual)
            else:
                self.update("SR", sr, physical_size=max(record["physical_size"], physical),
                            physical_utilisation=physical, virtual_allocation=virtual)

    def _updates(self):
        """A supplemental pack, as XAPI records one: the pool update, the pool patch XAPI
        derives from it and a host patch per host it is applied on."""
        applied = self.now - 120 * DAY
        update = self.create("pool_update", name_label="xcp-ng-linstor", name_description="XOSTOR: the LINSTOR "
                             "storage driver and its tools", version="1.2.0", installation_size=31457280,
                             key="RPM-GPG-KEY-XCP-ng-8.3", after_apply_guidance=["restartXAPI"], vdi=NULL_REF,
                             hosts=list(self.host_refs), other_config={}, enforce_homogeneity=False)
        patch = self.create("pool_patch", name_label="xcp-ng-linstor", name_description="XOSTOR: the LINSTOR "
                            "storage driver and its tools", version="1.2.0", size=0, pool_applied=True,
                            after_apply_guidance=["restartXAPI"], pool_update=update, other_config={})
        for host in self.host_refs:
            self.create("host_patch", name_label="xcp-ng-linstor", name_description="XOSTOR: the LINSTOR "
                        "storage driver and its tools", version="1.2.0", host=host, applied=True,
                        timestamp_applied=datetime_of(applied), size=0, pool_patch=patch, other_config={})
            self.update("host", host, updates=[update], updates_requiring_reboot=[])
        # the second host was patched since it booted: it needs a reboot (XCP-ng's rule, which
        # Xen Orchestra applies to other_config.rpm_patch_installation_time)
        for host in self.host_refs:
            info = self.host_info[host]
            other = dict(self.db.record("host", host)["other_config"])
            if info["index"] == 1:  # (a lone host waits for its updates)
                installed = info["boot"] + (self.now - info["boot"]) // 2
                # the toolstack restarted after the update; Xen waits for the reboot
                version = dict(self.db.record("host", host)["software_version"], xapi_build="24.19.3")
                self.update("host", host, software_version=version)
            else:
                installed = info["boot"] - self.rng.randint(1, 30) * DAY
            other["rpm_patch_installation_time"] = f"{installed}.{self.rng.randrange(1000):03d}"
            self.update("host", host, other_config=other)
            info["patched"] = installed

    def _alarm_history(self):
        """perfmon's past alarms about watched VMs, in its own body format (``monitoring``);
        from a random sequence of their own, so that the rest of the pool does not depend on
        them."""
        if not self.monitoring:
            return
        rng = random.Random(f"{self.seed}:alarms")
        watched = [r for r in self.db.tables["VM"].values() if "perfmon" in r["other_config"]
                   and r["power_state"] == "Running"]
        for vm in watched[:max(1, len(watched) // 3)]:
            value = 0.9 + rng.randrange(1, 10) / 100
            self.create("message", name="ALARM", priority=3, cls="VM", obj_uuid=vm["uuid"],
                        timestamp=self.at(rng.randint(1, 72) * 3600),
                        body=f"value: {value:f}\nconfig:\n<variable>\n\t<name value=\"cpu_usage\"/>\n\t"
                             f"<alarm_trigger_level value=\"0.9\"/>\n\t<alarm_trigger_period value=\"60\"/>\n\t"
                             f"<alarm_auto_inhibit_period value=\"3600\"/>\n</variable>\n")

    def _messages(self):
        rng = self.rng
        master = self.db.record("host", self.host_refs[0])
        for host in self.host_refs:
            record = self.db.record("host", host)
            self.create("message", name="HOST_CLOCK_SKEW_DETECTED", priority=3, cls="Host",
                        obj_uuid=record["uuid"], timestamp=self.at(rng.randint(1, 30) * 3600),
                        body="The clocks of the pool's hosts differ by 2 seconds")
        if self.ha:
            self.create("message", name="HA_POOL_OVERCOMMITTED", priority=3, cls="Pool",
                        obj_uuid=next(iter(self.db.tables["pool"].values()))["uuid"],
                        timestamp=self.at(rng.randint(2, 10) * DAY),
                        body="The pool cannot tolerate the configured number of host failures")
        self.create("message", name="PBD_PLUG_FAILED_ON_SERVER_START", priority=3, cls="Host",
                    obj_uuid=master["uuid"], timestamp=self.at(self.now - self.host_info[self.host_refs[0]]["boot"]),
                    body="")

    def _tasks(self):
        """What a real pool's task table holds: a couple of finished tasks clients did not
        destroy."""
        master = self.host_refs[0]
        for label, age in (("SR.scan", 40), ("VM.get_all_records_where", 12)):
            self.create("task", name_label=label, name_description="", created=self.at(age + 1),
                        finished=self.at(age), status="success", resident_on=master, progress=1.0,
                        type="<none/>", result="", error_info=[], other_config={}, allowed_operations=[],
                        current_operations={}, backtrace="()")


LINUX_METHODS = catalog.LINUX_INSTALL


def _link_local(mac):
    """The EUI-64 link-local IPv6 address of a MAC."""
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 2
    eui = octets[:3] + [0xFF, 0xFE] + octets[3:]
    groups = [f"{eui[i] << 8 | eui[i + 1]:x}" for i in range(0, 8, 2)]
    return "fe80::" + ":".join(groups)
