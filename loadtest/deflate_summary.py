#!/usr/bin/env python3
"""The table of loadtest/deflate_targets.sh: per target (a payload shape, with
or without permessage-deflate), the highest passing fan-out step of every
round and their median, with p50/p99, broker CPU and wire bytes per delivery
at that step (medians over the rounds); then, per shape, compressed against
plain: bytes per delivery and highest passing step, against issue 18's
targets (>= 2.5x fewer bytes for the 2 KB scoreboard, highest passing step
>= 70% of plain's).

Usage: python3 loadtest/deflate_summary.py DIR
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from socketio_summary import best_step, deliveries, fmt, med, rate, rounds  # noqa: E402

SHAPES = ("quote", "scoreboard")
BYTES_GOAL = 2.5  # scoreboard: plain wire bytes per delivery over compressed
STEP_GOAL = 0.7  # compressed highest passing step over plain's


def main():
    directory = sys.argv[1]
    names = [f"{s}-{m}" for s in SHAPES for m in ("plain", "deflate")]
    runs = {n: r for n in names if (r := rounds(directory, n))}
    if not runs:
        sys.exit(f"no reports in {directory}")
    n_rounds = max(max(r) for r in runs.values())
    head = ["target"] + [f"round {i}" for i in range(1, n_rounds + 1)]
    head += ["median", "p50 ms", "p99 ms", "broker CPU %", "wire B/delivery", "message B/delivery"]
    print("Highest passing step, published msg/s (deliveries/s); at it, medians over rounds:")
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    medians, wire = {}, {}
    for name, by_round in runs.items():
        cells, best, p50, p99, cpu, wb, mb, subs = [name], [], [], [], [], [], [], None
        for i in range(1, n_rounds + 1):
            report = by_round.get(i)
            if i not in by_round:
                cells.append("")
                continue
            if report is None:
                cells.append("failed to run")
                continue
            subs = report["subscribers"]
            # Bytes per delivery do not depend on the rate: every step's count.
            wb += [s["wire_bytes_per_delivery"] for s in report["steps"] if s.get("wire_bytes_per_delivery")]
            mb += [s["message_bytes_per_delivery"] for s in report["steps"] if s.get("message_bytes_per_delivery")]
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
        wire[name] = med(wb)
        if m is None:
            cells.append("-")
        elif m == 0:
            cells.append("**none passed**")
        else:
            cells.append(f"**{rate(m)}** ({deliveries(m * subs)})")
        cells += [fmt(med(p50), 2), fmt(med(p99)), fmt(med(cpu), 0), fmt(med(wb), 1), fmt(med(mb), 1)]
        print("| " + " | ".join(cells) + " |")
    print()
    for shape in SHAPES:
        plain, z = f"{shape}-plain", f"{shape}-deflate"
        if wire.get(plain) and wire.get(z):
            ratio = wire[plain] / wire[z]
            goal = f" (target >= {BYTES_GOAL}x: {'met' if ratio >= BYTES_GOAL else 'NOT met'})" if shape == "scoreboard" else ""
            print(f"- {shape}: {ratio:.2f}x fewer wire bytes per delivery with permessage-deflate{goal}")
        if medians.get(plain) and medians.get(z) is not None:
            ratio = medians[z] / medians[plain]
            verdict = "met" if ratio >= STEP_GOAL else "NOT met"
            print(f"- {shape}: highest passing step with deflate is {ratio:.0%} of plain's (target >= {STEP_GOAL:.0%}: {verdict})")


if __name__ == "__main__":
    main()
