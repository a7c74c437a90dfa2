#!/usr/bin/env python3
"""Compares an Autobahn|Testsuite index.json with the committed expected results.

Only what a case's outcome is made of is compared: `behavior`,
`behaviorClose` and `remoteCloseCode`. Durations and report file names vary
from run to run and are dropped. Prints the counts per behaviour, every
case that differs, and exits 1 on any difference. With --update, writes the
new results to the expected file instead.
"""

import json
import sys
from collections import Counter

KEPT = ("behavior", "behaviorClose", "remoteCloseCode")


def case_key(case):
    """Sorts "9.10.2" after "9.2.1": numerically, part by part."""
    return [int(p) for p in case.split(".")]


def normalize(index):
    """{case: {kept fields}} for the one agent in an index.json."""
    if len(index) != 1:
        sys.exit(f"expected results for one agent, got {sorted(index)}")
    (cases,) = index.values()
    return {
        case: {k: cases[case].get(k) for k in KEPT}
        for case in sorted(cases, key=case_key)
    }


def main(argv):
    update = "--update" in argv
    paths = [a for a in argv if a != "--update"]
    if len(paths) != 2:
        sys.exit("usage: compare.py [--update] INDEX_JSON EXPECTED_JSON")
    with open(paths[0]) as f:
        got = normalize(json.load(f))
    counts = Counter(r["behavior"] for r in got.values())
    close_counts = Counter(r["behaviorClose"] for r in got.values())
    print("cases:", len(got), dict(sorted(counts.items())))
    print("close behaviour:", dict(sorted(close_counts.items())))
    for case, r in got.items():
        if r["behavior"] != "OK" or r["behaviorClose"] != "OK":
            print(f"  {case}: {r}")
    if update:
        # One case per line: a change of outcome is a one-line diff.
        lines = [f"  {json.dumps(case)}: {json.dumps(r)}" for case, r in got.items()]
        with open(paths[1], "w") as f:
            f.write("{\n" + ",\n".join(lines) + "\n}\n")
        print(f"wrote {paths[1]}")
        return 0
    try:
        with open(paths[1]) as f:
            want = json.load(f)
    except FileNotFoundError:
        print(f"{paths[1]} is missing; run with FANOUT_AUTOBAHN_UPDATE=1 to write it", file=sys.stderr)
        return 1
    diffs = []
    for case in sorted(set(got) | set(want), key=case_key):
        if got.get(case) != want.get(case):
            diffs.append(case)
            print(f"DIFFERS {case}: expected {want.get(case)}, got {got.get(case)}")
    if diffs:
        print(f"{len(diffs)} case(s) differ from {paths[1]}", file=sys.stderr)
        return 1
    print(f"all {len(got)} cases as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
