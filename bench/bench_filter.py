"""Filter speed: xorest.filter against the reference complex-matcher (node), same objects and filters.

Three xorest figures per filter, each against node's (``ratio`` = xorest / node):

- ``table``: what a listing does (:mod:`xorest.filter.table`), with the collection's columns
  already read, as they are for every request between two changes of the collection;
- ``table, 10 changed``: the same after 10 objects were replaced (the table patched at
  those rows, as the service does on a collection that changes all the time);
- ``table, cold``: the same with a new table each time (the first filter after ids came
  or went);
- ``match``: ``node.match`` object by object (events and sub-collections use it).

Run: .venv/bin/python bench/bench_filter.py   (needs node and npm for the reference column)
"""
import json
import os
import random
import shutil
import subprocess
import tempfile
import time

from common import report

from xorest.filter import evaluation_budget, parse
from xorest.filter.table import Table, select

FILTERS = ["power_state:running name_label:/^web/ tags:prod", "prod", "CPUs:number:>=4 !power_state:Halted",
           "name_label:web*01", "|(tags:dev tags:test) auto_poweron?"]


def make_vms(n, seed=7):
    rng = random.Random(seed)
    roles, envs = ["web", "db", "cache", "mail", "ci"], ["prod", "staging", "dev", "test"]
    return [{"id": f"{i:08x}", "type": "VM", "name_label": f"{rng.choice(roles)}-{rng.choice(envs)}-{i:04d}",
             "power_state": rng.choice(["Running", "Halted", "Suspended"]), "tags": rng.sample(envs, 2),
             "CPUs": {"number": rng.choice([1, 2, 4, 8]), "max": 8}, "auto_poweron": rng.random() < .3,
             "memory": {"size": rng.choice([1, 2, 4]) * 2**30}, "addresses": {"0/ipv4/0": f"10.0.{i % 250}.1"},
             "other": {"xo:notes": "note"}, "current_operations": {}} for i in range(n)]


NODE_SCRIPT = """
const {parse} = require('complex-matcher');
const objects = JSON.parse(require('fs').readFileSync(process.argv[2]));
const filters = JSON.parse(process.argv[3]);
const out = {};
for (const f of filters) {
  const m = parse(f); let count = 0;
  for (let i = 0; i < 3; i++) count = objects.filter(o => m.match(o)).length;
  const t = process.hrtime.bigint();
  for (let i = 0; i < 20; i++) count = objects.filter(o => m.match(o)).length;
  out[f] = [Number(process.hrtime.bigint() - t) / 20e9, count];
}
console.log(JSON.stringify(out));
"""


def reference(objects):
    if not (shutil.which("node") and shutil.which("npm")):
        return None
    folder = os.path.join(tempfile.gettempdir(), "xorest-complex-matcher")
    if not os.path.isdir(os.path.join(folder, "node_modules", "complex-matcher")):
        os.makedirs(folder, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--prefix", folder, "complex-matcher@0.7.0"],
                       check=True, capture_output=True, timeout=300)
    data = os.path.join(folder, "objects.json")
    with open(data, "w") as fh:
        json.dump(objects, fh)
    script = os.path.join(folder, "bench.js")
    with open(script, "w") as fh:
        fh.write(NODE_SCRIPT)
    result = subprocess.run(["node", script, data, json.dumps(FILTERS)], capture_output=True, text=True,
                            check=True, cwd=folder, timeout=300)
    return json.loads(result.stdout)


def by_match(node, objects, table):
    return sum(1 for o in objects if node.match(o))


def by_table(node, objects, table):
    return len(select(node, table))


def by_cold_table(node, objects, table):
    return len(select(node, Table(objects)))


def by_patched_table(node, objects, table, rng=random.Random(3), state={}):
    """Replace 10 objects (their memory: counts stay comparable), patch the last table."""
    table = state.get("table") or table
    changed = rng.sample(range(len(objects)), 10)
    for row in changed:
        objects[row] = dict(objects[row], memory={"size": rng.choice([1, 2, 4]) * 2**30})
    state["table"] = table = table.updated(list(objects), changed)
    return len(select(node, table))


WAYS = {"table": by_table, "table, 10 changed": by_patched_table, "table, cold": by_cold_table,
        "match": by_match}


def ours(objects, way):
    out = {}
    table = Table(objects)
    for text in FILTERS:
        node = parse(text, coerce=False)  # same semantics as the 0.7.0 reference on npm
        for _ in range(3):
            count = way(node, objects, table)
        started = time.perf_counter()
        for _ in range(20):
            with evaluation_budget(1.0):
                count = way(node, objects, table)
        out[text] = [(time.perf_counter() - started) / 20, count]
    return out


if __name__ == "__main__":
    objects = make_vms(10000)
    mine = {way: ours([dict(o) for o in objects], function) for way, function in WAYS.items()}
    try:
        ref = reference(objects)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"# reference unavailable: {exc}")
        ref = None
    for way in WAYS:
        for text in FILTERS:
            base = ref[text][0] * 1000 if ref else None
            if ref and ref[text][1] != mine[way][text][1]:
                print(f"# MISMATCH on {text!r}: xorest {mine[way][text][1]} vs reference {ref[text][1]}")
            report(f"filter 10k VMs {way} {text!r}", mine[way][text][0] * 1000, base, "ms")
