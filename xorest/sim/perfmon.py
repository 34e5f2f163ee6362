"""XAPI's perfmon daemon: ``ALARM`` messages when a monitored value crosses its threshold.

As ``/usr/bin/perfmon`` does, every ``interval`` seconds (300) each host reads its
``rrd_updates`` of the 60-second archive since the last pass, and for every VM and host in
it whose ``other_config:perfmon`` holds a configuration (``<config><variable><name
value="cpu_usage"/><alarm_trigger_level value="0.9"/>…</variable></config>``) consolidates
the data sources its ``rrd_regex`` matches, row by row; a value on the wrong side of
``alarm_trigger_level`` for ``alarm_trigger_period`` seconds raises an alarm, then none for
``alarm_auto_inhibit_period``.  Missing tags take perfmon's defaults (``cpu_usage`` is the
average of ``cpu[0-9]+``, ``network_usage`` the sum of ``vif_[0-9]+_[rt]x`` or
``pif_eth[0-9]+_[rt]x``, ``memory_free_kib`` and ``memory_internal_free`` trigger when low,
period 60, inhibit 3600, priority 3).  SRs are watched from their records
(``physical_utilisation`` over ``physical_size``, default level 0.8).

The alarm is XAPI's message: ``name`` ``ALARM``, ``cls`` ``VM``/``Host``/``SR``, the object's
uuid, the priority, and perfmon's body ``value: 0.970000\\nconfig:\\n<variable>\\n\\t<name
value="cpu_usage"/>\\n\\t<alarm_trigger_level value="0.9"/>\\n</variable>\\n`` (the variable's
XML pretty-printed by minidom, as perfmon prints it).

Objects without a configuration are not watched, as on XAPI, unless a default is set for
their class (``POST /_sim/perfmon {"default": {"VM": "<config>…</config>"}}``).
"""
import logging
import re
import time
from xml.dom import minidom
from xml.parsers.expat import ExpatError

from .rpc import DateTime

log = logging.getLogger(__name__)

RRD_STEP = 60
CONSOLIDATION = {"sum": sum, "average": lambda values: sum(values) / len(values) if values else 0.0,
                 "max": lambda values: max(values) if values else 0.0}


class ConfigError(ValueError):
    pass


def _defaults(kind, name, tag):
    """perfmon's ``get_default_variable_config`` of VMMonitor, HOSTMonitor and SRMonitor."""
    if tag == "consolidation_fn":
        if name == "cpu_usage" and kind in ("VM", "Host"):
            return "average"
        if kind == "SR" and name == "physical_utilisation":
            return "get_percent_sr_usage"
        return {"fs_usage": "get_percent_fs_usage", "log_fs_usage": "get_percent_log_fs_usage",
                "mem_usage": "get_percent_mem_usage"}.get(name, "sum") if kind == "VM" else "sum"
    if tag == "rrd_regex":
        table = {
            "VM": {"cpu_usage": "cpu[0-9]+", "network_usage": "vif_[0-9]+_[rt]x",
                   "disk_usage": "vbd_(xvd|hd)[a-z]+_(read|write)", "fs_usage": "_$_DUMMY__",
                   "log_fs_usage": "_$_DUMMY__", "mem_usage": "_$_DUMMY__",
                   "memory_internal_free": "memory_internal_free"},
            "Host": {"cpu_usage": "cpu[0-9]+", "network_usage": "pif_eth[0-9]+_[rt]x",
                     "memory_free_kib": "memory_free_kib"},
            "SR": {"physical_utilisation": "physical_utilisation|size"},
        }[kind]
        if kind == "Host" and re.match(r"sr_io_throughput_total_[0-9a-f]{8}$", name):
            return name[3:]
        if name not in table:
            raise ConfigError(f"variable {name}: no default rrd_regex - please specify one")
        return table[name]
    if tag == "alarm_trigger_period":
        return "60"
    if tag == "alarm_auto_inhibit_period":
        return "3600"
    if tag == "alarm_trigger_level":
        levels = {"VM": {"fs_usage": "0.9", "log_fs_usage": "0.9", "mem_usage": "0.95"},
                  "SR": {"physical_utilisation": "0.8"}}.get(kind, {})
        if name not in levels:
            raise ConfigError(f"variable {name}: no default alarm_trigger_level - please specify one")
        return levels[name]
    if tag == "alarm_trigger_sense":
        return "low" if name in ("memory_internal_free", "memory_free_kib") else "high"
    if tag == "alarm_priority":
        return "3"
    raise ConfigError(f"variable {name}: no default available for tag {tag}")


