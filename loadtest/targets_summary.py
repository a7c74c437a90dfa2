#!/usr/bin/env python3
"""Medians of the reports loadtest/targets.sh wrote, as the tables of BENCHMARKS.md.

Usage: python3 loadtest/targets_summary.py DIR
"""
import glob
import json
import os
import re
import statistics
import sys


def load(directory, name):
    """Every round's report of `name`, in round order."""
    found = []
    for path in glob.glob(os.path.join(directory, f"{name}-*.json")):
        m = re.fullmatch(rf"{re.escape(name)}-(\d+)\.json", os.path.basename(path))
        if m:
            with open(path) as f:
                found.append((int(m.group(1)), json.load(f)))
    return [r for _, r in sorted(found)]


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"


def rate_label(deliveries):
    if deliveries >= 1e6:
        return f"{deliveries / 1e6:g}M"
    return f"{deliveries / 1e3:g}k"


def fanout_table(directory, names):
    """Per deliveries/s: p50 and p99 (the runs and their median) and pass/fail per server."""
    runs = {n: load(directory, n) for n in names}
    rates = sorted({s["offered_rate"] * r["subscribers"] for rs in runs.values() for r in rs for s in r["steps"]})
    header = "| deliveries/s | " + " | ".join(f"{n} p50 | {n} p99 (runs) | {n} passed" for n in names) + " |"
    print(header)
    print("|" + " --- |" * (1 + 3 * len(names)))
    best = {n: [] for n in names}
    for rate in rates:
        cells = [rate_label(rate)]
        for n in names:
            steps = [s for r in runs[n] for s in r["steps"] if s["offered_rate"] * r["subscribers"] == rate]
            if not steps:
                cells += ["", "", ""]
                continue
            p99s = [s["latency_ms"]["p99"] for s in steps]
            passed = sum(1 for s in steps if s["passed"])
            cells.append(fmt(med([s["latency_ms"]["p50"] for s in steps])))
            cells.append(f"{', '.join(fmt(p, 1) for p in p99s)} (**{fmt(med(p99s), 1)}**)")
            lost = max(1 - s["delivered_fraction"] for s in steps)
            cells.append(f"{passed}/{len(steps)}" + (f", worst loss {lost:.2%}" if lost > 0 else ""))
        print("| " + " | ".join(cells) + " |")
    for n in names:
        for r in runs[n]:
            best[n].append(max((s["offered_rate"] * r["subscribers"] for s in r["steps"] if s["passed"]), default=0))
    print()
    for n in names:
        if best[n]:
            print(f"- {n}: highest passing step per run {[rate_label(b) for b in best[n]]}, median {rate_label(med(best[n]))}")
    print()
    cpu = {n: {} for n in names}
    for n in names:
        for r in runs[n]:
            for s in r["steps"]:
                cpu[n].setdefault(s["offered_rate"] * r["subscribers"], []).append(s["broker"]["cpu_percent"])
    for n in names:
        if cpu[n]:
            print(f"- {n} CPU % (median per step): " + ", ".join(f"{rate_label(k)} {med(v):.0f}" for k, v in sorted(cpu[n].items())))
    print()


# The 10,000-subscriber runs: report name and column label, in column order.
WIDE = (("wide-raw", "raw"), ("wide-json", "JSON"), ("wide-floor", "floor"), ("wide-node", "Node `ws`"))


def deliveries(report, step):
    return step["offered_rate"] * report["subscribers"]


def percent(fraction):
    return "100%" if fraction >= 1 else f"{fraction:.2%}"


def best_step(report, ok):
    """The highest deliveries/s of a step of `report` that satisfies `ok`, or 0."""
    return max((deliveries(report, s) for s in report["steps"] if ok(s)), default=0)


