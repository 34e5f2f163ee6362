"""Static data the pool builder draws from: guest systems, templates, hardware, drivers.

Values are what XCP-ng 8.3 hosts and their guests report (names, versions, keys); the
builder picks among them with its seeded RNG, so nothing here is random.
"""

GiB = 1024 ** 3

# Guest systems ---------------------------------------------------------------------------
# agent: which guest agent reports the guest metrics (None: no tools installed)
#   "xe-guest-utilities": the classic Linux agent (old N/ip key plus N/ipv4/M, no build number)
#   "xen-guest-agent":    the Rust agent of XCP-ng 8.3 (N/ipv4/M and N/ipv6/M only)
#   "windows":            XCP-ng Windows PV drivers (with vendor driver versions)
GUESTS = [
    # name, weight, template, os_version, firmware, agent, windows
    {"name": "Debian 12", "weight": 24, "template": "Debian Bookworm 12", "firmware": "bios",
     "agent": "xe-guest-utilities",
     "os": {"name": "Debian GNU/Linux 12 (bookworm)", "uname": "6.1.0-25-amd64", "distro": "debian",
            "major": "12", "minor": "7"}},
    {"name": "Ubuntu 24.04", "weight": 18, "template": "Ubuntu Noble Numbat 24.04", "firmware": "uefi",
     "agent": "xen-guest-agent",
     "os": {"name": "Ubuntu 24.04.1 LTS", "uname": "6.8.0-45-generic", "distro": "ubuntu", "major": "24",
            "minor": "04"}},
    {"name": "Rocky Linux 9", "weight": 12, "template": "Rocky Linux 9", "firmware": "uefi",
     "agent": "xe-guest-utilities",
     "os": {"name": "Rocky Linux 9.4 (Blue Onyx)", "uname": "5.14.0-427.13.1.el9_4.x86_64",
            "distro": "rocky", "major": "9", "minor": "4"}},
    {"name": "Alpine 3.20", "weight": 6, "template": "Alpine Linux 3.20", "firmware": "bios",
     "agent": "xen-guest-agent",
     "os": {"name": "Alpine Linux v3.20", "uname": "6.6.49-0-virt", "distro": "alpine", "major": "3",
            "minor": "20"}},
    {"name": "CentOS Stream 9", "weight": 5, "template": "CentOS Stream 9", "firmware": None,
     "agent": "xe-guest-utilities",
     "os": {"name": "CentOS Stream 9", "uname": "5.14.0-503.el9.x86_64", "distro": "centos", "major": "9",
            "minor": ""}},
    {"name": "Windows Server 2022", "weight": 14, "template": "Windows Server 2022 (64-bit)",
     "firmware": "uefi", "agent": "windows",
     "os": {"name": "Microsoft Windows Server 2022 Standard|C:\\Windows|\\Device\\Harddisk0\\Partition2",
            "distro": "windows", "major": "10", "minor": "0", "spmajor": "0", "spminor": "0",
            "build": "20348"}},
    {"name": "Windows Server 2019", "weight": 6, "template": "Windows Server 2019 (64-bit)",
     "firmware": "bios", "agent": "windows",
     "os": {"name": "Microsoft Windows Server 2019 Datacenter|C:\\Windows|\\Device\\Harddisk0\\Partition2",
            "distro": "windows", "major": "10", "minor": "0", "spmajor": "0", "spminor": "0",
            "build": "17763"}},
    {"name": "Windows 11", "weight": 5, "template": "Windows 11", "firmware": "uefi", "agent": "windows",
     "os": {"name": "Microsoft Windows 11 Pro|C:\\Windows|\\Device\\Harddisk0\\Partition3",
            "distro": "windows", "major": "10", "minor": "0", "spmajor": "0", "spminor": "0",
            "build": "22631"}},
    {"name": "FreeBSD 14", "weight": 3, "template": "Other install media", "firmware": "bios", "agent": None,
     "os": {}},
]

