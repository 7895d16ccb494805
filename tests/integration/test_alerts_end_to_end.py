"""Alerts end to end: OpenSky's flights in, one email per crossing out, through every process.

The User Manager, the Data Collector (its worker collecting from the OpenSky
simulator), the Alert System and the Alert Notifier run as processes with
their databases and nats-server; the SMTP server is in the test process.
Users follow airports through the API with thresholds, as they would; the
test never publishes a message itself.

With two days of backfill, an airport's alert window is the day before
yesterday (the only day settled: fetched a day after it ended), and the
dataset puts a busy, a quiet and an ordinary day there.
"""

import time

import pytest

from common.broker.streams import stream_of
from devstack.stack import SERVICES
from opensky_sim.control import SimulatorControl
from tests.integration.alerts_support import PIPELINE_TIMEOUT, AlertsStack, alerts_stack
from tests.integration.collector_support import DAY, Collector, make_flight, today_start
from tests.integration.conftest import COLLECTOR_TEST_ENV, wait_out_midnight
from tests.utils import create_user, wait_until

pytestmark = pytest.mark.local_stack

# Flights over the alert window (arrivals + departures): what each airport's users compare.
FIGURES = {"LIRF": 12, "LIMC": 2, "EGLL": 6}
# Durable consumers and their services, in the order a crossing travels.
CONSUMERS = (
    ("to-alert-system", "alert_system", "alert_system"),
    ("to-notifier", "alert_notifier", "alert_notifier"),
    ("to-data-collector", "data_collector", "data_collector"),
)


def window_day() -> int:
    return today_start() - 2 * DAY


def dataset() -> list[dict]:
    """Each airport's figure in flights on the window's day, half arrivals, half departures."""
    flights, serial = [], 0
    for airport, figure in FIGURES.items():
        for index in range(figure):
            serial += 1
            start = window_day() + 3600 + index * 600
            other = "LFPG"
            if index % 2:
                flights.append(make_flight(f"e{serial:05x}", other, airport, start))
            else:
                flights.append(make_flight(f"e{serial:05x}", airport, other, start))
    return flights


class Pipeline:
    """The whole stack as a test sees it: the collector's side and the alert services'."""

    def __init__(self, alerts: AlertsStack):
        self.alerts = alerts
        self.smtp = alerts.smtp
        self.collector = Collector(alerts.stack, SimulatorControl(alerts.stack.simulator_url))

    def settled(self) -> bool:
        """Tell whether everything committed went all the way: outboxes empty, consumers idle."""
        broker = self.alerts.broker
        for subject, durable, package in CONSUMERS:
            lag = broker.consumer_lag(stream_of(subject).name, durable)
            if lag is None or lag["pending"] or lag["unacknowledged"]:
                return False
            if self.alerts.sql(package, "SELECT count(*) FROM broker_outbox")[0][0]:
                return False
        return True

    def wait_settled(self) -> None:
        wait_until(self.settled, timeout=PIPELINE_TIMEOUT, interval=0.1)

    def state(self, email: str) -> dict:
        (item,) = self.collector.dc.get(f"/interests/{email}").json()
        return item


@pytest.fixture(scope="module")
def pipeline():
    """Every service, the simulator and nats-server, mailing an SMTP server in this process."""
    # The collection tests' settings, with the alert tests' one web worker per service.
    collection = {k: v for k, v in COLLECTOR_TEST_ENV.items() if k != "WEB_CONCURRENCY"}
    with alerts_stack(services=SERVICES, simulator=True, **collection) as alerts:
        wait_out_midnight()
        started = Pipeline(alerts)
        started.collector.sim.load_dataset(dataset())
        yield started
        alerts.broker.close()


def follow(pipeline: Pipeline, airport: str, **thresholds) -> str:
    """A new user follows ``airport`` with ``thresholds``; return the email."""
    dc = pipeline.collector.dc
    email = create_user(pipeline.collector.um)
    response = dc.post("/interests", json={"email": email, "airport_code": airport, **thresholds})
    assert response.status_code == 201, response.text
    return email


def test_each_crossing_is_mailed_once_and_shown_and_a_moved_threshold_mails_once(pipeline):
    collector, smtp = pipeline.collector, pipeline.smtp
    with collector.paused():
        asked_at = time.time()
        busy = follow(pipeline, "LIRF", high_value=10, low_value=2)
        quiet = follow(pipeline, "LIMC", high_value=20, low_value=3)
        in_band = follow(pipeline, "EGLL", high_value=8, low_value=4)
    collector.wait_for_cycle(asked_at)
    pipeline.alerts.wait_for_emails({busy: 1, quiet: 1})
    pipeline.wait_settled()
    counts = smtp.counts()
    assert (counts[busy], counts[quiet], counts[in_band]) == (1, 1, 0)
    (mail,) = smtp.to(busy)
    assert mail.subject.startswith("LIRF (") and "12 flights, above your upper threshold of 10" in (
        mail.subject
    )
    (mail,) = smtp.to(quiet)
    assert "2 flights, below your lower threshold of 3" in mail.subject

    # The collector shows what the alert services reported.
    for email, condition in ((busy, "above"), (quiet, "below"), (in_band, "inside")):
        item = pipeline.state(email)
        assert item["alert_window"]["flights"] == FIGURES[item["airport_code"]]
        state = item["alert_state"]
        if condition == "inside":
            assert state == {"condition": None, "since": None, "last_email_at": None}
        else:
            assert state["condition"] == condition and state["since"] and state["last_email_at"]

    # Another cycle stores today again: the same figures, nothing more is sent.
    collector.sql("DELETE FROM collected_days WHERE day = to_timestamp(%s)::date", (today_start(),))
    assert collector.run_cycle()["requests"] > 0
    pipeline.wait_settled()
    assert (smtp.counts()[busy], smtp.counts()[quiet], smtp.counts()[in_band]) == (1, 1, 0)

    # The upper threshold moved under the figure: one email, at once.
    moved = collector.dc.put(
        "/interests", json={"email": in_band, "airport_code": "EGLL", "high_value": 5}
    )
    assert moved.status_code == 200, moved.text
    pipeline.alerts.wait_for_emails({in_band: 1})
    (mail,) = smtp.to(in_band)
    assert "6 flights, above your upper threshold of 5" in mail.subject
    wait_until(lambda: pipeline.state(in_band)["alert_state"]["last_email_at"])
    assert pipeline.state(in_band)["alert_state"]["condition"] == "above"
    pipeline.wait_settled()
    assert smtp.counts()[in_band] == 1
    alerts = pipeline.alerts
    sent = alerts.metric(alerts.notifier, "alert_email_latency_seconds_count")
    total = alerts.metric(alerts.notifier, "alert_email_latency_seconds_sum")
    assert sent == 3
    print(
        f"\nFIGURES end to end: 3 emails, latency from the collector's commit to the mail "
        f"server's acceptance {total / sent:.3f} s on average"
    )
