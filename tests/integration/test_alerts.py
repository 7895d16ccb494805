"""Threshold alerts end to end on real processes: events in, one email per crossing out.

The test publishes the collector's ``to-alert-system`` events; the Alert
System and the Alert Notifier run as processes with their databases and
nats-server; the SMTP server is in the test process. Each test waits until
the pipeline has settled (every event evaluated, relayed and mailed, by the
broker's and the outboxes' counts) before it says what was not sent.
"""

import hashlib
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from common.broker.streams import SLA_BREACH, TO_ALERT_SYSTEM, TO_DATA_COLLECTOR, TO_NOTIFIER
from tests.integration.alerts_support import flights_event, new_interest, removed_event
from tests.utils import wait_until

pytestmark = pytest.mark.local_stack


def test_over_and_under_each_get_one_email_in_band_none_and_repeats_nothing(alerts):
    busy = new_interest("busy", high=200, low=10)
    quiet = new_interest("quiet", high=300, low=10)
    in_band = new_interest("inband", high=300, low=100)
    events = [
        flights_event("LIRF", 238, [busy.follower(), in_band.follower()]),
        flights_event("LIBP", 4, [quiet.follower()]),
    ]
    alerts.publish(*events)
    alerts.wait_for_emails({busy.email: 1, quiet.email: 1})
    alerts.wait_settled()
    # The same events again (a relay's republish: the broker drops it), then another cycle
    # with the same figures (a new event): nothing changes, nothing is sent.
    alerts.publish(*events)
    later = datetime.now(UTC) + timedelta(seconds=1)
    alerts.publish(
        flights_event("LIRF", 238, [busy.follower(), in_band.follower()], committed_at=later),
        flights_event("LIBP", 4, [quiet.follower()], committed_at=later),
    )
    alerts.wait_settled()
    counts = alerts.smtp.counts()
    assert (counts[busy.email], counts[quiet.email], counts[in_band.email]) == (1, 1, 0)
    assert alerts.state(in_band) == ("inside", 0)
    assert alerts.state(busy) == ("above", 1) and alerts.state(quiet) == ("below", 1)


def test_the_email_says_which_threshold_the_value_and_the_window(alerts):
    interest = new_interest("anna", high=200, low=10)
    alerts.publish(flights_event("LIRF", 238, [interest.follower()], day=date(2026, 12, 5)))
    alerts.wait_for_emails({interest.email: 1})
    (mail,) = alerts.smtp.to(interest.email)
    assert mail.to == [interest.email]
    assert mail.mail_from == "alerts@tracker.example"
    assert mail.subject.startswith("LIRF (Leonardo Da Vinci (Fiumicino) International Airport): ")
    assert "238 flights, above your upper threshold of 200" in mail.subject
    assert "went above your upper threshold" in mail.body
    assert "Flights (arrivals and departures): 238" in mail.body
    assert "Your upper threshold (high_value): 200" in mail.body
    assert "Window: 2026-12-05 00:00 UTC to 2026-12-06 00:00 UTC" in mail.body
    crossing = hashlib.sha256(f"{interest.id}:1".encode()).hexdigest()
    assert mail.message_id == f"<crossing.{crossing}@tracker.example>"


def test_thresholds_moved_across_the_value_send_one_email_each_new_crossing(alerts):
    user = new_interest("mover", high=300, low=10)

    def update(flights: int, **thresholds) -> None:
        # A follower's new thresholds come alone in their event, as PUT /interests sends them.
        alerts.publish(flights_event("EGLL", flights, [user.follower(**thresholds)]))
        alerts.wait_settled()

    update(238)  # inside: 10 <= 238 <= 300
    update(238, high_value=200)  # the upper threshold moved under the value: above
    update(250, high_value=200)  # another cycle, still above: nothing
    update(238, high_value=300)  # back inside: no email, re-armed
    update(238, high_value=200)  # above again: a new email
    update(4, high_value=200)  # from above straight to below: one more
    update(4, high_value=200, low_value=None)  # the lower threshold cleared: inside
    subjects = [mail.subject for mail in alerts.smtp.to(user.email)]
    assert len(subjects) == 3, subjects
    assert "above your upper threshold of 200" in subjects[0]
    assert "above your upper threshold of 200" in subjects[1]
    assert "below your lower threshold of 10" in subjects[2]
    states = [
        (m["condition"], m["version"])
        for m in alerts.stream(TO_DATA_COLLECTOR)
        if m["kind"] == "alert-state" and m["interest_id"] == user.id
    ]
    assert states == [("above", 1), ("inside", 2), ("above", 3), ("below", 4), ("inside", 5)]
    receipts = [
        m
        for m in alerts.stream(TO_DATA_COLLECTOR)
        if m["kind"] == "emailed" and m["interest_id"] == user.id
    ]
    assert [m["crossing_id"] for m in receipts] == [
        hashlib.sha256(f"{user.id}:{version}".encode()).hexdigest() for version in (1, 3, 4)
    ]


