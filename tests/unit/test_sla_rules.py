"""The SLA rule: 3 of the last 5 samples out of range is a breach; all 5 back in range ends it."""

import pytest

from sla_detector.detector import SAMPLES_KEPT, Sample, judge, observed, sample_of


def samples(*values: float) -> list[Sample]:
    return [Sample(value, value) for value in values]


def run(values, *, minimum=None, maximum=10.0) -> list[tuple[str, ...]]:
    """Feed the values one check at a time; return what each check raised and ended."""
    kept, open_sides, happened = [], set(), []
    for value in values:
        kept = (kept + samples(value))[-SAMPLES_KEPT:]
        verdict = judge(kept, minimum=minimum, maximum=maximum, open_sides=open_sides)
        open_sides |= set(verdict.raised)
        open_sides -= set(verdict.ended)
        happened.append(
            tuple(f"raise {side}" for side in verdict.raised)
            + tuple(f"end {side}" for side in verdict.ended)
        )
    return happened


def test_three_samples_out_of_range_raise_a_breach_two_do_not():
    assert run([50, 50]) == [(), ()]
    assert run([50, 5, 50, 5, 50]) == [(), (), (), (), ("raise max",)]


def test_one_incident_is_one_breach_however_it_flaps_and_it_ends_after_five_in_range():
    flapping = [50, 50, 50, 5, 50, 5, 50, 50, 5, 5, 5, 5, 5]
    happened = run(flapping)
    assert happened[2] == ("raise max",)
    assert [event for event in happened if event] == [("raise max",), ("end max",)]
    assert happened.index(("end max",)) == len(flapping) - 1  # the fifth check in range
    # Once ended, the next incident is a new breach.
    assert [e for e in run([*flapping, 50, 50, 50]) if e][-1] == ("raise max",)


def test_floor_and_ceiling_are_judged_apart():
    happened = run([50, 50, 50, -5, -5, -5], minimum=0, maximum=10)
    assert [event for event in happened if event] == [("raise max",), ("raise min",)]


def test_a_limit_not_given_is_never_breached():
    assert not any(run([-1e9] * 6, minimum=None, maximum=10))


def test_a_sample_spans_the_series_and_the_breach_reports_the_newest_stray():
    assert sample_of([3.0, 12.0, 7.0]) == Sample(3.0, 12.0)
    kept = [Sample(1, 11), Sample(1, 30), Sample(1, 2), Sample(1, 20)]
    assert observed(kept, "max", 10) == 20
    assert observed(kept, "min", 5) == 1
    with pytest.raises(ValueError):
        observed(kept, "min", 0)
