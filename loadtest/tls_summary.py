#!/usr/bin/env python3
"""The tables of loadtest/tls_targets.sh: the highest passing fan-out step of
plain ws:// and TLS wss:// in every round and their median (TLS's against
plain's, the target being >= 50%); per step, medians over the rounds of p50,
p99, broker CPU, wire bytes and (TLS) records per delivery; and broker RSS per
idle connection over plain and TLS.

Usage: python3 loadtest/tls_summary.py DIR
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from socketio_summary import best_step, deliveries, fmt, med, rate, rounds  # noqa: E402

FANOUTS = ("plain", "tls")
IDLES = ("idle-plain", "idle-tls")
GOAL = 0.5  # TLS's highest passing step over plain's


def highest(directory, runs):
    """Prints the highest passing step per round; returns the medians."""
    n_rounds = max(max(r) for r in runs.values())
    head = ["target"] + [f"round {i}" for i in range(1, n_rounds + 1)] + ["median", "TLS session"]
    print("Highest passing step, published msg/s (deliveries/s):")
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    medians = {}
    for name, by_round in runs.items():
        cells, best, subs, session = [name], [], None, "-"
        for i in range(1, n_rounds + 1):
            report = by_round.get(i)
            if i not in by_round:
                cells.append("")
                continue
            if report is None:
                cells.append("failed to run")
                continue
            subs = report["subscribers"]
            session = ((report.get("tls") or {}).get("session")) or session
            step = best_step(report)
            if step is None:
                cells.append("none passed")
                best.append(0)
                continue
            best.append(step["offered_rate"])
            cells.append(f"{rate(step['offered_rate'])} ({deliveries(step['offered_rate'] * subs)})")
        m = med(best)
        medians[name] = m
        if m is None:
            cells.append("-")
        elif m == 0:
            cells.append("**none passed**")
        else:
            cells.append(f"**{rate(m)}** ({deliveries(m * subs)})")
        cells.append(session)
        print("| " + " | ".join(cells) + " |")
    print()
    return medians


def per_step(runs):
    """Prints p50/p99/CPU/bytes per step (medians over rounds); returns
    {name: {rate: {"passed": [bool], "cpu": median}}}."""
    stats = {}
    for name, by_round in runs.items():
        by_rate = stats.setdefault(name, {})
        for report in by_round.values():
            for s in (report or {}).get("steps", []):
                cell = by_rate.setdefault(s["offered_rate"], {"p50": [], "p99": [], "cpu": [], "wire": [], "rec": [], "passed": []})
                cell["p50"].append(s["latency_ms"]["p50"])
                cell["p99"].append(s["latency_ms"]["p99"])
                cell["cpu"].append((s.get("broker") or {}).get("cpu_percent"))
                cell["wire"].append(s.get("wire_bytes_per_delivery"))
                cell["rec"].append(s.get("tls_records_per_delivery"))
                cell["passed"].append(bool(s["passed"]))
    rates = sorted({r for by_rate in stats.values() for r in by_rate})
    head = ["msg/s"]
    for name in stats:
        head += [f"{name} p50 ms", f"{name} p99 ms", f"{name} CPU %", f"{name} wire B/d"]
    if "tls" in stats:
        head.append("tls records/delivery")
    print("Per step, medians over rounds (passed runs in brackets):")
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for r in rates:
        cells = [rate(r)]
        for name, by_rate in stats.items():
            c = by_rate.get(r)
            if not c:
                cells += ["-"] * 4
                continue
            passed = f" ({sum(c['passed'])}/{len(c['passed'])})"
            cells += [fmt(med(c["p50"]), 2), fmt(med(c["p99"])) + passed, fmt(med(c["cpu"]), 0), fmt(med(c["wire"]), 1)]
        if "tls" in stats:
            c = stats["tls"].get(r)
            cells.append(fmt(med(c["rec"]), 3) if c else "-")
        print("| " + " | ".join(cells) + " |")
    print()
    return stats


def idle(runs):
    """Prints broker RSS per idle connection; returns the medians in KiB."""
    print("Idle connections (subscribed, held), broker RSS per connection:")
    print()
    print("| target | connections | KiB per connection (rounds) | median KiB | connect rate /s | connect p99 ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    medians = {}
    for name, by_round in runs.items():
        per, conns, rates, p99 = [], [], [], []
        for report in by_round.values():
            c = (report or {}).get("connect") or {}
            if c.get("broker_rss_per_connection") is not None:
                per.append(c["broker_rss_per_connection"] / 1024)
            conns.append(f"{c.get('connected', 0)}/{c.get('attempted', 0)}")
            rates.append(c.get("rate_per_s"))
            p99.append((c.get("latency_ms") or [None, None])[1])
        medians[name] = med(per)
        rounds_text = ", ".join(f"{v:.2f}" for v in per) or "-"
        print(f"| {name} | {', '.join(conns)} | {rounds_text} | **{fmt(medians[name], 2)}** | {fmt(med(rates), 0)} | {fmt(med(p99), 1)} |")
    print()
    return medians


def main():
    directory = sys.argv[1]
    fanouts = {n: r for n in FANOUTS if (r := rounds(directory, n))}
    idles = {n: r for n in IDLES if (r := rounds(directory, n))}
    if not fanouts and not idles:
        sys.exit(f"no reports in {directory}")
    notes = []
    if fanouts:
        medians = highest(directory, fanouts)
        stats = per_step(fanouts)
        plain, tls = medians.get("plain"), medians.get("tls")
        if plain and tls is not None:
            ratio = tls / plain
            verdict = "met" if ratio >= GOAL else "NOT met"
            notes.append(f"TLS / plain, median highest passing step: {rate(tls)} / {rate(plain)} = {ratio:.0%} (target >= {GOAL:.0%}: {verdict})")
        if "plain" in stats and "tls" in stats:
            both = [r for r in stats["plain"] if r in stats["tls"]]
            passed = [r for r in both if all(stats["plain"][r]["passed"]) and all(stats["tls"][r]["passed"])]
            # The highest step both passed in every round, else the lowest both ran.
            r, why = (max(passed), "the highest step both passed in every round") if passed else (
                (min(both), "the lowest step (no step passed by both in every round)") if both else (None, ""))
            cpu_p, cpu_t = (med(stats["plain"][r]["cpu"]), med(stats["tls"][r]["cpu"])) if r else (None, None)
            subs = next((rep["subscribers"] for rep in fanouts["tls"].values() if rep), 0)
            if cpu_p and cpu_t:
                notes.append(
                    f"broker CPU at {rate(r)} msg/s ({deliveries(r * subs)}), {why}: "
                    f"plain {cpu_p:.0f}%, TLS {cpu_t:.0f}% ({cpu_t / cpu_p:.2f}x)"
                )
    if idles:
        kib = idle(idles)
        p, t = kib.get("idle-plain"), kib.get("idle-tls")
        if p is not None and t is not None:
            notes.append(f"broker RSS per idle connection: plain {p:.2f} KiB, TLS {t:.2f} KiB (TLS adds {t - p:.2f} KiB)")
    for runs in (fanouts, idles):
        for name, by_round in runs.items():
            for i, r in by_round.items():
                for n in (r or {}).get("notes", []):
                    notes.append(f"{name} round {i}: {n}")
    for n in notes:
        print(f"- {n}")


if __name__ == "__main__":
    main()
