"""Checks of one detector's replicas: each period sampled once, however slow Prometheus is."""

import threading
from datetime import timedelta

import pytest

from common.db.migrations import migrate_app
from sla_detector import checks
from sla_detector.app import create_app
from sla_detector.inputs import SlaConfig
from sla_detector.models import MetricState, Sample, db
from tests.unit.test_sla_queries import SlowPrometheus
from tests.utils import wait_until

pytestmark = pytest.mark.local_stack

PERIOD = 5


@pytest.fixture
def detector(scratch_database, monkeypatch):
    """The detector's worker app in this process, on a database of its own, migrated."""
    monkeypatch.setenv("SLA_DETECTOR_DATABASE_URL", scratch_database)
    monkeypatch.setenv("PROMETHEUS_SCRAPE_SECONDS", "1")
    monkeypatch.setenv("SLA_CHECK_SECONDS", str(PERIOD))
    monkeypatch.delenv("SLA_CONFIG_FILE", raising=False)
    migrate_app(create_app({"MIGRATION_DATABASE_URL": scratch_database}, process="migrate"))
    app = create_app(process="worker")
    yield app
    with app.app_context():
        db.engine.dispose()


def test_a_check_that_outlasts_its_period_records_nothing(detector):
    config = SlaConfig.model_validate(
        {"metrics": [{"name": "slow", "query": "up", "max": 10}], "check_seconds": PERIOD}
    )
    # Prometheus answers in a second: the first check is still asking when the next claims.
    with SlowPrometheus(delay=1.0) as prometheus:
        detector.config["PROMETHEUS_URL"] = prometheus.url
        with detector.app_context():
            first = checks.claim_due_check(PERIOD)
        assert first is not None

        def slow_check() -> None:
            with detector.app_context():
                checks.check(config, first, period_seconds=PERIOD)

        asking = threading.Thread(target=slow_check)
        asking.start()
        wait_until(lambda: prometheus.asked, interval=0.01)
        with detector.app_context():
            # The next period's claim, as another replica makes it once the period is over.
            db.session.execute(
                db.text(
                    "UPDATE detector_state SET last_check_at = now() - make_interval(secs => :s)"
                ),
                {"s": PERIOD},
            )
            db.session.commit()
            second = checks.claim_due_check(PERIOD)
            assert second is not None and second != first
            checks.check(config, second, period_seconds=PERIOD)
        asking.join(timeout=30)
        with detector.app_context():
            samples = db.session.scalars(db.select(Sample)).all()
    # One sample, the later check's: the earlier one found its period claimed again.
    assert len(samples) == 1
    assert len(prometheus.asked) == 2


def test_the_queries_stop_at_the_check_s_deadline(detector):
    config = SlaConfig.model_validate(
        {"metrics": [{"name": f"m{n}", "query": "up", "max": 10} for n in range(20)]}
    )
    with SlowPrometheus(delay=0.5) as prometheus, detector.app_context():
        detector.config["PROMETHEUS_URL"] = prometheus.url
        claimed = checks.claim_due_check(PERIOD)
        checks.check(config, claimed, period_seconds=8)
        states = db.session.scalars(db.select(MetricState)).all()
        outcomes = [state.last_outcome for state in states]
    # Half a second each, for half of the 8 s period: eight asked at most, the rest not at all.
    assert len(outcomes) == 20
    assert outcomes.count(checks.NOT_ASKED) >= 11


def test_each_period_asks_from_another_metric_so_none_is_always_left_out(detector):
    """Against a Prometheus too slow for all of them, the ones not asked change each period."""
    config = SlaConfig.model_validate(
        {"metrics": [{"name": f"m{n}", "query": f"vector({n})", "max": 10} for n in range(3)]}
    )
    with SlowPrometheus(delay=0) as prometheus, detector.app_context():
        detector.config["PROMETHEUS_URL"] = prometheus.url
        claimed = checks.claim_due_check(PERIOD)
        for period in range(3):
            checks.check(
                config, claimed + timedelta(seconds=period * PERIOD), period_seconds=PERIOD
            )
    firsts = [prometheus.asked[n * 3]["query"][0] for n in range(3)]
    assert sorted(firsts) == ["vector(0)", "vector(1)", "vector(2)"]
