"""The benchmark's table: each scenario beside its ceiling and its target, RSS per process."""

from dataclasses import dataclass

from bench.loadgen import LoadResult

# The targets: the least share of the matching ceiling each scenario must reach.
RATIO_TARGETS = {
    "create_user": 0.60,
    "add_interest": 0.40,
    "get_user": 0.70,
    "replay_user": 0.70,
    "list_users": 0.50,
    "flights_by_airport": 0.50,
    "flights_last": 0.50,
    "flights_average": 0.50,
    "ingest (rows/s)": 0.50,
}
CREATE_USER_P99_MS = 50.0
# A flight query at the larger table may be at most this much slower than at the smaller one.
SIZE_TOLERANCE = 0.20
RSS_LIMIT_MB = 80.0
SOAK_RSS_GROWTH = 0.10


@dataclass(frozen=True)
class Row:
    """One scenario's result and the ceiling it is compared with."""

    name: str
    result: LoadResult
    ceiling: str
    ceiling_rate: float
    note: str = ""
    # CPU milliseconds per request: both services' processes, PostgreSQL's.
    cpu_ms: tuple[float, float] | None = None

    @property
    def ratio(self) -> float:
        """Share of the ceiling reached."""
        return self.result.rate / self.ceiling_rate if self.ceiling_rate else 0.0


def _verdict(row: Row, rows: list[Row]) -> str:
    base, _, size = row.name.partition(" @")
    checks = []
    target = RATIO_TARGETS.get(base)
    first_size = next((r for r in rows if r.name.partition(" @")[0] == base), None)
    if target is not None and (not size or first_size is row):
        checks.append(f"{row.ratio:.0%} ≥ {target:.0%}" if row.ratio >= target else "MISSED")
    if size and first_size is not None and first_size is not row:
        change = row.result.rate / first_size.result.rate - 1 if first_size.result.rate else 0
        within = change >= -SIZE_TOLERANCE
        checks.append(
            f"{change:+.0%} vs {first_size.name.partition(' @')[2]}" + ("" if within else " MISSED")
        )
    if base == "create_user" and row.result.p99_ms > CREATE_USER_P99_MS:
        checks.append(f"p99 > {CREATE_USER_P99_MS:g} ms MISSED")
    if row.result.errors:
        checks.append("errors MISSED")
    return "; ".join(checks) or "-"


def render(outcome) -> str:
    """Return the Markdown report of one run."""
    machine = outcome.machine
    lines = [
        f"Run {outcome.started} on {machine['cores']} cores ({machine['cpu']}), "
        f"{machine['memory_gb']} GB RAM, Python {machine['python']}; "
        f"load average before {machine['load_before']}, after {machine.get('load_after')}.",
        "",
        "CPU ms/req: CPU time per request of both services' processes + PostgreSQL's, which"
        " other load on the machine changes much less than requests/s.",
        "",
        "| ceiling | req/s | p50 ms | p99 ms | errors |",
        "|---|--:|--:|--:|--:|",
    ]
    for name, result in outcome.ceilings.items():
        lines.append(
            f"| {name} | {result.rate:,.0f} | {result.p50_ms:.1f} | {result.p99_ms:.1f} "
            f"| {result.errors} |"
        )
    lines.append(f"| batched upsert (rows/s) | {outcome.upsert_rows_per_second:,.0f} | | | |")
    lines += [
        "",
        "| scenario | req/s | p50 ms | p99 ms | errors | CPU ms/req | ceiling | ratio | target "
        "| note |",
        "|---|--:|--:|--:|--:|--:|---|--:|---|---|",
    ]
    for row in outcome.rows:
        result = row.result
        # Ingest is one timed run (its time is in the note), not a latency distribution.
        cpu = f"{row.cpu_ms[0]:.2f} + {row.cpu_ms[1]:.2f}" if row.cpu_ms else "-"
        latency = (
            "- | -"
            if row.ceiling == "batched upsert"
            else f"{result.p50_ms:.1f} | {result.p99_ms:.1f}"
        )
        lines.append(
            f"| {row.name} | {result.rate:,.0f} | {latency} | {result.errors} | {cpu} "
            f"| {row.ceiling} | {row.ratio:.0%} | {_verdict(row, outcome.rows)} "
            f"| {row.note} |"
        )
    lines += ["", "| service | process | pid | RSS MB |", "|---|---|--:|--:|"]
    for service, role, pid, rss in outcome.rss:
        flag = "" if rss <= RSS_LIMIT_MB else f" (over {RSS_LIMIT_MB:g})"
        lines.append(f"| {service} | {role} | {pid} | {rss:.1f}{flag} |")
    return "\n".join(lines) + "\n"


def render_soak(soak: dict, options, machine: dict) -> str:
    """Return the Markdown report of a soak run."""
    result: LoadResult = soak["result"]
    first = {pid: rss for _, _, pid, rss in soak["rss_first"]}
    lines = [
        f"Soak: create_user, {options.soak_connections} connections, {result.seconds:.0f} s on "
        f"{machine['cores']} cores, load average {machine['load_before']}.",
        f"{result.requests:,} requests, {result.rate:,.0f}/s, p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms, errors {result.errors}.",
        "",
        f"| service | process | pid | RSS MB at {soak['at']:.0f} s | RSS MB at end | change |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for service, role, pid, rss in soak["rss_end"]:
        before = first.get(pid)
        change = f"{rss / before - 1:+.1%}" if before else "new process"
        flag = "" if before and rss <= before * (1 + SOAK_RSS_GROWTH) else " MISSED"
        lines.append(
            f"| {service} | {role} | {pid} | {before or 0:.1f} | {rss:.1f} | {change}{flag} |"
        )
    return "\n".join(lines) + "\n"