class Variable:
    """One ``<variable>`` of a configuration, with perfmon's state (``VariableState``)."""

    def __init__(self, node, kind, now):
        try:
            self.name = node.getElementsByTagName("name")[0].getAttribute("value")
        except IndexError:
            raise ConfigError("variable missing 'name' tag") from None

        def value(tag):
            found = node.getElementsByTagName(tag)
            return found[0].getAttribute("value") if found else _defaults(kind, self.name, tag)

        self.node = node
        self.xml = node.toxml()
        try:
            self.regex = re.compile("^%s$" % value("rrd_regex"))
        except re.error:
            raise ConfigError(f"variable {self.name}: regex does not compile") from None
        function = value("consolidation_fn")
        if function not in CONSOLIDATION and function != "get_percent_sr_usage":
            raise ConfigError(f"variable {self.name}: consolidation function {function} not supported here")
        self.function = function
        try:
            self.period = int(value("alarm_trigger_period"))
            self.inhibit = int(value("alarm_auto_inhibit_period"))
            self.level = float(value("alarm_trigger_level"))
        except ValueError as exc:
            raise ConfigError(f"variable {self.name}: {exc}") from None
        self.high = value("alarm_trigger_sense") == "high"
        self.priority = value("alarm_priority")
        self.last_alarm = now - self.inhibit
        self.countdown = self.period
        self.value = None

    def update(self, value, now):
        """One row's value; the alarm body when it raises one."""
        self.value = value
        bad = value > self.level if self.high else value < self.level
        if not bad:
            self.countdown = self.period
            return None
        self.countdown -= RRD_STEP
        if self.countdown > 0:
            return None
        self.countdown = self.period
        if now - self.last_alarm < self.inhibit:
            return None
        self.last_alarm = now
        return body(value, self.node)


def body(value, node):
    """perfmon's message body: ``"value: %f\\nconfig:\\n%s" % (value, xmldoc.toprettyxml())``."""
    return "value: %f\nconfig:\n%s" % (value, node.toprettyxml())


def parse(xml, kind, now):
    """The variables of a configuration; invalid ones are left out, as perfmon logs and skips them."""
    document = minidom.parseString(xml)
    variables = []
    for node in document.getElementsByTagName("variable"):
        try:
            variables.append(Variable(node, kind, now))
        except ConfigError as exc:
            log.info("perfmon %s config error: %s", kind, exc)
    return variables