def wide_table(directory):
    """1 publisher -> 10,000 subscribers, per deliveries/s: p50 (median over the runs), p99 (the runs and
    their median; how many passed when not all), delivered (median; the runs when not all complete) and
    server CPU (median) per server, then the highest passing step of each."""
    def label(d):
        return rate_label(d) if d else "none"

    runs = {n: load(directory, name) for name, n in WIDE}
    runs = {n: rs for n, rs in runs.items() if rs}
    if not runs:
        return
    rates = sorted({deliveries(r, s) for rs in runs.values() for r in rs for s in r["steps"]})
    print("1 publisher -> 10,000 subscribers")
    print()
    print("| deliveries/s | " + " | ".join(f"{n} p50 | {n} p99 (runs) | {n} delivered | {n} CPU %" for n in runs) + " |")
    print("|" + " --- |" * (1 + 4 * len(runs)))
    for rate in rates:
        cells = [rate_label(rate)]
        for n, rs in runs.items():
            steps = [s for r in rs for s in r["steps"] if deliveries(r, s) == rate]
            if not steps:
                cells += ["", "", "", ""]
                continue
            p99s = [s["latency_ms"]["p99"] for s in steps]
            passed = sum(1 for s in steps if s["passed"])
            delivered = [s["delivered_fraction"] for s in steps]
            cpu = [(s.get("broker") or {}).get("cpu_percent") for s in steps]
            cells.append(fmt(med([s["latency_ms"]["p50"] for s in steps])))
            cells.append(f"{', '.join(fmt(p, 1) for p in p99s)} (**{fmt(med(p99s), 1)}**)"
                         + (f", {passed} of {len(steps)} passed" if passed < len(steps) else ""))
            cells.append(percent(med(delivered))
                         + (f" ({', '.join(percent(d) for d in delivered)})" if min(delivered) < 1 < len(delivered) else ""))
            cells.append(fmt(med(cpu), 0))
        print("| " + " | ".join(cells) + " |")
    print()
    for n, rs in runs.items():
        best = [best_step(r, lambda s: s["passed"]) for r in rs]
        # Everything delivered with the publisher on schedule, whatever the p99: how far the server
        # goes when a burst of 10,000 writes per message keeps p99 above the limit.
        full = [best_step(r, lambda s: s["delivered_fraction"] >= 0.9999 and s["sent"] >= s["intended"]) for r in rs]
        print(f"- {n}: highest passing step per run {[label(b) for b in best]}, median {label(med(best))}; "
              f"highest step delivered in full (any p99) {[label(f) for f in full]}, median {label(med(full))}")
    print()


def idle_table(directory):
    """RSS per idle subscribed connection (connect --subscribe) at 10,000 and 19,000 connections."""
    for name, what in (("connect10k", "10,000"), ("connect19k", "19,000")):
        runs = load(directory, name)
        if not runs:
            continue
        per = [r["connect"]["broker_rss_per_connection"] for r in runs]
        rate = [r["connect"]["rate_per_s"] for r in runs]
        ok = [f"{r['connect']['connected']}/{r['connect']['attempted']}" for r in runs]
        print(f"- {what} idle subscribed connections: {ok} open; broker RSS per connection "
              f"{med(per):,.0f} B = {med(per) / 1024:.2f} KiB median (runs {', '.join(f'{p:,.0f}' for p in per)} B; "
              f"target <= 1.4 KB); connect rate /s {[round(x) for x in rate]} (median {med(rate):.0f})")


def connect_table(directory):
    runs = load(directory, "connect")
    if not runs:
        return
    per = [r["connect"]["broker_rss_per_connection"] / 1024 for r in runs]
    rate = [r["connect"]["rate_per_s"] for r in runs]
    ok = [f"{r['connect']['connected']}/{r['connect']['attempted']}" for r in runs]
    print(f"- idle connections: {ok}; RSS per connection KiB {[fmt(p) for p in per]} (median {fmt(med(per))}); "
          f"connect rate /s {[round(x) for x in rate]} (median {med(rate):.0f})")


def slow_table(directory):
    slow, readers = load(directory, "slow"), load(directory, "readers")
    if not slow or not readers:
        return
    s99 = [r["steps"][0]["latency_ms"]["p99"] for r in slow]
    r99 = [r["steps"][0]["latency_ms"]["p99"] for r in readers]
    rss = [r["broker_peak_rss"] / 2**20 for r in slow]
    print(f"- 10% stalled: readers' p99 {[fmt(x) for x in s99]} (median {fmt(med(s99))}) vs 900 readers alone "
          f"{[fmt(x) for x in r99]} (median {fmt(med(r99))}): ratio {med(s99) / med(r99):.2f}; "
          f"broker peak RSS MiB {[fmt(x, 1) for x in rss]}")


def costs_table(directory):
    runs = {k: load(directory, f"cost-{k}") for k in ("default", "metrics_off", "history_off")}
    if not all(runs.values()):
        return
    cpu = {k: [r["steps"][0]["broker"]["cpu_percent"] for r in v] for k, v in runs.items()}
    p99 = {k: [r["steps"][0]["latency_ms"]["p99"] for r in v] for k, v in runs.items()}
    for k in runs:
        print(f"- {k}: broker CPU % {[round(c) for c in cpu[k]]} (median {med(cpu[k]):.1f}), "
              f"p99 ms {[fmt(x) for x in p99[k]]} (median {fmt(med(p99[k]))})")
    for off, what in (("metrics_off", "metrics"), ("history_off", "history")):
        print(f"- {what} on costs {(med(cpu['default']) / med(cpu[off]) - 1):+.1%} broker CPU at the same delivered rate")


def main():
    directory = sys.argv[1]
    names = [n for n in ("fanout-raw", "fanout-json", "floor", "node") if load(directory, n)]
    if names:
        fanout_table(directory, names)
    wide_table(directory)
    connect_table(directory)
    idle_table(directory)
    slow_table(directory)
    costs_table(directory)


if __name__ == "__main__":
    main()
