"""The alerts pipeline under faults: no crossing lost, none mailed twice, each case counted.

Real processes (PostgreSQL, nats-server, both alert services), the SMTP
server in the test process. Every fault is made at a known moment, not
after a guessed delay: the SMTP server holds a chosen recipient's message
at DATA (the notifier is then mid-batch), or the test holds a lock the
Alert System's transaction needs (it is then mid-batch), and the test
waits until the process is seen waiting there. Each test prints its
figures (``FIGURES ...``; ``pytest -s`` shows them).
"""

import signal
from concurrent.futures import ThreadPoolExecutor

import pytest

from alert_notifier.app import create_app
from alert_notifier.models import db
from alert_notifier.services import send_emails
from common.broker.connection import BrokerUnavailableError
from common.broker.consumer import DONE, Delivery
from common.broker.messages import as_message, crossing_id
from common.broker.streams import TO_NOTIFIER, stream_of
from common.mail import SmtpSender
from tests.integration.alerts_support import (
    PIPELINE_TIMEOUT,
    ServiceReplica,
    flights_event,
    holding_lock,
    lock_waits,
    new_interest,
    tally,
)
from tests.unit.test_alert_services import sample_crossing
from tests.utils import wait_until

pytestmark = pytest.mark.local_stack


def crossing_users(prefix: str, count: int) -> list:
    """Interests whose upper threshold (10) any figure of these tests crosses."""
    return [new_interest(f"{prefix}{n}", high=10) for n in range(count)]


def followers(users: list) -> list[dict]:
    return [user.follower() for user in users]


def test_smtp_down_for_a_while_then_each_crossing_is_mailed_once(alerts):
    users = crossing_users("down", 20)
    unreachable = {"kind": "crossing", "reason": "unreachable"}
    before = alerts.metric(alerts.notifier, "alert_emails_failed_total", **unreachable)
    alerts.smtp.stop()
    try:
        alerts.publish(flights_event("LIRF", 100, followers(users)))
        # Tried, refused, and tried again after each backoff: three rounds at least.
        wait_until(
            lambda: (
                alerts.metric(alerts.notifier, "alert_emails_failed_total", **unreachable)
                >= before + 3
            ),
            timeout=30,
        )
        health = alerts.notifier.get("/health").json()
        assert health["emails"]["smtp"]["status"] == "unavailable"
        assert alerts.metric(alerts.notifier, "smtp_up") == 0
        assert alerts.smtp.counts().keys().isdisjoint(user.email for user in users)
    finally:
        alerts.smtp.start()
    alerts.wait_for_emails({user.email: 1 for user in users})
    alerts.wait_settled()
    failed = alerts.metric(alerts.notifier, "alert_emails_failed_total", **unreachable) - before
    print(f"\nFIGURES smtp-down: {failed:.0f} failed attempts while it was down")
    assert tally(alerts.smtp, users, "smtp-down") == (20, 20, 0, 0)


def publish_when_up(alerts, event: dict) -> None:
    """Publish once the broker takes it (it is coming back)."""

    def published() -> bool:
        try:
            alerts.publish(event)
        except BrokerUnavailableError:
            return False
        return True

    wait_until(published, timeout=30, interval=0.2)


