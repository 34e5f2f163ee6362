"""XCP-ng's ``updater.py`` host plugin (xcp-ng-xapi-plugins), as ``host.call_plugin`` runs it.

``check_update`` answers the JSON string the real plugin prints: yum's pending updates
(``display_package``: name, version, release, description, changelog {date, author,
description} or null, url, size, license), from the enabled repositories
(``xcp-ng-base``, ``xcp-ng-updates``, ``xcp-ng-linstor`` and those named in ``repos``).
``update`` installs them (all, or ``packages``) and answers ``run_command``'s result;
``install``, ``query_installed`` and ``get_proxies`` are there too.  Failures are the
plugin's ``XenAPIPlugin.Failure`` (``["-1", message, details, backtrace]``, the busy error
Xen Orchestra retries on included); an unknown function is
``UNKNOWN_XENAPI_PLUGIN_FUNCTION``, an unknown plugin ``XENAPI_MISSING_PLUGIN``.

Pending lists are deterministic per host: the pool's hosts wait for the same packages,
released after their last update, except a host patched since it booted (its
``other_config:rpm_patch_installation_time`` is after ``boot_time``: Xen Orchestra's
``rebootRequired``), which has nothing left to install.  ``POST /_sim/updates`` sets them.
"""
import json
import random

from .rpc import XapiFailure

DEFAULT_REPOS = ("xcp-ng-base", "xcp-ng-updates", "xcp-ng-linstor")
DAY = 86400
PACKAGERS = ["Ada Lefèvre <ada.lefevre@example.org>", "Brice Martel <brice.martel@example.org>",
             "Chloé Ranger <chloe.ranger@example.org>", "Dario Conti <dario.conti@example.org>"]

