"""The rule: when a metric's samples say "breach", and when the breach is over.

Each check takes one sample per metric: the lowest and the highest value of
the series its query returns (one series: the same number twice). The
detector keeps the last :data:`SAMPLES_KEPT` samples of each metric and counts
those below ``min`` and those above ``max``:

- a breach of ``max`` is raised when at least :data:`BREACH_SAMPLES` of them
  are above it (and likewise ``min``): three strays in five checks, not one
  spike, and not one breach per check either;
- it stays open while any kept sample is still out on that side, and ends
  once all of them are back in range: five checks in a row inside. Only then
  can the next breach on that side be raised, so one incident, however it
  flaps, is one breach and one email.

``min`` and ``max`` are judged apart: a metric that falls from above the
ceiling to below the floor has two breaches.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

# Samples kept per metric: a breach needs BREACH_SAMPLES of them out of range.
SAMPLES_KEPT = 5
BREACH_SAMPLES = 3
SIDES = ("min", "max")


class Sample(NamedTuple):
    """The lowest and the highest value a metric's query gave at one check."""

    low: float
    high: float


@dataclass(frozen=True)
class Verdict:
    """What the kept samples say: counts out of range, breaches to raise and to end."""

    below: int
    above: int
    raised: tuple[str, ...]
    ended: tuple[str, ...]


def sample_of(values: Sequence[float]) -> Sample:
    """Return the sample of one check's values (at least one)."""
    return Sample(low=min(values), high=max(values))


def judge(
    samples: Sequence[Sample], *, minimum: float | None, maximum: float | None, open_sides
) -> Verdict:
    """Judge the kept samples (newest last) against the limits, given the breaches open."""
    kept = samples[-SAMPLES_KEPT:]
    below = sum(1 for sample in kept if minimum is not None and sample.low < minimum)
    above = sum(1 for sample in kept if maximum is not None and sample.high > maximum)
    out = {"min": below, "max": above}
    return Verdict(
        below=below,
        above=above,
        raised=tuple(
            side for side in SIDES if side not in open_sides and out[side] >= BREACH_SAMPLES
        ),
        ended=tuple(side for side in SIDES if side in open_sides and out[side] == 0),
    )


def observed(samples: Sequence[Sample], side: str, limit: float) -> float:
    """Return the newest value out of range on ``side`` (what a breach reports)."""
    for sample in reversed(samples[-SAMPLES_KEPT:]):
        if side == "max" and sample.high > limit:
            return sample.high
        if side == "min" and sample.low < limit:
            return sample.low
    raise ValueError(f"no sample beyond {side} {limit}")