def test_nats_restarted_with_both_services_mid_batch(alerts):
    held = new_interest("held-broker", high=10)
    first = [*crossing_users("broker-a", 9), held, *crossing_users("broker-a", 10)]
    second = crossing_users("broker-b", 20)
    third = crossing_users("broker-c", 20)
    alerts.smtp.hold(held.email)
    alerts.publish(flights_event("LIRF", 100, followers(first)))
    # The notifier is mid-batch: the tenth email held at DATA. The batch in hand is what it
    # fetched with it: the event's twenty crossings, unless it fetched before the Alert
    # System's relay had published them all (the others then wait for the broker).
    alerts.smtp.wait_until_holding(held.email)
    lag = alerts.broker.consumer_lag(stream_of(TO_NOTIFIER).name, "alert_notifier")
    in_hand = lag["unacknowledged"]
    with holding_lock(alerts, "alert_system", "LOCK TABLE alert_states IN EXCLUSIVE MODE"):
        alerts.publish(flights_event("EGLL", 100, followers(second)))
        # The Alert System is mid-batch too: its transaction waits for the table.
        wait_until(lambda: lock_waits(alerts, "alert_system") >= 1)
        alerts.stack.stop_broker()
    # Both finish their batches with the broker gone: the crossings wait in the Alert
    # System's outbox, the notifier's emails are sent and recorded, nothing can be acked.
    alerts.smtp.release(held.email)
    mailed = lambda: sum(alerts.smtp.counts()[user.email] for user in first)  # noqa: E731
    wait_until(lambda: mailed() == in_hand, timeout=PIPELINE_TIMEOUT)
    assert 1 <= in_hand <= len(first)
    print(f"\nFIGURES nats-restart: {in_hand} of {len(first)} crossings in the batch in hand")
    wait_until(lambda: alerts.sql("alert_system", "SELECT count(*) FROM broker_outbox")[0][0] >= 20)
    assert alerts.alert_system.get("/health").json()["broker"]["status"] == "unavailable"
    alerts.stack.start_broker()
    publish_when_up(alerts, flights_event("LFPG", 100, followers(third)))
    everyone = first + second + third
    alerts.wait_for_emails({user.email: 1 for user in everyone})
    alerts.wait_settled()
    assert tally(alerts.smtp, everyone, "nats-restart") == (60, 60, 0, 0)


def test_the_alert_system_killed_mid_batch_loses_and_repeats_nothing(alerts):
    users = crossing_users("kill-as", 30)
    with holding_lock(alerts, "alert_system", "LOCK TABLE alert_states IN EXCLUSIVE MODE"):
        alerts.publish(flights_event("LIRF", 100, followers(users[:15])))
        alerts.publish(flights_event("LIMC", 100, followers(users[15:])))
        wait_until(lambda: lock_waits(alerts, "alert_system") >= 1)
        worker = alerts.worker_of("alert_system")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    alerts.restart("alert_system")
    alerts.wait_for_emails({user.email: 1 for user in users})
    alerts.wait_settled()
    assert tally(alerts.smtp, users, "alert-system-killed") == (30, 30, 0, 0)


def test_the_notifier_killed_mid_batch_loses_and_repeats_nothing(alerts):
    held = new_interest("held-kill", high=10)
    users = [*crossing_users("kill-an", 29), held]
    alerts.smtp.hold(held.email)
    alerts.publish(flights_event("LIRF", 100, followers(users)))
    alerts.smtp.wait_until_holding(held.email)
    # The last email of the batch is held: the other senders mail the rest meanwhile. The
    # kill comes once each of those is recorded, so none is between acceptance and record.
    others = [user.email for user in users[:-1]]
    recorded = "SELECT count(*) FROM sent_emails WHERE recipient = ANY(%s)"
    wait_until(lambda: alerts.sql("alert_notifier", recorded, (others,))[0][0] == 29)
    sent_before_the_kill = sum(alerts.smtp.counts()[user.email] for user in users)
    # The batch in hand (the held email's and the others fetched with it) is not acknowledged.
    lag = alerts.broker.consumer_lag(stream_of(TO_NOTIFIER).name, "alert_notifier")
    in_the_batch = lag["unacknowledged"]
    worker = alerts.worker_of("alert_notifier")
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    # The server sees the client go and drops the message it was holding (never accepted).
    wait_until(lambda: held.email not in alerts.smtp.inbox.held)
    alerts.smtp.release(held.email)
    alerts.restart("alert_notifier")
    alerts.wait_for_emails({user.email: 1 for user in users})
    alerts.wait_settled()
    already_sent = alerts.metric(
        alerts.notifier, "alert_emails_already_sent_total", kind="crossing"
    )
    print(
        f"\nFIGURES notifier-killed: {sent_before_the_kill} sent before the kill, "
        f"{already_sent:.0f} redelivered after it and not sent again"
    )
    assert sent_before_the_kill == 29 and already_sent >= in_the_batch - 1 >= 1
    assert tally(alerts.smtp, users, "notifier-killed") == (30, 30, 0, 0)


@pytest.fixture
def notifier_app(alerts, monkeypatch):
    """The Alert Notifier's worker app in the test process, on the stack's database and mail."""
    for name, value in alerts.stack.env.items():
        monkeypatch.setenv(name, value)
    app = create_app(process="worker")
    yield app
    with app.app_context():
        db.engine.dispose()


