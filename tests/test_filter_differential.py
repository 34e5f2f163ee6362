"""Differential test: thousands of random filters and objects, xorest vs the reference
complex-matcher run by node (npm ``complex-matcher@0.7.0``, the version on the registry;
1.x differs only in comparisons, covered by the cm-cases facts)."""
import json
import os
import random
import subprocess

import pytest

from xorest.filter import FilterError, parse

from .conftest import npm_package

ORACLE = os.path.join(os.path.dirname(__file__), "data", "cm_oracle.js")
NAMES = ["name_label", "power_state", "tags", "CPUs", "number", "size", "a", "b", "0", "length", "x.y",
         "Ünïcödé", "σ", "mémoire"]
WORDS = ["web", "Running", "prod", "db", "ß", "STRASSE", "café", "32", "1e3", "0x1F", "-5", ".5", "5.",
         "Infinity", "true", "null", "i", "K", "web-01", "a.b", "$x", "_", "ΣΑΣ", "ordinal"]


def rand_word(rng):
    word = rng.choice(WORDS)
    if rng.random() < 0.3:
        word = word[:rng.randint(1, len(word))]
    return word


def rand_quoted(rng):
    text = rng.choice(WORDS + ["my vm", "a\"b", "back\\slash", "日本", "😀", "", " 7 ", "x:y", "(p)"])
    body = text.replace("\\", "\\\\").replace('"', '\\"')
    if rng.random() < 0.1:
        body = body.replace("\\\\", "\\n")
    return f'"{body}"' if rng.random() > 0.05 else f'"{body}'


def rand_regex(rng):
    body = rng.choice(["^web", "db$", "\\d+", "^[a-z]+-\\d{2}$", "a|b", "(pro|dev)d?", "x.y", "\\w\\s",
                       "[0-9]{2,}", "^$", "\\/", "é", "(?:ab)+", "[^a-c]", "\\bweb\\b", "^.{3}$", ""])
    return f"/{body}/{'i' if rng.random() < 0.3 else ''}"


def rand_term(rng, depth):
    choice = rng.random()
    if depth > 3 or choice < 0.35:
        kind = rng.random()
        if kind < 0.4:
            return rand_word(rng)
        if kind < 0.55:
            return rand_quoted(rng)
        if kind < 0.7:
            return rand_regex(rng)
        if kind < 0.85:
            return rand_word(rng)[:3] + "*" + rand_word(rng)[-2:]
        return rng.choice([">", ">=", "<", "<="]) + rng.choice(["0", "2", "4.5", "-1", "1e3", "0x10", "x"])
    if choice < 0.6:
        name = rng.choice(NAMES)
        name = f'"{name}"' if rng.random() < 0.2 else name
        return f"{name}{rng.choice([':', ' : ', ':'])}{rand_term(rng, depth + 1)}"
    if choice < 0.68:
        return f"{rng.choice(NAMES)}?"
    if choice < 0.78:
        return "!" + rand_term(rng, depth + 1)
    inner = " ".join(rand_term(rng, depth + 1) for _ in range(rng.randint(1, 3)))
    return f"({inner})" if choice < 0.9 else f"|({inner})"


def rand_filter(rng):
    text = " ".join(rand_term(rng, 0) for _ in range(rng.randint(0, 4)))
    if rng.random() < 0.08:  # garbage and broken structure
        pos = rng.randint(0, len(text))
        text = text[:pos] + rng.choice(["(", ")", "|", "!", ":", "?", "#", "'", "\\", "= ", "> "]) + text[pos:]
    return text


def rand_value(rng, depth=0):
    kind = rng.random()
    if depth > 2 or kind < 0.5:
        return rng.choice([None, True, False, 0, 2, 32, -1, 4.5, 1000, 31, "", "web-01", "Running", "prod",
                           "DB", "1320", "café", "ΟΔΟΣ", "x1E3", "0x1f", "line\nbreak", "K", "straße"])
    if kind < 0.75:
        return [rand_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    obj = {name: rand_value(rng, depth + 1) for name in rng.sample(NAMES, rng.randint(0, 4))
           if name != "length"}
    if rng.random() < 0.05:
        obj["length"] = rng.choice([0, 1, 2, "2", -1])
    return obj


@pytest.fixture(scope="module")
def node_matcher():
    return npm_package("complex-matcher@0.7.0", "complex-matcher")


def run_reference(node_matcher, cases):
    node, folder = node_matcher
    payload = "\n".join(json.dumps(c) for c in cases) + "\n"
    result = subprocess.run([node, ORACLE], input=payload, capture_output=True, text=True, cwd=folder,
                            env=dict(os.environ, NODE_PATH=os.path.join(folder, "node_modules")),
                            timeout=600, check=True)
    return [json.loads(line) for line in result.stdout.splitlines()]


def ours(case):
    try:
        node = parse(case["filter"], coerce=False)
    except FilterError as exc:
        return {"ok": False, "message": str(exc)}
    return {"ok": True, "canonical": str(node), "matches": [node.match(v) for v in case["values"]]}


def test_against_reference(node_matcher):
    rng = random.Random(20261127)
    cases = [{"filter": rand_filter(rng), "values": [rand_value(rng) for _ in range(4)]} for _ in range(4000)]
    reference = run_reference(node_matcher, cases)
    mismatches = []
    for case, ref in zip(cases, reference):
        mine = ours(case)
        if ref["ok"] != mine["ok"]:
            mismatches.append((case["filter"], "parse", ref, mine))
        elif not ref["ok"]:
            if ref["type"] == "Error" and ref["message"] != mine["message"]:
                mismatches.append((case["filter"], "error", ref, mine))
            if ref["type"] == "SyntaxError" and not mine["message"].startswith("Invalid regular expression"):
                mismatches.append((case["filter"], "regex error", ref, mine))
        elif ref["canonical"] != mine["canonical"]:
            mismatches.append((case["filter"], "canonical", ref, mine))
        elif ref["matches"] != mine["matches"]:
            mismatches.append((case["filter"], "match", case["values"], ref["matches"], mine["matches"]))
    assert not mismatches, f"{len(mismatches)} of {len(cases)} differ, first: {mismatches[:5]}"