def test_a_removed_interest_gets_no_more_email_even_from_a_late_event(alerts):
    kept = new_interest("kept", high=200)
    removed = new_interest("removed", high=200)
    alerts.publish(flights_event("LIMC", 150, [kept.follower(), removed.follower()]))
    alerts.wait_settled()
    alerts.publish(removed_event(removed))
    # An event written before the deletion, delivered after it.
    alerts.publish(flights_event("LIMC", 250, [kept.follower(), removed.follower()]))
    alerts.wait_settled()
    counts = alerts.smtp.counts()
    assert (counts[kept.email], counts[removed.email]) == (1, 0)
    assert alerts.state(removed) is None


def test_an_event_older_than_the_state_changes_nothing(alerts):
    user = new_interest("ordered", high=300)
    now = datetime.now(UTC)
    # The newer event (thresholds moved down) is handled first; the older one comes late.
    alerts.publish(flights_event("LEMD", 250, [user.follower(high_value=200)], committed_at=now))
    alerts.publish(
        flights_event("LEMD", 250, [user.follower()], committed_at=now - timedelta(seconds=5))
    )
    # And an event for an earlier day, whenever it was committed.
    alerts.publish(flights_event("LEMD", 250, [user.follower()], day=date(2026, 12, 4)))
    alerts.wait_settled()
    assert alerts.state(user) == ("above", 1)
    assert alerts.smtp.counts()[user.email] == 1


def test_a_message_that_is_not_an_event_is_parked_and_shown(alerts):
    user = new_interest("beside-parked", high=10)
    before = alerts.broker.dead_letters(TO_ALERT_SYSTEM)
    alerts.publish_raw(TO_ALERT_SYSTEM, {"kind": "flights", "airport": "LIRF"})
    # Values no table could hold fail when read, not in the batch's transaction.
    alerts.publish(flights_event("L" * 30, 100, [user.follower()]))
    alerts.publish(flights_event("LIRF", 100, [user.follower(interest_id=2**64)]))
    alerts.publish(flights_event("LIRF", 100, [user.follower()]))
    wait_until(lambda: alerts.broker.dead_letters(TO_ALERT_SYSTEM) == before + 3)
    alerts.wait_for_emails({user.email: 1})
    health = alerts.alert_system.get("/health").json()
    assert health["alerts"]["dead_letters"][TO_ALERT_SYSTEM] == before + 3
    parked = alerts.metric(
        alerts.alert_system, "broker_dead_letter_messages", subject=TO_ALERT_SYSTEM
    )
    assert parked == before + 3


def test_events_no_statement_could_take_never_hold_up_the_pipeline(alerts):
    far_east = new_interest("far-east", high=10)
    beside = new_interest("beside-hostile", high=10)
    before = alerts.broker.dead_letters(TO_ALERT_SYSTEM)
    # The window of 2026-12-05 UTC at +20:00: Python reads offsets up to 24 hours,
    # PostgreSQL only up to 15:59.
    shifted = flights_event("LIRF", 100, [far_east.follower()])
    shifted["window"] = {"start": "2026-12-05T20:00:00+20:00", "end": "2026-12-06T20:00:00+20:00"}
    alerts.publish_raw(TO_ALERT_SYSTEM, shifted)
    # More ids than one statement can bind (65,535), in a message well under 1 MB.
    alerts.publish_raw(TO_ALERT_SYSTEM, {"kind": "removed", "interest_ids": list(range(1, 70_001))})
    alerts.publish(flights_event("LIRF", 100, [beside.follower()]))
    alerts.wait_for_emails({far_east.email: 1, beside.email: 1})
    wait_until(lambda: alerts.broker.dead_letters(TO_ALERT_SYSTEM) == before + 1)
    (mail,) = alerts.smtp.to(far_east.email)
    assert "Window: 2026-12-05 00:00 UTC to 2026-12-06 00:00 UTC" in mail.body


