"""Seeded generation of a realistic pool: hosts, storage, networks, VMs, templates, snapshots."""
import random

from .disks import MiB
from .rpc import DateTime
from .state import NULL_REF, now

GiB = 1024 * MiB
OS_NAMES = ["Debian 12", "Ubuntu 24.04", "Rocky Linux 9", "Windows Server 2022", "Alpine 3.20",
            "CentOS Stream 9", "Windows 11"]
ROLES = ["web", "db", "cache", "mail", "ci", "dns", "proxy", "backup", "app", "monitor"]
ENVS = ["prod", "staging", "dev", "test"]
DEFAULT_TEMPLATES = ["Debian Bookworm 12", "Ubuntu Noble Numbat 24.04", "Rocky Linux 9",
                     "Windows Server 2022 (64-bit)", "Other install media"]
DISK_SIZES = [512 * MiB, 1 * GiB, 2 * GiB, 4 * GiB]


class PoolBuilder:
    """Fills a :class:`Database` with a pool of ``hosts`` hosts and about ``vms`` VMs."""

    def __init__(self, db, disks, seed, hosts=3, vms=50):
        self.db = db
        self.disks = disks  # vdi ref -> DiskContent factory registry (see Simulator)
        self.rng = random.Random(seed)
        self.hosts, self.vms = hosts, vms
        self.host_refs, self.networks, self.local_srs = [], [], {}

    def create(self, xapi_class, **fields):
        return self.db.create(xapi_class, fields, track=False)

    def build(self):
        self._storage_types()
        master = self._hosts()
        shared_sr, iso_sr = self._shared_storage()
        self._networks()
        pool = self.create(
            "pool", name_label="Simulated pool", name_description="xorest XAPI simulator",
            master=master, default_SR=shared_sr, suspend_image_SR=shared_sr,
            crash_dump_SR=shared_sr, restrictions={"restrict_zstd_export": "false",
                                                     "restrict_vtpm": "false"},
            cpu_info={"cpu_count": str(16 * self.hosts), "socket_count": str(2 * self.hosts)},
            other_config={"auto_poweron": "false"},
        )
        self._templates()
        for index in range(self.vms):
            self._vm(index, shared_sr, iso_sr)
        self._messages()
        return pool

    def _storage_types(self):
        for sm_type in ("lvm", "nfs", "iso"):
            self.create("SM", name_label=sm_type, type=sm_type, vendor="xorest",
                        capabilities=["VDI_CREATE", "VDI_SNAPSHOT", "VDI_CLONE"])

    def _hosts(self):
        for index in range(self.hosts):
            address = f"127.0.0.{index + 1}"
            metrics = self.create("host_metrics", memory_total=256 * GiB, memory_free=128 * GiB,
                                  live=True, last_updated=now())
            host = self.create(
                "host", name_label=f"xcp-host-{index + 1:02d}", hostname=f"xcp-host-{index + 1:02d}",
                address=address, enabled=True, metrics=metrics, API_version_major=2,
                API_version_minor=23, API_version_vendor="XenSource",
                software_version={"product_version": "8.3.0", "product_brand": "XCP-ng",
                                  "platform_version": "3.4.0", "build_number": "release/8.3",
                                  "xapi": "24.19", "xen": "4.17.4"},
                cpu_info={"cpu_count": "16", "socket_count": "2", "vendor": "GenuineIntel",
                          "modelname": "Intel(R) Xeon(R) Silver 4314 CPU @ 2.40GHz"},
                capabilities=["xen-3.0-x86_64", "hvm-3.0-x86_64"],
                license_params={"restrict_zstd_export": "false", "expiry": "20380119T03:14:07Z"},
                other_config={"boot_time": "1700000000", "agent_start_time": "1700000100"},
                power_on_mode="", memory_overhead=1 * GiB,
            )
            for number in range(4):
                self.create("host_cpu", host=host, number=number, vendor="GenuineIntel",
                            speed=2400, modelname="Intel(R) Xeon(R) Silver 4314", utilisation=0.1)
            dom0_metrics = self.create("VM_metrics", memory_actual=4 * GiB, VCPUs_number=4,
                                       start_time=now(), install_time=now())
            dom0 = self.create(
                "VM", name_label=f"Control domain on host: xcp-host-{index + 1:02d}",
                is_control_domain=True, power_state="Running", resident_on=host,
                metrics=dom0_metrics, memory_static_max=4 * GiB, memory_dynamic_max=4 * GiB,
                memory_dynamic_min=4 * GiB, memory_static_min=4 * GiB, VCPUs_max=4,
                VCPUs_at_startup=4, domid=0, domain_type="pv",
            )
            self.db.update("host", host, track=False, control_domain=dom0)
            sr = self._sr(f"Local storage on xcp-host-{index + 1:02d}", "lvm", "user", False, [host])
            self.local_srs[host] = sr
            self.host_refs.append(host)
        return self.host_refs[0]

    def _sr(self, label, sr_type, content_type, shared, hosts):
        sr = self.create("SR", name_label=label, type=sr_type, content_type=content_type,
                         shared=shared, physical_size=2048 * GiB, physical_utilisation=100 * GiB,
                         virtual_allocation=300 * GiB,
                         sm_config={"allocation": "thick" if sr_type == "lvm" else "thin"})
        for host in hosts:
            self.create("PBD", SR=sr, host=host, currently_attached=True,
                        device_config={"location": f"/dev/sim/{label[:8]}"})
        return sr

    def _shared_storage(self):
        shared = self._sr("NFS shared storage", "nfs", "user", True, self.host_refs)
        iso = self._sr("ISO library", "iso", "iso", True, self.host_refs)
        for name in ("debian-12.7-amd64-netinst.iso", "ubuntu-24.04-live-server-amd64.iso"):
            self.create("VDI", name_label=name, SR=iso, virtual_size=700 * MiB,
                        physical_utilisation=700 * MiB, type="user", read_only=True,
                        managed=True, sharable=True, location=name)
        return shared, iso

    def _networks(self):
        for index, (label, bridge) in enumerate((("Pool-wide network associated with eth0", "xenbr0"),
                                                 ("Storage network", "xenbr1"))):
            network = self.create("network", name_label=label, bridge=bridge, MTU=1500,
                                  other_config={"automatic": "true"})
            self.networks.append(network)
            for h_index, host in enumerate(self.host_refs):
                metrics = self.create("PIF_metrics", carrier=True, speed=10000,
                                      device_name=f"eth{index}", last_updated=now())
                self.create("PIF", device=f"eth{index}", host=host, network=network,
                            MAC=self._mac(), MTU=1500, physical=True, currently_attached=True,
                            management=index == 0, IP=f"127.0.{index}.{h_index + 1}",
                            netmask="255.255.255.0", ip_configuration_mode="Static",
                            metrics=metrics)

    def _mac(self):
        return "02:" + ":".join(f"{self.rng.randrange(256):02x}" for _ in range(5))

    def _templates(self):
        for name in DEFAULT_TEMPLATES:
            self.create("VM", name_label=name, is_a_template=True, is_default_template=True,
                        other_config={"default_template": "true", "install-arch": "amd64"},
                        memory_static_max=2 * GiB, memory_dynamic_max=2 * GiB,
                        memory_dynamic_min=1 * GiB, memory_static_min=512 * MiB,
                        VCPUs_max=2, VCPUs_at_startup=2, domain_type="hvm",
                        HVM_boot_policy="BIOS order", power_state="Halted")

    def _vm(self, index, shared_sr, iso_sr):
        rng = self.rng
        role, env = rng.choice(ROLES), rng.choice(ENVS)
        host = rng.choice(self.host_refs)
        state = rng.choices(["Running", "Halted", "Suspended", "Paused"], [70, 25, 3, 2])[0]
        memory = rng.choice((1, 2, 4, 8, 16)) * GiB
        cpus = rng.choice((1, 2, 4, 8))
        running = state in ("Running", "Paused")
        metrics = self.create("VM_metrics", memory_actual=memory if running else 0,
                              VCPUs_number=cpus if running else 0, start_time=now(),
                              install_time=DateTime("20240101T00:00:00Z"), current_domain_type="hvm")
        os_name = rng.choice(OS_NAMES)
        guest = NULL_REF
        if running:
            guest = self.create(
                "VM_guest_metrics", os_version={"name": os_name, "distro": os_name.split()[0].lower()},
                networks={"0/ip": f"10.{index // 250 % 250}.{index % 250}.{rng.randrange(2, 250)}",
                          "0/ipv4/0": f"10.{index // 250 % 250}.{index % 250}.7"},
                PV_drivers_version={"major": "9", "minor": "3", "micro": "1", "build": "0"},
                PV_drivers_up_to_date=True, PV_drivers_detected=True, last_updated=now(),
                memory={}, other={"feature-static-ip-setting": "1"},
            )
        tags = sorted({env, role} | ({"backup"} if rng.random() < 0.3 else set()))
        vm = self.create(
            "VM", name_label=f"{role}-{env}-{index:04d}", name_description=f"{os_name} {role} server",
            power_state=state, resident_on=host if state != "Halted" and state != "Suspended" else NULL_REF,
            affinity=host, metrics=metrics, guest_metrics=guest, tags=tags,
            memory_static_max=memory, memory_dynamic_max=memory, memory_dynamic_min=memory,
            memory_static_min=memory // 2, VCPUs_max=cpus, VCPUs_at_startup=cpus,
            VCPUs_params={"weight": "256"}, domain_type="hvm", HVM_boot_policy="BIOS order",
            HVM_boot_params={"order": "cd"}, platform={"cores-per-socket": str(cpus), "viridian": "true"},
            domid=index + 1 if running else -1, user_version=1,
            other_config={"auto_poweron": "true" if env == "prod" else "false"},
            allowed_operations=["snapshot", "clone", "copy", "export"],
        )
        sr = shared_sr if rng.random() < 0.7 else self.local_srs[host]
        for position in range(rng.choice((1, 1, 2))):
            self._disk(vm, sr, position, f"{role}-{env}-{index:04d} disk {position}")
        self.create("VBD", VM=vm, VDI=NULL_REF, type="CD", mode="RO", userdevice="3",
                    empty=True, bootable=False, currently_attached=running)
        self.create("VIF", VM=vm, network=self.networks[0], device="0", MAC=self._mac(), MTU=1500,
                    currently_attached=running, locking_mode="network_default")
        if rng.random() < 0.2:
            self.snapshot(vm, f"{role}-{env}-{index:04d} before upgrade")

    def _disk(self, vm, sr, position, label):
        size = self.rng.choice(DISK_SIZES)
        vdi = self.create("VDI", name_label=label, SR=sr, virtual_size=size,
                          physical_utilisation=size // 8, type="user", managed=True,
                          sm_config={"image-format": "vhd"})
        self.disks.create(vdi)
        self.create("VBD", VM=vm, VDI=vdi, type="Disk", mode="RW", userdevice=str(position),
                    bootable=position == 0, currently_attached=False)
        return vdi

    def snapshot(self, vm, label):
        """A snapshot made at build time (same shape as VM.snapshot at run time)."""
        from .operations import snapshot_vm  # avoid an import cycle at module load

        return snapshot_vm(self.db, self.disks, vm, label, track=False)

    def _messages(self):
        for host in self.host_refs:
            record = self.db.tables["host"][host]
            self.create("message", name="HOST_CLOCK_SKEW_DETECTED", priority=3, cls="Host",
                        obj_uuid=record["uuid"], timestamp=now(), body="clock skew 2s")
