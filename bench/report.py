"""The benchmark's tables: medians over rounds with their range, targets, layers, RSS.

Each scenario is measured once per round, between two measurements of its
ceiling (see ``bench.runner``); a round's ratio is the scenario's rate over
the mean of those two ceilings. The table gives the median ratio over the
rounds with its range (lowest-highest), the median requests/s and the
median p99, so one moment of host load moves one round, not the figure.
"""

import statistics
from dataclasses import dataclass, field

from bench.loadgen import LoadResult
from bench.memory import NOT_IN_MAKE_RUN

# The least median share of the matching ceiling each scenario must reach.
RATIO_TARGETS = {
    "create_user": 0.80,
    "replay_user": 0.80,
    "get_user": 0.80,
    "flights_last": 0.80,
    "flights_average": 0.80,
    "list_users": 0.70,
    "flights_by_airport": 0.70,
    "flights_for_user": 0.70,
    "add_interest": 0.60,
    "ingest (rows/s)": 0.60,
}
# create_user's median p99 may be at most this multiple of the INSERT ceiling's median p99.
CREATE_USER_P99_FACTOR = 1.5
# A flight query's median ratio at the larger table may be at most this much below the smaller's.
SIZE_TOLERANCE = 0.20
# The most throughput a layer (authentication, gateway) may cost.
LAYER_COST_LIMIT = 0.10
STACK_RSS_LIMIT_MB = 550.0
# The whole make run stack, judged on PSS (bench.memory says why).
STACK_PSS_LIMIT_MB = 700.0
# From a cycle's commit to the mail server's acceptance: the p99 of the latency rounds.
ALERT_P99_LIMIT_SECONDS = 2.0
# Every email of the fan-out accepted within this after the commit.
FAN_OUT_LIMIT_SECONDS = 60.0
SOAK_RSS_GROWTH = 0.10


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


@dataclass(frozen=True)
class Round:
    """One measurement of a scenario, and the mean rate of the reference measured around it."""

    result: LoadResult
    reference_rate: float
    # CPU milliseconds per request: both services' processes, PostgreSQL's, the gateway's.
    cpu_ms: tuple[float, ...] | None = None
    # A layer's round: the CPU milliseconds per request, all processes, of the plain runs.
    reference_cpu_ms: float | None = None

    @property
    def ratio(self) -> float:
        """Share of the reference this round reached."""
        return self.result.rate / self.reference_rate if self.reference_rate else 0.0


@dataclass
class Row:
    """A scenario's rounds and the ceiling (or plain scenario) they are compared with."""

    name: str
    ceiling: str
    note: str = ""
    rounds: list[Round] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        """Every round's ratio."""
        return [r.ratio for r in self.rounds]

    @property
    def ratio(self) -> float:
        """Median ratio over the rounds."""
        return _median(self.ratios)

    @property
    def rate(self) -> float:
        """Median requests (or rows) per second."""
        return _median([r.result.rate for r in self.rounds])

    @property
    def p50_ms(self) -> float:
        """Median of the rounds' p50."""
        return _median([r.result.p50_ms for r in self.rounds])

    @property
    def p99_ms(self) -> float:
        """Median of the rounds' p99."""
        return _median([r.result.p99_ms for r in self.rounds])

    @property
    def errors(self) -> int:
        """Errors over all rounds."""
        return sum(r.result.errors for r in self.rounds)

    @property
    def cpu_ms(self) -> tuple[float, float] | None:
        """Median CPU milliseconds per request (services, PostgreSQL)."""
        measured = [r.cpu_ms for r in self.rounds if r.cpu_ms]
        if not measured:
            return None
        return _median([c[0] for c in measured]), _median([c[1] for c in measured])

    def cpu_total_ms(self) -> tuple[float, float] | None:
        """Median CPU milliseconds per request of every process, and of the reference's.

        For a layer: what a request costs through it and without it. On a
        machine whose cores the load keeps busy, throughput falls by about
        the ratio of the two.
        """
        measured = [r for r in self.rounds if r.cpu_ms and r.reference_cpu_ms]
        if not measured:
            return None
        return (
            _median([sum(r.cpu_ms) for r in measured]),
            _median([r.reference_cpu_ms for r in measured]),
        )

    def spread(self) -> str:
        """Give the median ratio and its range, as ``83% (79-88%)``; ``-`` without reference."""
        if not any(r.reference_rate for r in self.rounds):
            return "-"
        low, high = min(self.ratios, default=0), max(self.ratios, default=0)
        return f"{self.ratio:.0%} ({low * 100:.0f}-{high:.0%})"