def test_a_follower_whose_address_no_email_can_go_to_holds_up_no_one_else(alerts):
    # Stored under older rules (folded with Unicode's): the rules now refuse it.
    legacy = new_interest("legacy", high=10)
    other = new_interest("beside-legacy", high=10)
    before = alerts.broker.dead_letters(TO_ALERT_SYSTEM)
    unsendable = {**legacy.follower(), "email": "\u017fam-legacy@example.com"}
    alerts.publish(flights_event("LIRF", 100, [unsendable, other.follower()]))
    alerts.wait_for_emails({other.email: 1})
    alerts.wait_settled()
    assert alerts.smtp.counts().get("\u017fam-legacy@example.com") is None
    assert alerts.state(legacy) == ("above", 1)
    assert alerts.broker.dead_letters(TO_ALERT_SYSTEM) == before


def crossing(email: str, **changes) -> dict:
    """A ``crossing`` as the Alert System publishes it, with ``changes``."""
    return {
        "kind": "crossing",
        "crossing_id": hashlib.sha256(f"{email}{changes}".encode()).hexdigest(),
        "interest_id": 1,
        "email": email,
        "airport": "LIRF",
        "airport_name": "Fiumicino",
        "condition": "above",
        "threshold": "high_value",
        "limit": 10,
        "value": 100,
        "window": {"start": "2026-12-05T00:00:00Z", "end": "2026-12-06T00:00:00Z"},
        "since": "2026-12-06T00:01:00Z",
        **changes,
    }


def test_a_crossing_that_would_forge_headers_or_add_recipients_is_parked(alerts):
    user = new_interest("headers", high=10)
    stranger = f"stranger.{user.id}@example.org"
    before = alerts.broker.dead_letters(TO_NOTIFIER)
    hostile = [
        crossing(user.email, airport_name=f"Fiumicino\r\nBcc: {stranger}"),
        crossing(user.email, airport_name=f"Fiumicino\u2028Bcc: {stranger}"),
        crossing(f"{user.email}\r\nBcc: {stranger}"),
        crossing(f"{user.email}, {stranger}"),
        crossing(f"Someone <{user.email}>, {stranger}"),
    ]
    for payload in hostile:
        alerts.publish_raw(TO_NOTIFIER, payload)
    alerts.publish_raw(TO_NOTIFIER, crossing(user.email))
    alerts.wait_for_emails({user.email: 1})
    wait_until(lambda: alerts.broker.dead_letters(TO_NOTIFIER) == before + len(hostile))
    assert alerts.smtp.counts()[stranger] == 0
    assert [mail.to for mail in alerts.smtp.to(user.email)] == [[user.email]]


def test_a_recipient_refused_for_good_is_parked_and_the_others_are_mailed(alerts):
    refused = new_interest("refused", high=10)
    greylisted = new_interest("greylisted", high=10)
    fine = new_interest("fine", high=10)
    alerts.smtp.refuse(refused.email, f"550 5.1.1 <{refused.email}>: No such user")
    alerts.smtp.refuse(greylisted.email, "451 4.7.1 Greylisted, try again", times=2)
    before = alerts.broker.dead_letters("to-notifier")
    failed = alerts.metric(
        alerts.notifier, "alert_emails_failed_total", kind="crossing", reason="permanent"
    )
    alerts.publish(
        flights_event("LFPG", 500, [refused.follower(), greylisted.follower(), fine.follower()])
    )
    alerts.wait_for_emails({fine.email: 1, greylisted.email: 1})
    wait_until(lambda: alerts.broker.dead_letters("to-notifier") == before + 1)
    alerts.wait_settled()
    counts = alerts.smtp.counts()
    assert (counts[refused.email], counts[greylisted.email], counts[fine.email]) == (0, 1, 1)
    assert alerts.smtp.inbox.refused[greylisted.email] == 2  # retried after each 4xx
    emails = alerts.notifier.get("/health").json()["emails"]
    assert emails["dead_letters"]["to-notifier"] == before + 1
    assert emails["smtp"]["status"] == "ok"
    permanent = alerts.metric(
        alerts.notifier, "alert_emails_failed_total", kind="crossing", reason="permanent"
    )
    assert permanent == failed + 1
    # The log says why, and names no address (the server's reply quoted it).
    log = alerts.stack.log_text("alert_notifier")
    assert "No such user" in log and refused.email not in log and greylisted.email not in log