# name, version, release, summary, url, license, size (bytes), repository, changelog lines
PACKAGES = [
    ("xapi-core", "24.19.3", "1.1.xcpng8.3", "The xapi toolstack", "http://www.xen.org",
     "LGPL-2.1-only WITH OCaml-LGPL-linking-exception", 18874368, "xcp-ng-updates",
     ["Update to 24.19.3", "Fix a leak of file descriptors in VM.migrate_send"]),
    ("xapi-xe", "24.19.3", "1.1.xcpng8.3", "The xapi toolstack CLI", "http://www.xen.org",
     "LGPL-2.1-only WITH OCaml-LGPL-linking-exception", 2936012, "xcp-ng-updates", ["Update to 24.19.3"]),
    ("xenopsd-xc", "24.19.3", "1.1.xcpng8.3", "Xenopsd using xc", "https://github.com/xapi-project/xen-api",
     "LGPL-2.1-or-later", 6815744, "xcp-ng-updates", ["Update to 24.19.3"]),
    ("xcp-rrdd", "24.19.3", "1.1.xcpng8.3", "Statistics gathering daemon for the xapi toolstack",
     "https://github.com/xapi-project/xen-api", "LGPL-2.1-or-later", 3670016, "xcp-ng-updates",
     ["Update to 24.19.3"]),
    ("xen-hypervisor", "4.17.5", "6.1.xcpng8.3", "The Xen Hypervisor", "https://www.xenproject.org/",
     "GPLv2 and LGPLv2+ and BSD", 2621440, "xcp-ng-updates",
     ["Security update for XSA-466 and XSA-467", "Backport a fix for the IOMMU page table handling"]),
    ("xen-dom0-libs", "4.17.5", "6.1.xcpng8.3", "Xen Hypervisor Domain 0 libraries", "https://www.xenproject.org/",
     "GPLv2 and LGPLv2+ and BSD", 1048576, "xcp-ng-updates", ["Security update for XSA-466 and XSA-467"]),
    ("xen-dom0-tools", "4.17.5", "6.1.xcpng8.3", "Xen Hypervisor Domain 0 tools", "https://www.xenproject.org/",
     "GPLv2 and LGPLv2+ and BSD", 3145728, "xcp-ng-updates", ["Security update for XSA-466 and XSA-467"]),
    ("xen-libs", "4.17.5", "6.1.xcpng8.3", "Xen Hypervisor general libraries", "https://www.xenproject.org/",
     "GPLv2 and LGPLv2+ and BSD", 524288, "xcp-ng-updates", ["Security update for XSA-466 and XSA-467"]),
    ("xen-tools", "4.17.5", "6.1.xcpng8.3", "Xen Hypervisor general tools", "https://www.xenproject.org/",
     "GPLv2 and LGPLv2+ and BSD", 786432, "xcp-ng-updates", ["Security update for XSA-466 and XSA-467"]),
    ("kernel", "4.19.19", "8.0.38.1.xcpng8.3", "The Linux kernel", "http://www.kernel.org/", "GPLv2",
     33554432, "xcp-ng-updates", ["Fix the tg3 driver losing its link after a reset",
                                  "Backport fixes for CVE-2024-26923 and CVE-2024-36971"]),
    ("intel-microcode", "20250512", "1.xcpng8.3", "Microcode for Intel CPUs",
     "https://github.com/intel/Intel-Linux-Processor-Microcode-Data-Files",
     "Redistributable, no modification permitted", 14680064, "xcp-ng-updates",
     ["Update to publicly released microcode-20250512", "Mitigations for INTEL-SA-01153"]),
    ("amd-microcode", "20250513", "1.xcpng8.3", "Microcode for AMD CPUs", "https://git.kernel.org/",
     "Redistributable, no modification permitted", 409600, "xcp-ng-updates", ["Update to 20250513"]),
    ("linux-firmware", "20250509", "1.xcpng8.3", "Firmware files used by the Linux kernel",
     "http://www.kernel.org/", "GPL+ and GPLv2+ and MIT and Redistributable, no modification permitted",
     94371840, "xcp-ng-updates", ["Update to 20250509"]),
    ("sm", "3.2.3", "1.7.xcpng8.3", "sm - XCP storage managers", "https://github.com/xcp-ng/sm", "LGPL",
     2097152, "xcp-ng-updates", ["Fix the LVM over iSCSI SR scan with multipathing",
                                 "Retry tapdisk pause on EBUSY"]),
    ("sm-fairlock", "3.2.3", "1.7.xcpng8.3", "Fair locking for sm", "https://github.com/xcp-ng/sm", "LGPL",
     65536, "xcp-ng-updates", ["Update to sm 3.2.3-1.7"]),
    ("blktap", "3.55.4", "1.1.xcpng8.3", "blktap user space utilities", "https://github.com/xapi-project/blktap",
     "BSD", 1572864, "xcp-ng-updates", ["Fix a tapdisk crash on a short read of a VHD footer"]),
    ("qemu", "4.2.1", "5.2.12.1.xcpng8.3", "qemu-dm device model", "http://www.qemu.org/",
     "GPL", 9437184, "xcp-ng-updates", ["Security update for CVE-2024-3446"]),
    ("openvswitch", "2.17.7", "3.2.xcpng8.3", "Virtual switch", "http://www.openvswitch.org/", "ASL 2.0",
     7340032, "xcp-ng-updates", ["Fix the bond failover delay with active-backup"]),
    ("varstored", "1.2.0", "3.1.xcpng8.3", "EFI Variable Storage Daemon", "https://github.com/xapi-project/varstored",
     "BSD", 327680, "xcp-ng-updates", ["Update the Secure Boot revocation list (dbx)"]),
    ("xcp-ng-xapi-plugins", "1.12.0", "1.xcpng8.3", "XAPI plugins for XCP-ng",
     "https://github.com/xcp-ng/xcp-ng-xapi-plugins", "AGPLv3", 131072, "xcp-ng-updates",
     ["updater.py: report the operation holding the lock"]),
    ("xo-lite", "0.13.0", "1.xcpng8.3", "Xen Orchestra Lite", "https://github.com/vatesfr/xen-orchestra",
     "AGPLv3", 5242880, "xcp-ng-updates", ["Update to 0.13.0"]),
    ("guest-templates-json", "2.0.12", "1.xcpng8.3", "Creates the default guest templates",
     "https://github.com/xenserver/guest-templates-json", "BSD", 98304, "xcp-ng-updates",
     ["Add Debian Trixie 13 and Rocky Linux 10 templates"]),
    ("xcp-ng-release", "8.3.0", "33", "XCP-ng release file", "https://github.com/xcp-ng/xcp-ng-release",
     "GPLv2", 81920, "xcp-ng-base", ["Update the list of repositories"]),
    ("tzdata", "2025b", "1.el7", "Timezone data", "https://www.iana.org/time-zones", "Public Domain", 503808,
     "xcp-ng-base", ["Rebase to 2025b"]),
    ("sudo", "1.9.15p5", "1.xcpng8.3", "Allows restricted root access for specified users",
     "https://www.sudo.ws", "ISC", 1153434, "xcp-ng-updates", ["Security update for CVE-2025-32462"]),
    ("xcp-ng-linstor", "1.2.1", "1.xcpng8.3", "XOSTOR: the LINSTOR storage driver and its tools",
     "https://github.com/xcp-ng/xcp-ng-linstor", "GPLv3", 40960, "xcp-ng-linstor",
     ["Fix the DRBD resource cleanup after a failed VDI.create"]),
    ("xen-hypervisor", "4.17.5", "7.0.1.xcpng8.3", "The Xen Hypervisor", "https://www.xenproject.org/",
     "GPLv2 and LGPLv2+ and BSD", 2621440, "xcp-ng-testing", ["Candidate fix for XSA-468"]),
]
# pending everywhere (the xapi and Xen security batch), then a seeded share of the others
CORE = {"xapi-core", "xapi-xe", "xenopsd-xc", "xcp-rrdd", "xen-hypervisor", "xen-dom0-libs", "xen-dom0-tools",
        "xen-libs", "xen-tools"}