def test_two_deliveries_of_one_crossing_in_a_batch_send_one_email(alerts, notifier_app):
    user = new_interest("twice-in-a-batch", high=10)
    crossing = sample_crossing().model_copy(
        update={"crossing_id": crossing_id(user.id, 1), "interest_id": user.id, "email": user.email}
    )
    payload = as_message(TO_NOTIFIER, crossing).payload
    batch = [Delivery(TO_NOTIFIER, f"copy-{n}", payload, attempt=1) for n in (1, 2)]
    sender = SmtpSender(notifier_app.config["SMTP_SERVER"])

    def handle() -> list:
        with notifier_app.app_context():
            return send_emails(batch, sender=sender)

    alerts.smtp.hold(user.email)
    with ThreadPoolExecutor(1) as pool:
        outcomes = pool.submit(handle)
        # One sender is mid-send; the other meets its record and waits for the outcome.
        alerts.smtp.wait_until_holding(user.email)
        wait_until(lambda: lock_waits(alerts, "alert_notifier") >= 1)
        alerts.smtp.release(user.email)
        assert outcomes.result(timeout=30) == [DONE, DONE]
    assert alerts.smtp.counts()[user.email] == 1


@pytest.fixture
def replicas(alerts, tmp_path):
    """A second process of each alert service, on ports of its own, started together."""
    started = {
        package: ServiceReplica(package, alerts.stack, tmp_path / f"{package}.log")
        for package in ("alert_system", "alert_notifier")
    }
    try:
        yield {package: replica.wait() for package, replica in started.items()}
    finally:
        for replica in started.values():
            replica.process.terminate()
        for replica in started.values():
            replica.stop()


def test_two_replicas_of_each_share_the_work_and_mail_each_crossing_once(alerts, replicas):
    apis = {
        "alert_system": [alerts.alert_system, replicas["alert_system"].api],
        "alert_notifier": [alerts.notifier, replicas["alert_notifier"].api],
    }

    def counts(package: str, metric: str, **labels) -> list[float]:
        return [alerts.metric(api, metric, **labels) for api in apis[package]]

    events_before = counts("alert_system", "alert_events_total", kind="flights")
    sent_before = counts("alert_notifier", "alert_emails_sent_total", kind="crossing")
    # One replica of each is kept busy mid-batch: the other must do the rest meanwhile.
    blocker = new_interest("blocker", high=10)
    held = new_interest("held-replica", high=10)
    alerts.publish(flights_event("LIRF", 5, [blocker.follower()]))  # inside: a state to lock
    alerts.wait_settled()
    alerts.smtp.hold(held.email)
    alerts.publish(flights_event("LIRF", 100, [held.follower()]))
    alerts.smtp.wait_until_holding(held.email)
    users = crossing_users("replicas", 40)
    select_blocker = "SELECT 1 FROM alert_states WHERE interest_id = %s FOR UPDATE"
    with holding_lock(alerts, "alert_system", select_blocker, (blocker.id,)):
        alerts.publish(flights_event("EGLL", 100, [blocker.follower()]))
        wait_until(lambda: lock_waits(alerts, "alert_system") >= 1)
        for n in range(0, 40, 4):
            alerts.publish(flights_event("LFPG", 100 + n, followers(users[n : n + 4])))
        alerts.wait_for_emails({user.email: 1 for user in users})
    alerts.smtp.release(held.email)
    # The same crossings published again (beyond the broker's duplicate window): the two
    # notifiers may take a copy each at once; the record of sent emails lets one through.
    for payload in [
        m for m in alerts.stream(TO_NOTIFIER) if m.get("email") in {u.email for u in users[:10]}
    ]:
        alerts.publish_raw(TO_NOTIFIER, payload)
    everyone = [*users, held, blocker]
    alerts.wait_for_emails({user.email: 1 for user in everyone})
    alerts.wait_settled()
    events = [
        a - b
        for a, b in zip(
            counts("alert_system", "alert_events_total", kind="flights"), events_before, strict=True
        )
    ]
    sent = [
        a - b
        for a, b in zip(
            counts("alert_notifier", "alert_emails_sent_total", kind="crossing"),
            sent_before,
            strict=True,
        )
    ]
    print(f"\nFIGURES replicas: events per Alert System {events}, emails per notifier {sent}")
    assert min(events) >= 1 and min(sent) >= 1, (events, sent)
    assert tally(alerts.smtp, everyone, "replicas") == (42, 42, 0, 0)
