"""Differential test against Xen Orchestra's own mapping (issue #12): the golden records
(``tests/data/xo-golden/``, every class including the metrics classes) go through
``objects.trim`` and ``objects.to_xo`` as ``on_batch`` feeds them, and every field of every
object of every collection xorest serves must equal what xo-server 5.207.2's
``xapi-object-to-xo`` (and the REST API's ``parseAlarm``) made of them.

Objects one side lacks are differences too.  The only differences allowed are in
:data:`ALLOWED`, each with its reason.  Run with ``-s`` to see the fields compared.  The data
itself is held to the team's reference by its recorded hashes (:data:`GOLDEN_SHA256`).
"""
import fnmatch
import hashlib
import json
import os

import pytest
import zstandard

from xorest import objects
from xorest.xapi.watcher import WATCHED_CLASSES

from . import golden
from .conftest import ROOT

#: (collection, field path, kind) -> why xorest differs from Xen Orchestra there.  Paths
#: are fnmatch patterns over ``.field.sub[0]`` paths; kinds are extra, missing, value, length.
ALLOWED = {
    ("vdis", ".read_only", "extra"):
        "xorest keeps VDI.read_only: disk imports refuse read-only VDIs with it, and clients filter on it",
    ("vdi-snapshots", ".read_only", "extra"): "as for vdis (snapshots are read-only disks to import into)",
    ("messages", ".priority", "extra"):
        "xorest keeps XAPI's message priority (1 urgent … 5 informational), which Xen Orchestra drops: "
        "clients sort and filter on it",
    ("alarms", ".priority", "extra"): "alarms are messages: the same priority as in messages",
    ("xapi-tasks", ".error_info", "extra"):
        "xorest keeps task.error_info: XAPI's error code and parameters are the only account of a failed "
        "task",
}

_SUMMARY = {}

#: sha256 of each data file of the team's reference (shared/reference/xo-golden, computed
#: there): the repository's copies, once uncompressed, must be these bytes.  The reference's
#: README.md is not copied (tests/data/xo-golden/README.rst is this repository's own account).
GOLDEN_SHA256 = {
    "records.json": "dc1bea41629cf4c77793e4d04d5be7d3abf2ee8db469584e99caa1de31c38aab",
    "xo-objects.json": "5899479a267cbcf3e7ab9db1ba0ea63f954ef4922c89eb6bf2f16b7fbe23538c",
}
#: Where the team's reference is; absent on a fresh clone (CI), where only the copy is checked.
SHARED_GOLDEN = os.path.join(ROOT, "..", "shared", "reference", "xo-golden")


@pytest.fixture(scope="module")
def mapped():
    served, _ = golden.map_records()
    return served


@pytest.fixture(scope="module")
def reference():
    return golden.golden_collections()


def _allowed(collection, path, kind):
    return any(c == collection and k == kind and fnmatch.fnmatchcase(path, p) for c, p, k in ALLOWED)


def _compare(collection, mine, theirs):
    """``(differences, fields compared, values compared)`` of one collection."""
    found, fields, values = [], 0, 0
    for key in sorted(set(mine) | set(theirs)):
        if key not in mine:
            found.append((collection, key, "", "object missing", None, theirs[key].get("type")))
            continue
        if key not in theirs:
            found.append((collection, key, "", "object extra", mine[key].get("type"), None))
            continue
        fields += len(set(mine[key]) | set(theirs[key]))
        values += golden.leaves(theirs[key])
        for path, kind, a, b in golden.differences(mine[key], theirs[key]):
            if not _allowed(collection, path, kind):
                found.append((collection, key, path, kind, a, b))
    return found, fields, values


@pytest.mark.parametrize("collection", sorted(objects.COLLECTIONS))
def test_collection_equals_xen_orchestra(mapped, reference, collection):
    theirs = reference[collection]
    assert theirs, f"the golden data has no {collection}: nothing would be compared"
    found, fields, values = _compare(collection, mapped.get(collection, {}), theirs)
    _SUMMARY[collection] = (len(theirs), fields, values)
    assert not found, f"{len(found)} differences in {collection}, first ones:\n" + \
        "\n".join(repr(d)[:300] for d in found[:15])


def test_key_order_is_xen_orchestra_s(mapped, reference):
    """Xen Orchestra's keys come in its order in every object and nested map (xorest's
    allowed extra keys may sit anywhere)."""
    wrong = []

    def walk(collection, key, mine, theirs, path):
        if isinstance(mine, dict) and isinstance(theirs, dict):
            order = [k for k in mine if k in theirs]
            if order != [k for k in theirs if k in mine]:
                wrong.append((collection, key, path, order, list(theirs)))
            for k in order:
                walk(collection, key, mine[k], theirs[k], f"{path}.{k}")
        elif isinstance(mine, list) and isinstance(theirs, list):
            for i, (a, b) in enumerate(zip(mine, theirs)):
                walk(collection, key, a, b, f"{path}[{i}]")

    for collection, theirs in reference.items():
        for key, obj in theirs.items():
            if key in mapped.get(collection, {}):
                walk(collection, key, mapped[collection][key], obj, "")
    assert not wrong, f"{len(wrong)} objects differ in key order, first: {wrong[:3]}"