# PV driver versions as each agent reports them (VM_guest_metrics.PV_drivers_version).
PV_DRIVERS = {
    "xe-guest-utilities": [{"major": "7", "minor": "30", "micro": "0"},
                           {"major": "7", "minor": "20", "micro": "2"}],
    "xen-guest-agent": [{"major": "0", "minor": "4", "micro": "0"}],
    "windows": [
        # current XCP-ng drivers (past XSA-468's fix)
        {"major": "9", "minor": "1", "micro": "100", "build": "0", "xenbus": "XCP_ng 9.1.100.0",
         "xeniface": "XCP_ng 9.1.100.0", "xenvif": "XCP_ng 9.1.100.0", "xenvbd": "XCP_ng 9.1.100.0",
         "xencons": "XCP_ng 9.1.100.0"},
        # older XCP-ng drivers, vulnerable to XSA-468
        {"major": "9", "minor": "0", "micro": "9048", "build": "9047", "xenbus": "XCP_ng 9.0.9048.9047",
         "xeniface": "XCP_ng 9.0.9048.9047", "xenvif": "XCP_ng 9.0.9048.9047"},
        # Citrix/XenServer VM Tools installed in the guest
        {"major": "9", "minor": "3", "micro": "3", "build": "16", "xenbus": "XenServer 9.1.11.114",
         "xeniface": "XenServer 9.1.12.93", "xenvif": "XenServer 9.1.9.113"},
    ],
}

# VM_guest_metrics.other per agent
GUEST_OTHER = {
    "xe-guest-utilities": {"feature-balloon": "1", "feature-poweroff": "1", "feature-reboot": "1",
                           "feature-suspend": "1", "feature-vcpu-hotplug": "1", "has-vendor-device": "0",
                           "platform-feature-multiprocessor-suspend": "1",
                           "platform-feature-xs_reset_watches": "1"},
    "xen-guest-agent": {"feature-balloon": "1", "has-vendor-device": "0",
                        "platform-feature-multiprocessor-suspend": "1",
                        "platform-feature-xs_reset_watches": "1"},
    "windows": {"feature-static-ip-setting": "1", "feature-laptop-slate-mode": "1", "feature-poweroff": "1",
                "feature-reboot": "1", "feature-s3": "0", "feature-s4": "1", "feature-setcomputername": "1",
                "feature-shutdown": "1", "feature-suspend": "1", "feature-ts": "1", "feature-ts2": "1",
                "feature-xs-batcmd": "1", "has-vendor-device": "1", "data-ts": "1",
                "platform-feature-multiprocessor-suspend": "1", "platform-feature-xs_reset_watches": "1"},
}

# Default templates -----------------------------------------------------------------------


def _restrictions(uefi="yes", bios="yes", secure_boot="yes", memory_max=1649267441664, vcpus=32,
                  vendor_device="false"):
    return ("<restrictions>"
            f'<restriction field="memory-static-max" max="{memory_max}"/>'
            f'<restriction field="vcpus-max" max="{vcpus}"/>'
            f'<restriction field="has-vendor-device" value="{vendor_device}"/>'
            '<restriction field="allow-gpu-passthrough" value="1"/>'
            '<restriction field="allow-vgpu" value="1"/>'
            '<restriction field="allow-network-sriov" value="1"/>'
            f'<restriction field="supports-bios" value="{bios}"/>'
            f'<restriction field="supports-uefi" value="{uefi}"/>'
            f'<restriction field="supports-secure-boot" value="{secure_boot}"/>'
            '<restriction max="255" property="number-of-vbds"/>'
            '<restriction max="7" property="number-of-vifs"/>'
            "</restrictions>")


def _disks(*sizes_gib):
    if not sizes_gib:
        return ""
    disks = "".join(f'<disk device="{i}" size="{size * GiB}" sr="" bootable="{"true" if i == 0 else "false"}"'
                    f' type="system"/>' for i, size in enumerate(sizes_gib))
    return f"<provision>{disks}</provision>"


