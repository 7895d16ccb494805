"""The benchmark's arithmetic: medians and ranges over rounds, shortfalls, the stack total.

The smoke test proves the benchmark runs; these check what its table says
about given figures, which a one-second run on tiny data cannot.
"""

from bench.loadgen import LoadResult
from bench.report import Round, Row, rss_lines, verdict


def _result(rate: float, p99_ms: float = 10.0, errors: int = 0) -> LoadResult:
    return LoadResult(requests=int(rate * 5), seconds=5.0, errors=errors, p50_ms=1.0, p99_ms=p99_ms)


def _row(name: str, ceiling: str, pairs, p99_ms: float = 10.0) -> Row:
    """A row of rounds given as (scenario rate, mean rate of the ceilings around it)."""
    row = Row(name, ceiling)
    row.rounds = [Round(_result(rate, p99_ms), reference) for rate, reference in pairs]
    return row


def test_each_round_is_divided_by_its_own_ceilings_and_the_median_is_reported_with_its_range():
    row = _row("get_user", "one SELECT", [(80, 100), (45, 50), (140, 200)])

    assert row.ratios == [0.8, 0.9, 0.7]
    assert row.spread() == "80% (70-90%)"
    assert row.rate == 80


def test_a_missed_target_says_by_how_many_points():
    row = _row("get_user", "one SELECT", [(70, 100), (72, 100), (75, 100)])

    assert verdict(row, [row], {}) == "MISSED by 8 points (72% < 80%)"


def test_a_miss_of_less_than_a_point_is_not_shown_as_the_target_itself():
    row = _row("add_interest", "one INSERT", [(59.6, 100)] * 3)

    assert verdict(row, [row], {}) == "MISSED by 0.4 points (59.6% < 60%)"
    row = _row("add_interest", "one INSERT", [(59_999, 100_000)] * 3)
    assert verdict(row, [row], {}) == "MISSED by 0.001 points (59.999% < 60%)"


def test_create_user_p99_is_checked_against_the_insert_ceilings_own_p99():
    row = _row("create_user", "one INSERT", [(90, 100)] * 3, p99_ms=160.0)
    ceilings = {"one INSERT": [_result(100, p99_ms=100.0)] * 3}

    assert verdict(row, [row], ceilings) == "met (90% ≥ 80%); p99 MISSED by 10 ms (160 > 150)"


def test_the_larger_table_is_compared_with_the_smaller_by_median_ratio():
    small = _row("flights_average @1M", "one SELECT", [(90, 100)] * 3)
    large = _row("flights_average @5M", "one SELECT", [(60, 100)] * 3)

    assert verdict(large, [small, large], {}) == "ratio -33% vs 1M MISSED (limit -20%)"


def test_the_stack_total_is_every_process_summed_against_its_limit():
    rss = [("user_manager", "web worker", 1, 300.0), ("data_collector", "web worker", 2, 260.0)]

    assert rss_lines(rss)[-1] == (
        "Stack total: 560 MB resident in 2 processes (target ≤ 550 MB: MISSED by 10 MB)."
    )


def test_a_layer_reports_what_a_request_costs_through_it_and_without_it():
    row = Row("get_user", "gateway vs plain")
    row.rounds = [
        Round(_result(80), 100, cpu_ms=(1.5, 0.3, 0.4), reference_cpu_ms=1.8),
        Round(_result(70), 100, cpu_ms=(1.7, 0.3, 0.5), reference_cpu_ms=2.0),
        Round(_result(90), 100, cpu_ms=(1.4, 0.2, 0.4), reference_cpu_ms=1.6),
    ]

    through, plain = row.cpu_total_ms()
    assert round(through, 2) == 2.2 and round(plain, 2) == 1.8
    # Rounds without a CPU measurement (a layer never measured plainly) report none.
    assert Row("get_user", "gateway vs plain").cpu_total_ms() is None
