"""Heartbeats: each part of a worker shows that it makes progress, to its probe and to Prometheus.

A worker that hangs (a job stuck in a call that never returns, a consumer
whose handler waits forever) is still a running process: nothing restarts it
and its work stops without a word. So each part of the ``worker`` role (every
periodic job, the outbox relay, each subscription of the consumer) beats as
it makes progress and says how long it may go without: its deadline. Both are
gauges of the service's metrics, by ``part``:

- ``worker_last_progress_timestamp_seconds``: when the part last moved on;
- ``worker_progress_deadline_seconds``: how long it may stay silent now.

One signal, three readers: ``/metrics`` (and with it the ``WorkerStalled``
alerting rule), and the probe ``python -m <service> healthcheck worker``
(:func:`stalled_parts`), which reads the same samples from the service's
metrics directory (``PROMETHEUS_MULTIPROC_DIR``) and fails when a part is
past its deadline, so the orchestrator restarts the container.

A loop that only waits (a relay with nothing to publish, a consumer whose
fetch times out, either of them waiting for a broker that is down) still
beats: waiting is what it should be doing, and restarting it would not bring
the broker back. Only a call that does not return silences a part.

A job's deadline depends on what it is doing: during a run, how long a run
may go without progress (``PeriodicJob.stall_seconds``); between runs, its
interval plus that (the scheduler must start the next run). Long runs call
:func:`progress` as they move on (collection after each OpenSky answer), so a
cycle of hours that keeps moving is not taken for a hang.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge

# The longest a part may go without progress by default: well beyond the slowest step a
# healthy worker takes (a bulk statement within the worker's 5-minute statement limit, an
# OpenSky request with its retries, about 2 minutes), so only a step that never returns
# gets there; and short enough that a hung worker is restarted within minutes.
STALL_SECONDS = 600.0

LAST_PROGRESS_METRIC = "worker_last_progress_timestamp_seconds"
DEADLINE_METRIC = "worker_progress_deadline_seconds"
LAST_PROGRESS = Gauge(
    LAST_PROGRESS_METRIC,
    "When each part of the worker (a job, the outbox relay, a subscription) last made "
    "progress, in Unix seconds.",
    ["part"],
    multiprocess_mode="mostrecent",
)
DEADLINE = Gauge(
    DEADLINE_METRIC,
    "How long each part of the worker may now go without progress before it counts as stuck.",
    ["part"],
    multiprocess_mode="mostrecent",
)

# The heartbeat of the work running in this thread or task, for progress() to beat.
_current: ContextVar["Heartbeat | None"] = ContextVar("heartbeat", default=None)


class Heartbeat:
    """The heartbeat of one part of the worker; it beats once when created."""

    def __init__(self, part: str, deadline_seconds: float = STALL_SECONDS):
        self.part = part
        self.beat(deadline_seconds)

    def beat(self, deadline_seconds: float | None = None) -> None:
        """Record progress now, and the new deadline when it changes."""
        if deadline_seconds is not None:
            DEADLINE.labels(self.part).set(deadline_seconds)
        LAST_PROGRESS.labels(self.part).set(time.time())

    @contextmanager
    def current(self) -> Iterator[None]:
        """Make this the heartbeat :func:`progress` beats, in this thread or task."""
        token = _current.set(self)
        try:
            yield
        finally:
            _current.reset(token)


def progress() -> None:
    """Say that the work in hand moved on (an answer came, a batch was stored).

    Beats the heartbeat of the job or handler running in this thread, if any;
    does nothing elsewhere (a request, a test, a command run by hand).
    """
    heartbeat = _current.get()
    if heartbeat is not None:
        heartbeat.beat()


def stalled_parts(directory: Path, now: float | None = None) -> list[str]:
    """Read the heartbeats in a service's metrics directory; say which parts are stuck.

    Raise ``LookupError`` when the directory holds no heartbeat at all (the
    worker has not started, or the probe looks in the wrong place).
    """
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    values: dict[str, dict[str, float]] = {LAST_PROGRESS_METRIC: {}, DEADLINE_METRIC: {}}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in values:
                values[sample.name][sample.labels["part"]] = sample.value
    last, deadlines = values[LAST_PROGRESS_METRIC], values[DEADLINE_METRIC]
    if not last:
        raise LookupError(f"no worker heartbeat in {directory}")
    now = time.time() if now is None else now
    return [
        f"{part} made no progress for {now - beat:.0f}s (allowed {deadlines[part]:.0f}s)"
        for part, beat in sorted(last.items())
        if part in deadlines and now - beat > deadlines[part]
    ]