LINUX_INSTALL = "cdrom,nfs,http,ftp"
# name, reference label, distro key, arch, disks (GiB), memory (GiB min/max), uefi/bios/secure boot,
# linux?, vcpus
TEMPLATES = [
    ("Debian Bookworm 12", "debian-12", "debianbookworm", (10,), (1, 2), "yes", "yes", "no", True),
    ("Debian Bullseye 11", "debian-11", "debianbullseye", (10,), (1, 2), "yes", "yes", "no", True),
    ("Ubuntu Noble Numbat 24.04", "ubuntu-24.04", "ubuntunoble", (20,), (2, 4), "yes", "yes", "yes", True),
    ("Ubuntu Jammy Jellyfish 22.04", "ubuntu-22.04", "ubuntujammy", (20,), (2, 4), "yes", "yes", "yes", True),
    ("Rocky Linux 9", "rocky-9", "rhel9", (20,), (2, 4), "yes", "yes", "yes", True),
    ("AlmaLinux 9", "almalinux-9", "rhel9", (20,), (2, 4), "yes", "yes", "yes", True),
    ("CentOS Stream 9", "centos-stream-9", "rhel9", (20,), (2, 4), "yes", "yes", "no", True),
    ("Red Hat Enterprise Linux 9", "rhel-9", "rhel9", (20,), (2, 4), "yes", "yes", "yes", True),
    ("Oracle Linux 9", "oel-9", "rhel9", (20,), (2, 4), "yes", "yes", "no", True),
    ("SUSE Linux Enterprise Server 15 (64-bit)", "sles-15", "sleshvm", (20,), (1, 2), "yes", "yes", "yes", True),
    ("Alpine Linux 3.20", "alpine-3.20", "alpine", (4,), (1, 1), "no", "yes", "no", True),
    ("Generic Linux UEFI", "generic-linux-uefi", "", (10,), (1, 2), "yes", "no", "no", True),
    ("Generic Linux BIOS", "generic-linux-bios", "", (10,), (1, 2), "no", "yes", "no", True),
    ("Windows Server 2022 (64-bit)", "windows-server-2022", "windows", (64,), (2, 4), "yes", "yes", "yes", False),
    ("Windows Server 2019 (64-bit)", "windows-server-2019", "windows", (32,), (2, 4), "yes", "yes", "yes", False),
    ("Windows Server 2016 (64-bit)", "windows-server-2016", "windows", (32,), (2, 4), "yes", "yes", "no", False),
    ("Windows 11", "windows-11", "windows", (64,), (4, 4), "yes", "no", "yes", False),
    ("Windows 10 (64-bit)", "windows-10", "windows", (32,), (2, 4), "yes", "yes", "yes", False),
    ("Other install media", "other-install-media", "", (), (1, 1), "yes", "yes", "no", None),
]

# Hosts -----------------------------------------------------------------------------------
CPU = {"vendor": "GenuineIntel", "modelname": "Intel(R) Xeon(R) Silver 4314 CPU @ 2.40GHz", "speed": 2394,
       "family": 6, "model": 106, "stepping": "6",
       "flags": "fpu de tsc msr pae mce cx8 apic sep mca cmov pat clflush acpi mmx fxsr sse sse2 ss ht "
                "syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid pni pclmulqdq "
                "monitor est ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand hypervisor "
                "lahf_lm abm 3dnowprefetch fsgsbase bmi1 avx2 bmi2 erms rtm avx512f avx512dq rdseed adx "
                "avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1",
       "features": "1fcbfbff-f7fa3223-2d93fbff-00000423-00000001-f3bf2fbb-00000000-00000000-00040001-"
                   "00000000-00001c40",
       "features_hvm": "1fcbfbff-f7fa3223-2d93fbff-00000423-00000001-f3bf2fbb-00000000-00000000-00040001",
       "features_pv": "1fc9cbf5-f6f83203-2991cbf5-00000123-00000001-f3a12fb9-00000000-00000000-00040001"}

HOST_MODELS = [
    {"vendor": "Dell Inc.", "product": "PowerEdge R750", "bios": "1.13.2"},
    {"vendor": "Dell Inc.", "product": "PowerEdge R750", "bios": "1.13.2"},
    {"vendor": "Supermicro", "product": "SYS-620U-TNR", "bios": "1.8"},
]

# PCI devices XAPI tracks (storage, network and display controllers), per host
PCI_STORAGE = {"class_name": "RAID bus controller", "vendor_name": "Broadcom / LSI",
               "device_name": "MegaRAID SAS-3 3108 [Invader]", "subsystem_vendor_name": "Dell",
               "subsystem_device_name": "PERC H730P Mini", "driver_name": "megaraid_sas", "pci_id": "0000:18:00.0"}
PCI_NVME = {"class_name": "Non-Volatile memory controller", "vendor_name": "Samsung Electronics Co Ltd",
            "device_name": "NVMe SSD Controller PM9A1/PM9A3/980PRO", "subsystem_vendor_name": "Samsung Electronics Co Ltd",
            "subsystem_device_name": "NVMe SSD Controller PM9A1/PM9A3/980PRO", "driver_name": "nvme",
            "pci_id": "0000:65:00.0"}