def PluginFailure(code, *params):
    """``XenAPIPlugin.Failure``: XAPI answers its code and parameters as the call's error."""
    return XapiFailure(code, *params)


def _display(package, released, rng):
    """``display_package`` of one catalogue entry."""
    name, version, release, summary, url, license_, size, _repo, lines = package
    author = rng.choice(PACKAGERS)
    return {"name": name, "version": version, "release": release, "description": summary,
            "changelog": {"date": released, "author": f"{author} - {version}-{release}",
                          "description": "\n".join(f"- {line}" for line in lines)},
            "url": url, "size": size, "license": license_, "_repo": _repo}


class Updates:
    """Per host: pending packages, and faults tests set (busy plugin, failing yum)."""

    def __init__(self, db, seed):
        self.db, self.seed = db, seed
        self.pending = {}  # host ref -> [package dicts] (with the private "_repo" key)
        self.busy = {}  # host ref -> the operation holding the plugin's lock
        self.errors = {}  # host ref -> the message check_update fails with
        self.proxies = {}
        for host in db.tables["host"]:
            self.pending[host] = self.seeded(host)

    def seeded(self, host):
        """The host's pending updates as the seed makes them."""
        db = self.db
        hosts = db.tables["host"]
        other = hosts[host]["other_config"]
        if _float(other.get("rpm_patch_installation_time")) > _float(other.get("boot_time")):
            return []  # patched since it booted: only the reboot is left
        # released after every host's last update (and before the one patched since)
        after = max((_float(h["other_config"].get("rpm_patch_installation_time")) for h in hosts.values()
                     if _float(h["other_config"].get("rpm_patch_installation_time"))
                     <= _float(h["other_config"].get("boot_time"))), default=0.0)
        patched = [_float(h["other_config"].get("rpm_patch_installation_time")) for h in hosts.values()
                   if _float(h["other_config"].get("rpm_patch_installation_time"))
                   > _float(h["other_config"].get("boot_time"))]
        before = min(patched) if patched else after + 60 * DAY
        if before <= after:
            before = after + 7 * DAY
        pool_rng = random.Random(f"{self.seed}:updates")  # the same choice for every host of the pool
        chosen = [p for p in PACKAGES if p[7] != "xcp-ng-testing" and (p[0] in CORE or pool_rng.random() < 0.4)]
        result = []
        for package in chosen:
            rng = random.Random(f"{self.seed}:updates:{package[0]}:{package[1]}-{package[2]}")
            released = int(after + (before - after) * (0.1 + 0.8 * rng.random()))
            released -= released % DAY - 12 * 3600  # yum changelog entries are at noon
            result.append(_display(package, released, rng))
        return result

    def testing(self):
        """Packages of the ``xcp-ng-testing`` repository, pending when ``repos`` names it."""
        rng = random.Random(f"{self.seed}:updates:testing")
        return [_display(p, 1_750_000_000 - 1_750_000_000 % DAY + 12 * 3600, rng) for p in PACKAGES
                if p[7] == "xcp-ng-testing"]

    # the plugin ---------------------------------------------------------------------------

    def plugin(self, op, host, fn, args):
        """``host.call_plugin(host, "updater.py", fn, args)`` (a plugin of ``XapiApi.plugins``)."""
        handler = {"check_update": self.check_update, "update": self.update, "install": self.install,
                   "query_installed": self.query_installed, "get_proxies": self.get_proxies}.get(fn)
        if handler is None:
            raise PluginFailure("UNKNOWN_XENAPI_PLUGIN_FUNCTION", fn)
        with op.locked():
            return handler(host, {str(k): str(v) for k, v in args.items()})

    def _locked(self, host, operation):
        busy = self.busy.get(host)
        if busy:
            if operation == "update" and busy == "update":
                raise _failure("Update already in progress")
            raise _failure(f"The updater plugin is busy (current operation: {busy})")

    def _repos(self, args):
        repos = list(DEFAULT_REPOS)
        if args.get("repos"):
            repos += [r.strip() for r in args["repos"].split(",")]
        return repos

    def check_update(self, host, args):
        self._locked(host, "check_update")
        if self.errors.get(host):
            raise _failure(self.errors[host])
        repos = self._repos(args)
        packages = [p for p in self.pending.get(host, []) if p.get("_repo", "xcp-ng-updates") in repos]
        if "xcp-ng-testing" in repos and self.pending.get(host):
            packages += self.testing()
        return json.dumps([_public(p) for p in packages])

    def update(self, host, args):
        self._locked(host, "update")
        wanted = set(args.get("packages", "").replace(",", " ").split())
        repos = self._repos(args)
        pending = self.pending.get(host, [])
        done = [p for p in pending if (not wanted or p["name"] in wanted) and p.get("_repo", "xcp-ng-updates") in repos]
        self.pending[host] = [p for p in pending if p not in done]
        command = ["yum", "update", "--disablerepo=*", "--enablerepo=" + ",".join(
            r for r in repos if r in DEFAULT_REPOS or r in args.get("repos", "")), "-y"]
        if args.get("packages"):
            command.append(args["packages"])
        lines = ["Loaded plugins: fastestmirror", "Resolving Dependencies"]
        lines += [f"---> Package {p['name']}.x86_64 {p['version']}-{p['release']} will be an update" for p in done]
        lines += ["", "Complete!" if done else "No packages marked for update"]
        return json.dumps({"stdout": "\n".join(lines) + "\n", "stderr": "", "command": command, "returncode": 0})

    def install(self, host, args):
        if not args.get("packages"):
            raise _failure("Missing or empty argument `packages`")
        self._locked(host, "install")
        return self.update(host, args)

    def query_installed(self, host, args):
        names = args.get("packages", "").replace(",", " ").split()
        if not names:
            return "{}"
        pending = {p["name"]: p for p in self.pending.get(host, [])}
        result = {}
        for name in dict.fromkeys(names):
            package = next((p for p in PACKAGES if p[0] == name), None)
            if package is None:
                result[name] = ""
            elif name in pending:  # the installed one is the release before
                result[name] = f"{name}-{package[1]}-{_previous(package[2])}.x86_64"
            else:
                result[name] = f"{name}-{package[1]}-{package[2]}.x86_64"
        return json.dumps(result)

    def get_proxies(self, host, args):
        return json.dumps({repo: self.proxies.get(repo, "_none_") for repo in
                           ("xcp-ng-base", "xcp-ng-updates", "xcp-ng-linstor", "xcp-ng-testing")})

    # the admin endpoint ---------------------------------------------------------------------

    def configure(self, body):
        """``POST /_sim/updates``: ``{"host": uuid (default: every host), "updates": [...],
        "busy": operation or "", "error": message or "", "reset": true}``."""
        db = self.db
        if body.get("host"):
            hosts = [db.by_uuid("host", body["host"])]
        else:
            hosts = list(db.tables["host"])
        for host in hosts:
            if body.get("reset"):
                self.pending[host] = self.seeded(host)
                self.busy.pop(host, None)
                self.errors.pop(host, None)
            if "updates" in body:
                if not isinstance(body["updates"], list) or not all(isinstance(p, dict) for p in body["updates"]):
                    raise ValueError("updates must be a list of package objects")
                self.pending[host] = [dict(p) for p in body["updates"]]
            if "busy" in body:
                self.busy[host] = str(body["busy"] or "")
            if "error" in body:
                self.errors[host] = str(body["error"] or "")
        return self.state()

    def state(self):
        hosts = self.db.tables["host"]
        return {hosts[h]["uuid"]: {"updates": [_public(p) for p in self.pending.get(h, [])],
                                   "busy": self.busy.get(h, ""), "error": self.errors.get(h, "")}
                for h in hosts}


def _public(package):
    return {k: v for k, v in package.items() if k != "_repo"}


def _failure(message):
    """What ``error_wrapped`` makes of an exception: ``Failure("-1", [message, details, backtrace])``."""
    backtrace = ("Traceback (most recent call last):\n  File \"/etc/xapi.d/plugins/xcpngutils/__init__.py\", "
                 "line 127, in wrapper\n    return func(*args, **kwds)\nException: " + message + "\n")
    return PluginFailure("-1", message, "", backtrace)


def _previous(release):
    head, _, tail = release.partition(".")
    try:
        return f"{max(0, int(head) - 1)}.{tail}" if tail else str(max(0, int(head) - 1))
    except ValueError:
        return release


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
