"""Turns benchmark results into the tables of BENCHMARKS.md.

Reads target/bench/envoy.json (bench_envoy.py), target/bench/services.txt (the services'
load examples, one key=value line per run) and criterion's estimates under
target/criterion, and replaces what lies between the markers
`<!-- bench:begin -->` and `<!-- bench:end -->` in BENCHMARKS.md.

    .venv/bin/python tests/bench/report.py [--print] [--envoy PATH]

With --print, prints the tables instead of writing BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "target" / "bench"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
ARM_NAMES = {
    "bare": "bare Envoy",
    "native": "Envoy's native MCP filter",
    "filter": "our filter (with audit log, metrics)",
    "chain-memory": "full chain, ratelimit in memory",
    "chain-redis": "full chain, ratelimit on Redis",
}
PAYLOAD_NAMES = {
    "call-small": "small tools/call",
    "call-16KiB": "16 KiB tools/call",
    "tools-list": "tools/list",
    "call-sse": "tools/call, SSE answer",
}
# Goals of issue 7.
CHAIN_P99_BUDGET_MS = 1.0
CHAIN_P99_RATE = "1000"


def med(values: list[float]) -> float:
    return statistics.median(values)


def cell(values: list[float], digits: int = 1) -> str:
    """median [min, max]"""
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{med(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


def header(first: str, columns: list[str]) -> list[str]:
    """A markdown table's header row and separator."""
    return [f"| {first} | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]


def envoy_tables(document: dict) -> list[str]:
    results, settings, machine = document["results"], document["settings"], document["machine"]
    arms = [a for a in ARM_NAMES if a in results]
    payloads = [p for p in PAYLOAD_NAMES if p in results[arms[0]]]
    out = [
        f"Run on {machine['date']}: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"Linux {machine['kernel']}; Envoy {machine['envoy']}; {machine['oha']}. "
        f"{settings['rounds']} rounds of {settings['seconds']:g} s per measurement, arms interleaved. "
        "Cells: median [min, max] over the rounds.",
        "",
        "Payload sizes (request body bytes): "
        + ", ".join(f"{PAYLOAD_NAMES[p]} {settings['payload_bytes'][p]}" for p in payloads)
        + ".",
        "",
        "#### Envoy CPU per request (µs; closed loop, "
        f"{settings['closed_loop_connections']} connections)",
        "",
        *header("arm", [PAYLOAD_NAMES[p] for p in payloads]),
    ]
    for arm in arms:
        out.append(f"| {ARM_NAMES[arm]} | " + " | ".join(cell(results[arm][p]["envoy_cpu_us"]) for p in payloads) + " |")
    out += ["", "#### Ratios of Envoy CPU per request (medians)", ""]
    out += header("arm", [f"{PAYLOAD_NAMES[p]}: vs bare / vs native" for p in payloads])
    for arm in arms:
        row = []
        for p in payloads:
            value = med(results[arm][p]["envoy_cpu_us"])
            parts = []
            for base in ("bare", "native"):
                if base in results:
                    ratio = value / med(results[base][p]["envoy_cpu_us"])
                    parts.append(f"**{ratio:.2f}x**" if arm == "filter" and base == "native" else f"{ratio:.2f}x")
            row.append(" / ".join(parts))
        out.append(f"| {ARM_NAMES[arm]} | " + " | ".join(row) + " |")

    out += [
        "",
        "#### Maximum throughput (requests/s, closed loop) and how busy Envoy's core was",
        "",
        *header("arm", [PAYLOAD_NAMES[p] for p in payloads]),
    ]
    for arm in arms:
        row = [
            f"{cell(results[arm][p]['max_rps'], 0)} ({med(results[arm][p]['envoy_core_busy']) * 100:.0f}%)" for p in payloads
        ]
        out.append(f"| {ARM_NAMES[arm]} | " + " | ".join(row) + " |")

    for p in payloads:
        rates = list(results[arms[0]][p]["latency_ms"])
        out += [
            "",
            f"#### Latency, {PAYLOAD_NAMES[p]} (ms; open loop at fixed rates, corrected for coordinated omission)",
            "",
            *header("arm", [f"{r}/s {q}" for r in rates for q in ("p50", "p99", "p99.9")]),
        ]
        for arm in arms:
            latency = results[arm][p]["latency_ms"]
            out.append(
                f"| {ARM_NAMES[arm]} | "
                + " | ".join(cell(latency[r][q], 2) for r in rates for q in ("p50", "p99", "p99.9"))
                + " |"
            )

    if "bare" in results:
        out += [
            "",
            f"#### Added p99 over bare Envoy at {CHAIN_P99_RATE} requests/s (goal for the full chain: "
            f"<= {CHAIN_P99_BUDGET_MS:g} ms)",
            "",
            *header("arm", [PAYLOAD_NAMES[p] for p in payloads]),
        ]
        for arm in arms:
            if arm == "bare":
                continue
            row = []
            for p in payloads:
                latency = results[arm][p]["latency_ms"].get(CHAIN_P99_RATE)
                bare = results["bare"][p]["latency_ms"].get(CHAIN_P99_RATE)
                row.append(f"{med(latency['p99']) - med(bare['p99']):+.2f}" if latency and bare else "n/a")
            out.append(f"| {ARM_NAMES[arm]} | " + " | ".join(row) + " |")

    service_rows = []
    for arm in ("chain-memory", "chain-redis"):
        if arm not in results:
            continue
        for key, label in (("authz", "authz-service"), ("ratelimit", "ratelimit-service"), ("redis", "redis-server")):
            metric = f"{key}_cpu_us"
            if metric in results[arm][payloads[0]]:
                service_rows.append(
                    f"| {label} ({ARM_NAMES[arm]}) | " + " | ".join(cell(results[arm][p].get(metric, [])) for p in payloads) + " |"
                )
    if service_rows:
        out += [
            "",
            "#### Service CPU per decision behind Envoy (µs; closed loop)",
            "",
            *header("process", [PAYLOAD_NAMES[p] for p in payloads]),
            *service_rows,
        ]
    out += ["", "#### Envoy memory after each arm's runs (MiB)", "", "| arm | RSS | peak RSS |", "|---|---|---|"]
    for arm in arms:
        out.append(f"| {ARM_NAMES[arm]} | {cell(results[arm]['envoy_rss_mib'])} | {cell(results[arm]['envoy_peak_rss_mib'])} |")
    return out


def criterion_tables() -> list[str]:
    """Every criterion benchmark's median time and its 95% confidence interval."""
    base = ROOT / "target" / "criterion"
    rows = []
    for estimates in sorted(base.glob("**/new/estimates.json")):
        bench_dir = estimates.parent.parent
        name = str(bench_dir.relative_to(base))
        if name.startswith("report"):
            continue
        median = json.loads(estimates.read_text())["median"]
        point, low, high = (median["point_estimate"], median["confidence_interval"]["lower_bound"], median["confidence_interval"]["upper_bound"])
        rows.append(f"| `{name}` | {fmt_ns(point)} [{fmt_ns(low)}, {fmt_ns(high)}] | {1e9 / point:,.0f} |")
    if not rows:
        return []
    return ["| benchmark | median time [95% interval] | per second, one core |", "|---|---|---|", *rows]


def fmt_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def service_runs() -> dict[str, list[float]]:
    """The services' load examples: decisions per service CPU-second over real gRPC."""
    path = BENCH / "services.txt"
    runs: dict[str, list[float]] = {}
    if not path.exists():
        return runs
    for line in path.read_text().splitlines():
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        if "checks_per_cpu_second" in fields:
            runs.setdefault(f"authz-service, {fields['mode']} token: checks", []).append(float(fields["checks_per_cpu_second"]))
        elif "decisions_per_cpu_second" in fields:
            runs.setdefault(f"ratelimit-service, {fields['store']} store: decisions", []).append(float(fields["decisions_per_cpu_second"]))
    return runs


def service_tables() -> list[str]:
    runs = service_runs()
    if not runs:
        return []
    out = ["| measure (per service CPU-second, over gRPC) | median [min, max] |", "|---|---|"]
    out += [f"| {name} | {cell(values, 0)} |" for name, values in runs.items()]
    return out


def verdict(met: bool, by: str) -> str:
    return "**met**" if met else f"**missed** ({by})"


def goal_rows(envoy: dict | None) -> list[str]:
    """The goals of issue 7 against this run's medians."""
    rows = []
    if envoy:
        results = envoy["results"]
        if {"filter", "native"} <= set(results):
            for p in PAYLOAD_NAMES:
                if p not in results["filter"]:
                    continue
                ratio = med(results["filter"][p]["envoy_cpu_us"]) / med(results["native"][p]["envoy_cpu_us"])
                rows.append(
                    f"| filter CPU per request <= native MCP filter, {PAYLOAD_NAMES[p]} | {ratio:.2f}x | "
                    + verdict(ratio <= 1.0, f"{(ratio - 1) * 100:.0f}% over")
                    + " |"
                )
        for arm in ("chain-memory", "chain-redis"):
            if arm not in results or "bare" not in results:
                continue
            for p in PAYLOAD_NAMES:
                latency = results[arm].get(p, {}).get("latency_ms", {}).get(CHAIN_P99_RATE)
                bare = results["bare"].get(p, {}).get("latency_ms", {}).get(CHAIN_P99_RATE)
                if not latency or not bare:
                    continue
                added = med(latency["p99"]) - med(bare["p99"])
                rows.append(
                    f"| {ARM_NAMES[arm]} adds <= {CHAIN_P99_BUDGET_MS:g} ms p99 over bare at {CHAIN_P99_RATE}/s, "
                    f"{PAYLOAD_NAMES[p]} | {added:+.2f} ms | "
                    + verdict(added <= CHAIN_P99_BUDGET_MS, f"by {added - CHAIN_P99_BUDGET_MS:.2f} ms")
                    + " |"
                )
    services = service_runs()
    for name, goal in (("authz-service, cached token: checks", 20_000), ("ratelimit-service, memory store: decisions", 50_000)):
        if name in services:
            value = med(services[name])
            rows.append(
                f"| {name} per core >= {goal:,} per second | {value:,.0f} | "
                + verdict(value >= goal, f"{(1 - value / goal) * 100:.0f}% under")
                + " |"
            )
    if not rows:
        return []
    return ["### Goals", "", "| goal | this run (medians) | |", "|---|---|---|", *rows, ""]


def render(envoy: Path = BENCH / "envoy.json") -> str:
    document = json.loads(envoy.read_text()) if envoy.exists() else None
    out = goal_rows(document)
    if document:
        out += ["### Envoy, side by side", "", *envoy_tables(document)]
    services = service_tables()
    if services:
        out += ["", "### Services over gRPC (load examples)", "", *services]
    micro = criterion_tables()
    if micro:
        out += ["", "### Micro-benchmarks (criterion)", "", *micro]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--print", action="store_true", help="print the tables, change no file")
    parser.add_argument("--file", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--envoy", type=Path, default=BENCH / "envoy.json")
    args = parser.parse_args()
    tables = render(args.envoy)
    if args.print:
        print(tables)
        return
    text = args.file.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"{args.file}: no {BEGIN} ... {END} section to replace")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    args.file.write_text(f"{head}{BEGIN}\n{tables}\n{END}{tail}")
    print(f"updated {args.file}")


if __name__ == "__main__":
    main()