# one PCI function per NIC: (device, pci_id, vendor_id, device_id, vendor, name, driver, speed Mb/s)
NICS = [
    ("eth0", "0000:04:00.0", "14e4", "165f", "Broadcom Inc. and subsidiaries",
     "NetXtreme BCM5720 Gigabit Ethernet PCIe", "tg3", 1000),
    ("eth1", "0000:04:00.1", "14e4", "165f", "Broadcom Inc. and subsidiaries",
     "NetXtreme BCM5720 Gigabit Ethernet PCIe", "tg3", 1000),
    ("eth2", "0000:3b:00.0", "8086", "1572", "Intel Corporation", "Ethernet Controller X710 for 10GbE SFP+",
     "i40e", 10000),
    ("eth3", "0000:3b:00.1", "8086", "1572", "Intel Corporation", "Ethernet Controller X710 for 10GbE SFP+",
     "i40e", 10000),
]
PCI_VGA = {"class_name": "VGA compatible controller", "vendor_name": "Matrox Electronics Systems Ltd.",
           "device_name": "Integrated Matrox G200eW3 Graphics Controller", "subsystem_vendor_name": "Dell",
           "subsystem_device_name": "PowerEdge R750", "driver_name": "mgag200", "pci_id": "0000:03:00.0"}
VGA_TYPE = "102b:0536"
PCI_GPUS = [
    {"class_name": "3D controller", "vendor_name": "NVIDIA Corporation", "device_name": "GK104GL [GRID K2]",
     "subsystem_vendor_name": "NVIDIA Corporation", "subsystem_device_name": "GRID K2", "driver_name": "nvidia",
     "pci_id": "0000:86:00.0"},
    {"class_name": "3D controller", "vendor_name": "NVIDIA Corporation", "device_name": "GK104GL [GRID K2]",
     "subsystem_vendor_name": "NVIDIA Corporation", "subsystem_device_name": "GRID K2", "driver_name": "nvidia",
     "pci_id": "0000:87:00.0"},
]
GPU_TYPE = "10de:11bf"
# vGPU types: model, vendor, framebuffer, heads, resolution, implementation, identifier, max per PGPU
VGPU_TYPES = [
    ("passthrough", "", 0, 0, 0, 0, "passthrough", "passthrough", 1),
    ("GRID K240Q", "NVIDIA Corporation", 1006632960, 2, 2560, 1600, "nvidia", "nvidia,45,11bf:101e", 4),
    ("GRID K260Q", "NVIDIA Corporation", 2013265920, 4, 2560, 1600, "nvidia", "nvidia,46,11bf:101f", 2),
]

# Storage drivers (SM records) of an XCP-ng 8.3 host ----------------------------------------
_VDI_CAPS = ["SR_PROBE", "SR_UPDATE", "VDI_CREATE", "VDI_DELETE", "VDI_ATTACH", "VDI_DETACH", "VDI_UPDATE",
             "VDI_CLONE", "VDI_SNAPSHOT", "VDI_RESIZE", "VDI_GENERATE_CONFIG", "VDI_RESET_ON_BOOT/2",
             "VDI_CONFIG_CBT", "VDI_ACTIVATE", "VDI_DEACTIVATE", "ATOMIC_PAUSE", "THIN_PROVISIONING"]
