#!/usr/bin/env python3
"""The table of loadtest/socketio_targets.sh: per target, the highest passing
fan-out step of every round, their median, p50/p99 and server CPU at that step
(medians over the rounds), then fanout Socket.IO against Node socket.io.

Usage: python3 loadtest/socketio_summary.py DIR
"""
import glob
import json
import os
import re
import statistics
import sys

TARGETS = ("fanout-json", "fanout-socketio", "node-socketio")
GOAL = 10  # fanout Socket.IO's highest passing step against Node socket.io's


def rounds(directory, name):
    """{round: report or None (the run wrote no report)} for `name`."""
    found = {}
    for path in glob.glob(os.path.join(directory, f"{name}-*.txt")):
        m = re.fullmatch(rf"{re.escape(name)}-(\d+)\.txt", os.path.basename(path))
        if m:
            report = path[:-4] + ".json"
            found[int(m.group(1))] = json.load(open(report)) if os.path.exists(report) else None
    return dict(sorted(found.items()))


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def rate(msgs):
    if msgs is None:
        return "-"
    return f"{msgs / 1e3:g}k" if msgs >= 1e3 else f"{msgs:g}"


def deliveries(d):
    if d is None:
        return "-"
    return f"{d / 1e6:g}M/s" if d >= 1e6 else f"{d / 1e3:g}k/s"


def fmt(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def best_step(report):
    """The highest passing step of a report (None: none passed, or no report)."""
    if not report:
        return None
    passing = [s for s in report["steps"] if s["passed"]]
    return max(passing, key=lambda s: s["offered_rate"], default=None)


def main():
    directory = sys.argv[1]
    runs = {n: rounds(directory, n) for n in TARGETS}
    runs = {n: r for n, r in runs.items() if r}
    if not runs:
        sys.exit(f"no reports in {directory}")
    n_rounds = max(max(r) for r in runs.values())
    head = ["target"] + [f"round {i}" for i in range(1, n_rounds + 1)]
    head += ["median", "p50 ms", "p99 ms", "server CPU %", "subscribers"]
    print("Highest passing step, published msg/s (deliveries/s); p50, p99 and CPU at it, median over rounds:")
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    medians = {}
    for name, by_round in runs.items():
        cells, best, p50, p99, cpu, subs = [name], [], [], [], [], None
        for i in range(1, n_rounds + 1):
            report = by_round.get(i)
            if i not in by_round:
                cells.append("")
                continue
            if report is None:
                cells.append("failed to run")
                continue
            subs = report["subscribers"]
            step = best_step(report)
            if step is None:
                cells.append("none passed")
                best.append(0)
                continue
            best.append(step["offered_rate"])
            p50.append(step["latency_ms"]["p50"])
            p99.append(step["latency_ms"]["p99"])
            cpu.append((step.get("broker") or {}).get("cpu_percent"))
            cells.append(f"{rate(step['offered_rate'])} ({deliveries(step['offered_rate'] * subs)})")
        m = med(best)
        medians[name] = m
        if m is None:
            cells.append("-")
        elif m == 0:
            cells.append("**none passed**")
        else:
            cells.append(f"**{rate(m)}** ({deliveries(m * subs)})")
        cells += [fmt(med(p50), 2), fmt(med(p99)), fmt(med(cpu), 0), str(subs or "-")]
        print("| " + " | ".join(cells) + " |")
    print()
    for name, by_round in runs.items():
        notes = [f"round {i}: {n}" for i, r in by_round.items() if r for n in r.get("notes", [])]
        for n in notes:
            print(f"- {name} {n}")
    sio, node, js = medians.get("fanout-socketio"), medians.get("node-socketio"), medians.get("fanout-json")
    if sio is not None and node:
        ratio = sio / node
        verdict = "met" if ratio >= GOAL else "NOT met"
        print(f"- fanout Socket.IO / Node socket.io, median highest passing step: {ratio:.1f}x (target >= {GOAL}x: {verdict})")
    elif sio is not None and node == 0:
        print("- Node socket.io passed no step: lower RATES to find its highest passing step")
    if sio is None and "fanout-socketio" in runs:
        print(f"- fanout Socket.IO wrote no report: see {directory}/fanout-socketio-*.txt (is /socket.io/ served?)")
    if sio is not None and js:
        print(f"- fanout Socket.IO / fanout /ws JSON: {sio / js:.2f}x")


if __name__ == "__main__":
    main()