def test_an_sla_breach_is_mailed_to_the_operator_once(alerts):
    operator = f"ops.{hashlib.sha256(str(datetime.now()).encode()).hexdigest()[:8]}@example.com"
    breach = {
        "kind": "sla-breach",
        "breach_id": hashlib.sha256(operator.encode()).hexdigest(),
        "to": operator,
        "metric": "p99_latency",
        "query": "histogram_quantile(0.99, rate(http_request_duration_seconds_bucket[5m]))",
        "value": 1.7,
        "violated": "max",
        "limit": 1.0,
        "below": 0,
        "above": 3,
        "at": "2026-12-07T10:00:00Z",
    }
    alerts.publish_raw(SLA_BREACH, breach)
    alerts.publish_raw(SLA_BREACH, breach)  # a second delivery of the same breach
    alerts.wait_for_emails({operator: 1})
    wait_until(
        lambda: (
            alerts.metric(alerts.notifier, "alert_emails_already_sent_total", kind="sla-breach")
            >= 1
        )
    )
    (mail,) = alerts.smtp.to(operator)
    assert mail.subject == "SLA breach: p99_latency above its maximum (1.7, limit 1)"
    assert "Samples below the minimum: 0; above the maximum: 3" in mail.body


@pytest.mark.parametrize("service", ["alert_system", "alert_notifier"])
def test_health_and_metrics_say_what_an_operator_needs(alerts, service):
    api = alerts.alert_system if service == "alert_system" else alerts.notifier
    # A labelled counter shows once it counted: one event, one email, whatever ran before.
    user = new_interest("operated", high=10)
    alerts.publish(flights_event("LIRF", 100, [user.follower()]))
    alerts.wait_for_emails({user.email: 1})
    answer = api.get("/health")
    assert answer.status_code == 200
    body = answer.json()
    # Exactly what the API document says /health answers.
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    assert body.keys() <= schemas["Health"]["properties"].keys()
    facts = schemas["AlertsHealth" if service == "alert_system" else "EmailsHealth"]
    facts_key = "alerts" if service == "alert_system" else "emails"
    assert body[facts_key].keys() == facts["properties"].keys()
    assert body["status"] == "ok" and body["broker"]["status"] == "ok"
    metrics = api.get("/metrics").text
    expected = {
        "alert_system": ["alert_events_total", "alert_crossings_total", "alert_interests"],
        "alert_notifier": ["alert_emails_sent_total", "alert_email_latency_seconds", "smtp_up"],
    }[service]
    for name in [
        *expected,
        "broker_up",
        "broker_consumer_pending_messages",
        "broker_outbox_messages",
    ]:
        assert f"\n{name}" in metrics, name


def test_the_latency_from_the_collector_s_commit_to_acceptance_is_measured(alerts):
    user = new_interest("timed", high=10)
    count = alerts.metric(alerts.notifier, "alert_email_latency_seconds_count")
    alerts.publish(flights_event("LIRF", 100, [user.follower()]))
    alerts.wait_for_emails({user.email: 1})
    wait_until(
        lambda: alerts.metric(alerts.notifier, "alert_email_latency_seconds_count") == count + 1
    )
    # Accepted within the pipeline's deadline of the event's commit (seconds, on this machine).
    assert (
        alerts.metric(alerts.notifier, "alert_email_latency_seconds_bucket", le="30.0") >= count + 1
    )
    assert Counter(alerts.smtp.counts())[user.email] == 1