SM_DRIVERS = [
    # type, label, description, vendor, driver file, configuration keys, capability subset
    ("ext", "Local EXT3 VHD", "SR plugin which represents disks as VHD files stored on a local EXT3 filesystem, "
     "created inside an LVM volume", "Citrix Systems Inc", "EXTSR", {"device": "local device path (required) "
                                                                     "(e.g. /dev/sda3)"}, None),
    ("lvm", "Local LVM", "SR plugin which represents disks as VHD objects on a local logical volume",
     "Citrix Systems Inc", "LVMSR", {"device": "local device path (required) (e.g. /dev/sda3)"}, None),
    ("nfs", "NFS VHD", "SR plugin which stores disks as VHD files on a remote NFS filesystem",
     "Citrix Systems Inc", "NFSSR", {"server": "hostname or IP address of NFS server",
                                     "serverpath": "path on remote server", "nfsversion": "NFS version"}, None),
    ("lvmoiscsi", "LVM over iSCSI", "SR plugin which represents disks as Logical Volumes within a Volume Group "
     "created on an iSCSI LUN", "Citrix Systems Inc", "LVMoISCSISR",
     {"target": "IP address or hostname of the iSCSI target", "targetIQN": "The IQN of the target LUN group",
      "SCSIid": "The scsi_id of the destination LUN", "chapuser": "The username used for CHAP authentication",
      "chappassword": "The password used for CHAP authentication"}, None),
    ("lvmohba", "LVM over FC", "SR plugin which represents disks as VHDs on Logical Volumes within a Volume "
     "Group created on an HBA LUN", "Citrix Systems Inc", "LVMoHBASR",
     {"SCSIid": "The scsi_id of the destination LUN"}, None),
    ("iso", "ISO", "Handles CD images stored as files in iso format", "Citrix Systems Inc", "ISOSR",
     {"location": "path to mount (required)", "type": "cifs or nfs_iso"}, ["VDI_CREATE", "VDI_DELETE",
                                                                            "VDI_ATTACH", "VDI_DETACH",
                                                                            "SR_SCAN", "SR_ATTACH",
                                                                            "SR_DETACH"]),
    ("udev", "Local Device", "Plugin which represents local block devices", "Citrix Systems Inc", "udevSR",
     {"location": "path of the device"}, ["VDI_INTRODUCE", "VDI_ATTACH", "VDI_DETACH", "VDI_UPDATE",
                                          "SR_UPDATE"]),
    ("smb", "SMB VHD", "SR plugin which stores disks as VHD files on a remote SMB filesystem",
     "Citrix Systems Inc", "SMBSR", {"server": "path to remote server", "username": "user name",
                                     "password": "password"}, None),
    ("file", "Local Path VHD", "SR plugin which represents disks as VHD files stored on a local path",
     "Citrix Systems Inc", "FileSR", {"location": "local file path (required)"}, None),
    ("zfs", "ZFS", "SR plugin which stores disks as VHD files on a local ZFS filesystem", "Vates SAS",
     "ZFSSR", {"location": "local ZFS dataset mount point (required)"}, None),
    ("xfs", "XFS", "SR plugin which represents disks as VHD files stored on a local XFS filesystem",
     "Vates SAS", "XFSSR", {"device": "local device path (required) (e.g. /dev/sda3)"}, None),
    ("linstor", "LINSTOR resources", "SR plugin which provides disks replicated with LINSTOR", "Vates SAS",
     "LinstorSR", {"group-name": "LVM group name", "redundancy": "replication count",
                   "provisioning": "thin or thick"}, None),
    ("cephfs", "CephFS VHD", "SR plugin which stores disks as VHD files on a CephFS storage", "Vates SAS",
     "CephFSSR", {"server": "Ceph server(s) (required)", "serverpath": "path on remote server (required)"},
     None),
    ("glusterfs", "GlusterFS VHD", "SR plugin which stores disks as VHD files on a GlusterFS storage",
     "Vates SAS", "GlusterFSSR", {"server": "Gluster server(s) (required)"}, None),
    ("largeblock", "Large Block SR", "Emulates a 512 bytes sector size on top of a 4KiB device", "Vates SAS",
     "LargeBlockSR", {"device": "local device path (required)"}, None),
    ("dummy", "dummy", "SR plugin which is useful for testing", "Citrix Systems Inc", "DummySR", {}, None),
]


def sm_capabilities(subset):
    """The driver's features as ``SM.capabilities`` lists them (no version suffix)."""
    return [cap.split("/")[0] for cap in (subset if subset is not None else _VDI_CAPS)]


def sm_feature_versions(subset):
    """``SM.features``: feature -> version."""
    caps = subset if subset is not None else _VDI_CAPS
    return {cap.split("/")[0]: int(cap.split("/")[1]) if "/" in cap else 1 for cap in caps}



ISO_IMAGES = ["debian-12.7.0-amd64-netinst.iso", "ubuntu-24.04.1-live-server-amd64.iso",
              "Rocky-9.4-x86_64-minimal.iso", "SERVER_EVAL_x64FRE_en-us.iso", "alpine-virt-3.20.3-x86_64.iso"]