def _shortfall(value: float, target: float) -> str:
    if value >= target:
        return f"met ({value:.0%} ≥ {target:.0%})"
    return f"MISSED by {_points(target - value)} ({_percent(value, target)} < {target:.0%})"


# Decimals a shortfall may need before it stops reading as zero.
MAX_DECIMALS = 3


def _points(gap: float) -> str:
    """Give a shortfall in percentage points, with the decimals it takes not to read as 0."""
    decimals = next((d for d in range(MAX_DECIMALS) if round(gap * 100, d) > 0), MAX_DECIMALS)
    return f"{gap * 100:.{decimals}f} points"


def _percent(value: float, target: float) -> str:
    """Give ``value`` as a percentage that never rounds up to the ``target`` it missed."""
    decimals = next(
        (d for d in range(MAX_DECIMALS) if round(value * 100, d) < target * 100), MAX_DECIMALS
    )
    return f"{value:.{decimals}%}"


def verdict(row: Row, rows: list[Row], ceilings: dict[str, list[LoadResult]]) -> str:
    """Every target that applies to ``row``: met, or missed and by how much."""
    base, _, size = row.name.partition(" @")
    same = [r for r in rows if r.name.partition(" @")[0] == base]
    first = same[0] if same else row
    checks = []
    target = RATIO_TARGETS.get(base)
    if target is not None and first is row:
        checks.append(_shortfall(row.ratio, target))
    if size and first is not row and first.ratio:
        change = row.ratio / first.ratio - 1
        checks.append(
            f"ratio {change:+.0%} vs {first.name.partition(' @')[2]} "
            + ("met" if change >= -SIZE_TOLERANCE else f"MISSED (limit -{SIZE_TOLERANCE:.0%})")
        )
    if base == "create_user" and ceilings.get("one INSERT"):
        limit = CREATE_USER_P99_FACTOR * _median([r.p99_ms for r in ceilings["one INSERT"]])
        within = row.p99_ms <= limit
        checks.append(
            f"p99 {row.p99_ms:.0f} ms ≤ {limit:.0f} ms met"
            if within
            else f"p99 MISSED by {row.p99_ms - limit:.0f} ms ({row.p99_ms:.0f} > {limit:.0f})"
        )
    if row.errors:
        checks.append(f"{row.errors} errors MISSED")
    elif base == "flights_last during ingest":
        checks.append(f"0 errors, p99 {row.p99_ms:.1f} ms")
    return "; ".join(checks) or "-"


def _ceiling_lines(ceilings: dict[str, list[LoadResult]]) -> list[str]:
    lines = [
        "| ceiling | measurements | median req/s | range | median p50 ms | median p99 ms "
        "| errors |",
        "|---|--:|--:|---|--:|--:|--:|",
    ]
    for name, results in ceilings.items():
        rates = [r.rate for r in results]
        rate_unit = " (rows/s)" if name == "batched upsert" else ""
        latency = (
            "- | -"
            if name == "batched upsert"
            else f"{_median([r.p50_ms for r in results]):.1f} "
            f"| {_median([r.p99_ms for r in results]):.1f}"
        )
        lines.append(
            f"| {name}{rate_unit} | {len(results)} | {_median(rates):,.0f} "
            f"| {min(rates):,.0f}-{max(rates):,.0f} | {latency} "
            f"| {sum(r.errors for r in results)} |"
        )
    return lines