def test_objects_are_strict_json(mapped):
    """No placeholder for ``undefined`` and no NaN leaks out: every object serialises."""
    for collection, objs in mapped.items():
        for obj in objs.values():
            json.dumps(obj, allow_nan=False)


def test_watched_classes_carry_everything_mapping_reads(mapped):
    """A live pool delivers only ``WATCHED_CLASSES``: mapping only those golden records
    gives the same objects (VLAN, host_cpu and console records are not needed)."""
    served, _ = golden.map_records(classes=set(WATCHED_CLASSES))
    assert served == mapped
    assert set(objects.RECORD_FIELDS) <= set(WATCHED_CLASSES)
    assert set(golden.records()) - set(WATCHED_CLASSES) <= {"VLAN", "host_cpu", "console"}


def test_trimmed_records_map_as_whole_ones(mapped):
    pool = {ref: (cls, record) for cls, by_ref in golden.records().items() for ref, record in by_ref.items()}
    whole, _ = golden.map_pool(pool)
    assert whole == mapped


def test_mapping_reads_only_declared_fields():
    from .test_objects import RecordingRecord

    reads = set()
    pool = {ref: (cls, RecordingRecord(cls, objects.trim(cls, record), reads))
            for cls, by_ref in golden.records().items() for ref, record in by_ref.items()}
    golden.map_pool(pool)
    undeclared = {(cls, key) for cls, key in reads if key not in objects.RECORD_FIELDS.get(cls, {key})}
    assert not undeclared, f"add these to the mapper module's FIELDS: {sorted(undeclared)}"


def test_allow_list_entries_are_all_used(mapped, reference):
    """An allow-list entry that no longer matches anything must go."""
    used = set()
    for collection, theirs in reference.items():
        mine = mapped.get(collection, {})
        for key in set(mine) & set(theirs):
            for path, kind, _, _ in golden.differences(mine[key], theirs[key]):
                used.update(e for e in ALLOWED if e[0] == collection and e[2] == kind
                            and fnmatch.fnmatchcase(path, e[1]))
    assert used == set(ALLOWED), f"unused allow-list entries: {set(ALLOWED) - used}"


def test_summary():
    """Fields compared per collection (``-s`` prints them)."""
    if not _SUMMARY:
        pytest.skip("run with the collection tests")
    width = max(len(c) for c in _SUMMARY)
    print(f"\n{'collection':{width}}  objects  fields  values")
    for collection, (count, fields, values) in sorted(_SUMMARY.items()):
        print(f"{collection:{width}}  {count:7}  {fields:6}  {values:6}")
    totals = [sum(v[i] for v in _SUMMARY.values()) for i in range(3)]
    print(f"{'total':{width}}  {totals[0]:7}  {totals[1]:6}  {totals[2]:6}")


def _sha256_uncompressed(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream, zstandard.ZstdDecompressor().stream_reader(stream) as reader:
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.parametrize("name", sorted(GOLDEN_SHA256))
def test_golden_copy_is_the_reference_byte_for_byte(name):
    """The repository's golden data is the team's reference, byte for byte: a change to the
    copy (even one that would make the differential test pass) fails here."""
    assert _sha256_uncompressed(os.path.join(golden.FOLDER, name + ".zst")) == GOLDEN_SHA256[name]
    readme = open(os.path.join(golden.FOLDER, "README.rst"), encoding="utf-8").read()
    assert f"{name:<20}{GOLDEN_SHA256[name]}" in readme, "README.rst states another hash"


def test_golden_copy_holds_every_reference_file():
    """The copy's files are the reference's data files (nothing missing, nothing extra); where
    the reference itself is on this machine, its files still hash as recorded."""
    copied = {n[:-len(".zst")] for n in os.listdir(golden.FOLDER) if n.endswith(".zst")}
    assert copied == set(GOLDEN_SHA256)
    if not os.path.isdir(SHARED_GOLDEN):
        return  # a fresh clone: the recorded hashes are the reference
    shared = {n for n in os.listdir(SHARED_GOLDEN) if n.endswith(".json")}
    assert shared == set(GOLDEN_SHA256), "the reference has other data files: copy them and record them"
    for name in shared:
        with open(os.path.join(SHARED_GOLDEN, name), "rb") as fh:
            assert hashlib.file_digest(fh, "sha256").hexdigest() == GOLDEN_SHA256[name], name