class Perfmon:
    """The daemon; :meth:`run` is one pass over every host (what the timer and tests call)."""

    def __init__(self, sim, interval=300.0, clock=time.time):
        self.sim, self.db, self.stats = sim, sim.db, sim.stats
        self.interval = interval
        self.clock = clock
        self.defaults = {}  # "VM" / "Host" / "SR" -> configuration for objects without one
        self.monitors = {}  # object uuid -> (configuration text, [Variable])
        self.starts = {}  # host ref -> start of the next rrd_updates
        self.passes = 0

    def _variables(self, uuid, kind, other_config, now):
        xml = other_config.get("perfmon") or self.defaults.get(kind)
        if not xml:
            self.monitors.pop(uuid, None)
            return []
        current = self.monitors.get(uuid)
        if current is not None and current[0] == xml:
            return current[1]
        try:
            variables = parse(xml, kind, now)
        except ExpatError as exc:
            log.info("perfmon %s %s XML parse error: %s", kind, uuid, exc)
            variables = []
        old = {v.name: v for v in current[1]} if current else {}
        # a variable whose configuration did not change keeps its state
        variables = [old[v.name] if v.name in old and old[v.name].xml == v.xml else v for v in variables]
        self.monitors[uuid] = (xml, variables)
        return variables

    def run(self, now=None, fresh=False):
        """One pass: the alarms raised, as ``[(message ref, record)]``.  A pass reads what was
        recorded since the previous one (the first, and a ``fresh`` one, the last
        ``max(interval, 300)`` seconds)."""
        now = self.clock() if now is None else now
        db = self.db
        raised = []
        self.passes += 1
        with db.lock:
            work = []
            for host_ref, host in db.tables["host"].items():
                owners = [("Host", host["uuid"], host["other_config"], self.stats.host_owner(host_ref))]
                for vm in self.stats.resident_vms(host_ref):
                    record = db.tables["VM"][vm]
                    owners.append(("VM", record["uuid"], record["other_config"], self.stats.vm_owner(vm)))
                window = int(now - max(self.interval, 300.0))
                start = window if fresh else self.starts.get(host_ref, window)
                work.append((host_ref, start, owners))
            srs = [(sr["uuid"], sr) for sr in db.tables["SR"].values()]
        alarms = []
        for host_ref, start, owners in work:
            last = self.stats.last_updated()
            last_cdp = RRD_STEP * (int(last) // RRD_STEP)
            times = []
            t = last_cdp
            while t >= start and len(times) < 120:
                times.append(t)  # newest first, the report's row order
                t -= RRD_STEP
            self.starts[host_ref] = last_cdp + 1
            if not times:
                continue
            for kind, uuid, other_config, owner in owners:
                variables = self._variables(uuid, kind, other_config, now)
                if not variables:
                    continue
                frame = self.stats.states(owner, times, RRD_STEP)
                for variable in variables:
                    matched = [ds for ds in owner.dss if variable.regex.match(ds.name)]
                    series = [self.stats.series(owner, ds, times, RRD_STEP, frame) for ds in matched]
                    consolidate = CONSOLIDATION.get(variable.function)
                    if consolidate is None:
                        continue
                    for row in range(len(times)):
                        text = variable.update(consolidate([values[row] for values in series]), now)
                        if text is not None:
                            alarms.append((kind, uuid, variable.priority, text))
        for uuid, sr in srs:
            variables = self._variables(uuid, "SR", sr["other_config"], now)
            for variable in variables:
                if variable.function != "get_percent_sr_usage":
                    continue
                forced = self.stats.overrides.get(uuid, {}).get("physical_utilisation")
                usage = forced[0] if forced else (sr["physical_utilisation"] / sr["physical_size"]
                                                  if sr["physical_size"] else 0.0)
                text = variable.update(usage, now)
                if text is not None:
                    alarms.append(("SR", uuid, variable.priority, text))
        with db.lock:
            for kind, uuid, priority, text in alarms:
                raised.append(self.create_alarm(kind, uuid, priority, text, now))
            db.commit()
        return raised

    def create_alarm(self, kind, uuid, priority, text, now=None):
        """An ALARM message (``message.create("ALARM", priority, cls, uuid, body)``)."""
        now = self.clock() if now is None else now
        try:
            level = int(priority)
        except (TypeError, ValueError):
            level = 3
        fields = {"name": "ALARM", "priority": level, "cls": kind, "obj_uuid": uuid, "body": text,
                  "timestamp": DateTime(time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime(now)))}
        ref = self.db.create("message", fields)
        return ref, self.db.tables["message"][ref]

    def trigger(self, uuid, variable="cpu_usage", value=None):
        """Raise one alarm now for the object ``uuid``, with the body perfmon writes for
        ``variable`` of its configuration (or a plain one at level 0.9)."""
        db = self.db
        with db.lock:
            kind, record = self._find(uuid)
            now = self.clock()
            xml = record["other_config"].get("perfmon") or self.defaults.get(kind) or ""
            node = None
            if xml:
                try:
                    for candidate in parse(xml, kind, now):
                        if candidate.name == variable:
                            node = candidate.node
                            level = candidate.level
                            priority = candidate.priority
                except ExpatError:
                    node = None
            if node is None:
                document = minidom.parseString(f'<config><variable><name value="{variable}"/>'
                                               '<alarm_trigger_level value="0.9"/></variable></config>')
                node = document.getElementsByTagName("variable")[0]
                level, priority = 0.9, "3"
            value = level * 1.05 if value is None else float(value)
            ref, message = self.create_alarm(kind, uuid, priority, body(value, node), now)
            db.commit()
        return ref, message

    def _find(self, uuid):
        for kind, cls in (("VM", "VM"), ("Host", "host"), ("SR", "SR")):
            ref = self.db.uuid_index[cls].get(uuid)
            if ref is not None:
                return kind, self.db.tables[cls][ref]
        raise KeyError(f"no VM, host or SR with uuid {uuid}")

    def loop(self, stopping):
        """The timer: a pass every ``interval`` seconds (none while it is 0); a new interval
        counts from the last pass."""
        last = time.monotonic()
        while not stopping.is_set():
            if self.interval <= 0 or time.monotonic() - last < self.interval:
                stopping.wait(0.2)
                continue
            try:
                self.run()
            except Exception:  # the daemon must live on, as perfmon logs and carries on
                log.exception("perfmon pass failed")
            last = time.monotonic()

    def configure(self, body):
        """``POST /_sim/perfmon``: ``{"interval": seconds, "default": {"VM"|"Host"|"SR": xml}, "run": true}``
        (a run reads the last ``max(interval, 300)`` seconds, whatever earlier passes read)."""
        result = {}
        if "interval" in body:
            self.interval = float(body["interval"])
        if "default" in body:
            defaults = body["default"]
            if not isinstance(defaults, dict) or not set(defaults) <= {"VM", "Host", "SR"}:
                raise ValueError('default must map "VM", "Host" or "SR" to a configuration')
            for kind, xml in defaults.items():
                if xml:
                    minidom.parseString(xml)
                    self.defaults[kind] = xml
                else:
                    self.defaults.pop(kind, None)
        if body.get("run"):
            result["alarms"] = [dict(message, ref=ref) for ref, message in self.run(fresh=True)]
        result.update(interval=self.interval, defaults=self.defaults, passes=self.passes)
        return result


__all__ = ["Perfmon", "body", "parse"]