def _layer_lines(outcome) -> list[str]:
    lines = [
        "",
        "Layers: the same scenario through the layer and without it, measured in turn; each "
        "round's ratio is the layered rate over the mean of the plain runs before and after it.",
        "",
        "CPU ms/req: every process (both services, PostgreSQL, the gateway's nginx and the "
        "Docker engine carrying its log), through the layer and plain (medians).",
        "",
        "| layer | scenario | median req/s | median p99 ms | errors | ratio to plain (range) "
        "| CPU ms/req layer / plain | cost ≤ 10% |",
        "|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for layer, row in outcome.layers:
        cost = 1 - row.ratio
        check = (
            "met" if cost <= LAYER_COST_LIMIT else f"MISSED by {_points(cost - LAYER_COST_LIMIT)}"
        )
        if row.errors:
            check += f"; {row.errors} errors MISSED"
        totals = row.cpu_total_ms()
        cpu = f"{totals[0]:.2f} / {totals[1]:.2f}" if totals else "-"
        lines.append(
            f"| {layer} | {row.name} | {row.rate:,.0f} | {row.p99_ms:.1f} | {row.errors} "
            f"| {row.spread()} | {cpu} | cost {round(cost, 2) + 0.0:.0%}: {check} |"
        )
    lines += ["", *(f"{layer}: {reason}" for layer, reason in outcome.skipped_layers)]
    return lines


def rss_lines(rss: list[tuple[str, str, int, float]]) -> list[str]:
    """Return the per-process RSS table and the stack's total against its limit."""
    lines = ["| service | process | pid | RSS MB |", "|---|---|--:|--:|"]
    lines += [f"| {service} | {role} | {pid} | {mb:.1f} |" for service, role, pid, mb in rss]
    total = sum(row[3] for row in rss)
    check = (
        "met" if total <= STACK_RSS_LIMIT_MB else f"MISSED by {total - STACK_RSS_LIMIT_MB:.0f} MB"
    )
    lines += [
        "",
        f"Stack total: {total:.0f} MB resident in {len(rss)} processes "
        f"(target ≤ {STACK_RSS_LIMIT_MB:g} MB: {check}).",
    ]
    return lines


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def alert_lines(latency, fan_out) -> list[str]:
    """Return the alerts pipeline's rows: latency to the mail server, the fan-out, its hops."""
    lines = [
        "",
        "Alerts: from a collection cycle's commit (the events' committed_at) to the SMTP "
        "server's acceptance of each email (an SMTP server in the bench process).",
        "",
        "| alerts | emails expected | emails accepted | p50 | p99 | max | lost | target | note |",
        "|---|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    if latency is not None:
        p99 = latency.percentile(0.99)
        check = (
            f"p99 {p99:.2f} s ≤ {ALERT_P99_LIMIT_SECONDS:g} s: met"
            if p99 <= ALERT_P99_LIMIT_SECONDS
            else f"p99 MISSED by {(p99 - ALERT_P99_LIMIT_SECONDS) * 1000:.0f} ms "
            f"({p99:.2f} s > {ALERT_P99_LIMIT_SECONDS:g} s)"
        )
        if latency.lost:
            check += f"; {latency.lost} lost MISSED"
        lines.append(
            f"| commit to SMTP acceptance | {latency.rounds * latency.per_round:,} "
            f"| {len(latency.samples):,} | {latency.percentile(0.5) * 1000:.0f} ms "
            f"| {p99 * 1000:.0f} ms | {max(latency.samples, default=0) * 1000:.0f} ms "
            f"| {latency.lost} | {check} | {latency.rounds} rounds of {latency.per_round} "
            "crossings, each round a new airport's first figure, mailed before the next |"
        )
    if fan_out is not None:
        lost = fan_out.followers - fan_out.accepted
        if lost:
            check = f"{lost} not accepted: MISSED"
        elif fan_out.seconds <= FAN_OUT_LIMIT_SECONDS:
            check = f"all within {fan_out.seconds:.1f} s ≤ {FAN_OUT_LIMIT_SECONDS:g} s: met"
        else:
            check = (
                f"all within {fan_out.seconds:.1f} s: MISSED by "
                f"{fan_out.seconds - FAN_OUT_LIMIT_SECONDS:.1f} s (> {FAN_OUT_LIMIT_SECONDS:g} s)"
            )
        lines.append(
            f"| {fan_out.followers:,} followers of one airport | {fan_out.followers:,} "
            f"| {fan_out.accepted:,} | - | - | {_seconds(fan_out.seconds)} | {lost} | {check} "
            f"| first email {_seconds(fan_out.first_mail)}, {fan_out.rate:,.0f} emails/s from "
            "first to last |"
        )
        lines += _fan_out_lines(fan_out)
    return lines


def _fan_out_lines(fan_out) -> list[str]:
    lines = [
        "",
        f"Fan-out, hop by hop, in seconds after the collector's commit: the Alert System "
        f"committed every evaluation at {_seconds(fan_out.evaluated)}, its outbox was relayed "
        f"by {_seconds(fan_out.relayed)}; the first email was accepted at "
        f"{_seconds(fan_out.first_mail)}, the last at {_seconds(fan_out.seconds)}.",
    ]
    if not fan_out.cpu:
        return lines
    lines += [
        "",
        "CPU while the emails were sent (first to last), in cores (1.00: one core busy "
        "throughout):",
        "",
        "| process | cores |",
        "|---|--:|",
    ]
    ranked = sorted(fan_out.cpu.items(), key=lambda item: -item[1])
    lines += [f"| {name} | {cores:.2f} |" for name, cores in ranked if cores >= 0.005]
    ours = sum(fan_out.cpu.values())
    lines += [
        f"| every process of the stack and the bench | {ours:.2f} |",
        f"| the host (every process, others' too) | {fan_out.host_busy_cores:.2f} of "
        f"{fan_out.cores} |",
        "",
        f"Bound by: {fan_out.bound()}.",
    ]
    return lines


def _grouped(rows) -> dict[tuple[str, str], tuple[int, float, float]]:
    """Sum the memory rows by (component, role): (processes, RSS MB, PSS MB)."""
    grouped: dict[tuple[str, str], tuple[int, float, float]] = {}
    for row in rows:
        count, rss, pss = grouped.get((row.component, row.role), (0, 0.0, 0.0))
        grouped[(row.component, row.role)] = (count + 1, rss + row.rss, pss + row.pss)
    return grouped


def memory_lines(measured: dict[str, list]) -> list[str]:
    """Return the whole stack's memory at each moment measured, by process, and its total."""
    if not measured:
        return []
    moments = list(measured)
    grouped = {moment: _grouped(rows) for moment, rows in measured.items()}
    keys = sorted({key for by_key in grouped.values() for key in by_key})
    header = " | ".join(f"RSS MB {moment} | PSS MB {moment}" for moment in moments)
    lines = [
        "",
        "The whole stack make run starts (PostgreSQL, nats-server, the mail catcher, every "
        "service's processes), by process: RSS counts a page shared by several processes "
        "once in each, PSS divides it between them, so the sum of PSS is what the stack "
        "holds and the target is judged on it.",
        "",
        f"| component | process | count | {header} |",
        "|---|---|--:|" + "--:|--:|" * len(moments),
    ]
    for key in keys:
        counts = [grouped[moment].get(key, (0, 0.0, 0.0)) for moment in moments]
        cells = " | ".join(f"{rss:.1f} | {pss:.1f}" for _, rss, pss in counts)
        note = " (not in make run)" if key[0] in NOT_IN_MAKE_RUN else ""
        lines.append(f"| {key[0]}{note} | {key[1]} | {max(c[0] for c in counts)} | {cells} |")
    totals = []
    for moment in moments:
        rows = [row for row in measured[moment] if row.component not in NOT_IN_MAKE_RUN]
        totals.append((moment, len(rows), sum(r.rss for r in rows), sum(r.pss for r in rows)))
    cells = " | ".join(f"**{rss:.0f}** | **{pss:.0f}**" for _, _, rss, pss in totals)
    lines += [f"| **make run's stack** | | {max(t[1] for t in totals)} | {cells} |", ""]
    for moment, count, rss, pss in totals:
        check = (
            "met" if pss <= STACK_PSS_LIMIT_MB else f"MISSED by {pss - STACK_PSS_LIMIT_MB:.0f} MB"
        )
        lines.append(
            f"make run's stack {moment}: {pss:.0f} MB PSS in {count} processes (target ≤ "
            f"{STACK_PSS_LIMIT_MB:g} MB: {check}); {rss:.0f} MB as a sum of RSS."
        )
    return lines


def render(outcome) -> str:
    """Return the Markdown report of one run (only the alerts and memory with ``--only``)."""
    machine = outcome.machine
    lines = [
        f"Run {outcome.started} on {machine['cores']} cores ({machine['cpu']}), "
        f"{machine['memory_gb']} GB RAM, Python {machine['python']}; "
        f"load average before {machine['load_before']}, after {machine.get('load_after')}; "
        f"{outcome.rounds} rounds of {outcome.seconds:g} s per measurement.",
    ]
    if outcome.rows:
        lines += _scenario_lines(outcome)
    if outcome.alert_latency is not None or outcome.fan_out is not None:
        lines += alert_lines(outcome.alert_latency, outcome.fan_out)
    lines += memory_lines(outcome.memory)
    return "\n".join(lines) + "\n"


def _scenario_lines(outcome) -> list[str]:
    lines = [
        "",
        "Ratio: median over the rounds of the scenario's rate over the mean of its ceiling "
        "measured just before and just after it, with the range (lowest-highest round). "
        "CPU ms/req: both services' processes + PostgreSQL's, per request (medians).",
        "",
        *_ceiling_lines(outcome.ceilings),
        "",
        "| scenario | median req/s | median p50 ms | median p99 ms | errors | CPU ms/req "
        "| ceiling | ratio (range) | target | note |",
        "|---|--:|--:|--:|--:|--:|---|--:|---|---|",
    ]
    for row in outcome.rows:
        cpu = f"{row.cpu_ms[0]:.2f} + {row.cpu_ms[1]:.2f}" if row.cpu_ms else "-"
        # Ingest is one timed run per round (its time is in the note), not a distribution.
        latency = (
            "- | -" if row.ceiling == "batched upsert" else f"{row.p50_ms:.1f} | {row.p99_ms:.1f}"
        )
        lines.append(
            f"| {row.name} | {row.rate:,.0f} | {latency} | {row.errors} | {cpu} "
            f"| {row.ceiling} | {row.spread()} | {verdict(row, outcome.rows, outcome.ceilings)} "
            f"| {row.note} |"
        )
    lines += _layer_lines(outcome)
    lines += ["", *rss_lines(outcome.rss)]
    return lines


def render_soak(soak: dict, options, machine: dict) -> str:
    """Return the Markdown report of a soak run: every process's RSS at 1 minute and at the end."""
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
    grown = []
    for service, role, pid, rss in soak["rss_end"]:
        before = first.get(pid)
        change = f"{rss / before - 1:+.1%}" if before else "new process"
        flat = bool(before) and rss <= before * (1 + SOAK_RSS_GROWTH)
        if not flat:
            grown.append(f"{service} {role} {pid}")
        lines.append(
            f"| {service} | {role} | {pid} | {before or 0:.1f} | {rss:.1f} | {change}"
            f"{'' if flat else ' MISSED'} |"
        )
    verdict_line = (
        f"every process within {SOAK_RSS_GROWTH:.0%} of its RSS at {soak['at']:.0f} s: met"
        if not grown
        else f"RSS grew more than {SOAK_RSS_GROWTH:.0%}: MISSED for {', '.join(grown)}"
    )
    total_first = sum(row[3] for row in soak["rss_first"])
    total_end = sum(row[3] for row in soak["rss_end"])
    lines += [
        "",
        f"Stack total: {total_first:.0f} MB at {soak['at']:.0f} s, {total_end:.0f} MB at the end.",
        f"Soak RSS: {verdict_line}.",
    ]
    return "\n".join(lines) + "\n"
