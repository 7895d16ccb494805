"""The Alert System and the Alert Notifier without a stack: settings, commands, documents, rules."""

import hashlib
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from openapi_spec_validator import validate
from pydantic import ValidationError

from alert_notifier.app import SERVICE as NOTIFIER
from alert_notifier.config import Settings as NotifierSettings
from alert_notifier.emails import crossing_email
from alert_notifier.services import send_one
from alert_system.app import SERVICE as ALERT_SYSTEM
from alert_system.config import Settings as AlertSystemSettings
from alert_system.services import condition_of, is_older
from common.broker.consumer import Delivery, Park
from common.broker.messages import (
    ALERT_SYSTEM_EVENT,
    MAX_IDS_PER_EVENT,
    Crossing,
    FlightsEvent,
    Follower,
    as_message,
    content_id,
)
from common.broker.streams import SLA_BREACH, TO_NOTIFIER
from common.mail import SmtpSender, SmtpServer
from common.process import launcher
from common.settings import ConfigError
from data_collector.config import Settings as DataCollectorSettings
from devstack.stack import free_port
from tests.smtp_server import SmtpTestServer
from tests.unit.test_openapi import document_operations, flask_operations
from user_manager.config import Settings as UserManagerSettings

NEW_SERVICES = {"alert_system": ALERT_SYSTEM, "alert_notifier": NOTIFIER}


@pytest.fixture
def environment(monkeypatch):
    """An environment with the notifier's one required setting and nothing else of theirs."""
    for settings in (AlertSystemSettings, NotifierSettings):
        for variable in settings.variables():
            monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("SMTP_HOST", "mail.example.com")
    monkeypatch.setenv("BIND_HOST", "127.0.0.1")  # no warning about an open port
    return monkeypatch


def test_the_new_services_serve_no_grpc_and_read_no_grpc_port(environment):
    for settings in (AlertSystemSettings, NotifierSettings):
        assert settings().GRPC_PORT is None
        assert not [name for name in settings.variables() if name.endswith("_GRPC_PORT")]
        assert settings().security_warnings() == []  # no gRPC server to leave open
    for service in NEW_SERVICES.values():
        assert service.role_names == ["web", "worker"]


def test_the_existing_services_keep_their_grpc_ports(environment):
    assert UserManagerSettings().GRPC_PORT == 50051
    assert DataCollectorSettings().GRPC_PORT == 50052


def test_the_broker_settings_are_the_same_in_both_services(environment):
    environment.setenv("NATS_URL", "nats://broker.internal:4222")
    for settings in (AlertSystemSettings(), NotifierSettings()):
        assert settings.NATS_URL == "nats://broker.internal:4222"
        assert settings.NATS_STREAM_REPLICAS == 1
        assert settings.CONSUMER_ACK_WAIT_SECONDS == 30
    environment.setenv("CONSUMER_RETRY_FIRST_SECONDS", "10")
    environment.setenv("CONSUMER_RETRY_MAX_SECONDS", "5")
    with pytest.raises(ConfigError, match="CONSUMER_RETRY_MAX_SECONDS must be at least"):
        AlertSystemSettings()


def test_the_notifier_needs_a_mail_server_and_says_so(environment):
    environment.delenv("SMTP_HOST")
    with pytest.raises(ConfigError, match="SMTP_HOST must be set"):
        NotifierSettings()
    environment.setenv("SMTP_HOST", "mail.example.com:587")  # the port is SMTP_PORT
    with pytest.raises(ConfigError, match="SMTP_HOST must be a host name or address without"):
        NotifierSettings()
    environment.setenv("SMTP_HOST", "mail.example.com")
    environment.setenv("SMTP_USERNAME", "alerts")
    with pytest.raises(ConfigError, match="SMTP_USERNAME and SMTP_PASSWORD go together"):
        NotifierSettings()
    environment.setenv("SMTP_PASSWORD", "secret")
    (warning,) = NotifierSettings().startup_warnings()
    assert "SMTP_STARTTLS" in warning and "secret" not in warning
    environment.setenv("SMTP_STARTTLS", "1")
    assert NotifierSettings().startup_warnings() == []
    assert "secret" not in repr(NotifierSettings().SMTP_SERVER)
    # Beyond ASCII, a mail server without SMTPUTF8 would refuse every email.
    environment.setenv("ALERT_EMAIL_FROM", "Flight Tracker <alerts@bücher.de>")
    with pytest.raises(ConfigError, match="ALERT_EMAIL_FROM must be an ASCII email address"):
        NotifierSettings()
    # What a lenient reading would have sent as something else: two mailboxes, a cut address.
    for sender in ("nobody", "alerts@example.com, x@y.z", "alerts@example.com\tx", "A <a@b.c"):
        environment.setenv("ALERT_EMAIL_FROM", sender)
        with pytest.raises(ConfigError, match="ALERT_EMAIL_FROM must be one email address"):
            NotifierSettings()
    environment.setenv("ALERT_EMAIL_FROM", "Flight Tracker Inc. <alerts@example.com>")
    assert NotifierSettings().ALERT_EMAIL_FROM.endswith("<alerts@example.com>")  # obsolete, fine
    environment.delenv("ALERT_EMAIL_FROM")
    # smtplib logs in with ASCII: any other character would fail every email.
    environment.setenv("SMTP_PASSWORD", "sécret")
    with pytest.raises(ConfigError, match="SMTP_USERNAME and SMTP_PASSWORD must be ASCII"):
        NotifierSettings()
    environment.setenv("SMTP_PASSWORD", "secret")
    environment.setenv("SMTP_CONNECTIONS", "5")  # each holds one of DB_POOL_SIZE's 5
    with pytest.raises(ConfigError, match=r"SMTP_CONNECTIONS must be below DB_POOL_SIZE \(5\)"):
        NotifierSettings()
    environment.setenv("DB_POOL_SIZE", "6")
    assert NotifierSettings().SMTP_CONNECTIONS == 5


def test_a_removed_interest_is_remembered_longer_than_the_streams_keep_messages(environment):
    environment.setenv("REMOVED_INTEREST_RETENTION_DAYS", "3")
    with pytest.raises(ConfigError, match="REMOVED_INTEREST_RETENTION_DAYS must be at least 7"):
        AlertSystemSettings()


@pytest.fixture
def answering_ping():
    """A web server on a free port that answers ``GET /ping`` (where a web role would)."""

    class Ping(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/ping" else 404)
            self.end_headers()

        def log_message(self, *_args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Ping)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.mark.parametrize("name", sorted(NEW_SERVICES))
def test_the_healthcheck_probes_rest_only_and_refuses_grpc(
    name, environment, answering_ping, capsys
):
    environment.setenv("BIND_HOST", "127.0.0.1")
    environment.setenv(f"{name.upper()}_HTTP_PORT", str(answering_ping))
    assert launcher.main(NEW_SERVICES[name], ["healthcheck"]) == 0
    assert launcher.main(NEW_SERVICES[name], ["healthcheck", "grpc"]) == 2
    assert "healthcheck [web] [database]" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(NEW_SERVICES))
def test_the_document_is_valid_and_lists_exactly_the_routes(name, environment):
    environment.setenv(
        f"{name.upper()}_DATABASE_URL", f"postgresql://nobody@127.0.0.1:{free_port()}/x"
    )
    app = NEW_SERVICES[name].create_app()
    document = app.test_client().get("/openapi.json").get_json()
    validate(document)
    assert document_operations(document) == flask_operations(app)
    health = document["components"]["schemas"]["Health"]["properties"]
    assert {"broker", NEW_SERVICES[name].health} <= health.keys()


def follower(high=None, low=None) -> Follower:
    return Follower(interest_id=1, email="a@example.com", high_value=high, low_value=low)


@pytest.mark.parametrize(
    ("value", "high", "low", "condition"),
    [
        (201, 200, 10, "above"),
        (200, 200, 10, "inside"),  # at the threshold is not over it
        (9, 200, 10, "below"),
        (10, 200, 10, "inside"),
        (10_000, None, 10, "inside"),  # a missing threshold never fires
        (0, 200, None, "inside"),
        (0, None, None, "inside"),
    ],
)
def test_the_condition_is_strictly_over_or_under_a_threshold(value, high, low, condition):
    assert condition_of(value, follower(high, low)) == condition


def event(day: int, committed_minute: int | None) -> FlightsEvent:
    committed = None if committed_minute is None else f"2026-12-07T10:{committed_minute:02}:00Z"
    return FlightsEvent.model_validate(
        {
            "kind": "flights",
            "airport": "LIRF",
            "window": {
                "start": f"2026-12-{day:02}T00:00:00Z",
                "end": f"2026-12-{day + 1:02}T00:00:00Z",
            },
            "arrivals": 1,
            "departures": 1,
            "flights": 2,
            "followers": [],
            "committed_at": committed,
        }
    )


class State:
    def __init__(self, day: int, committed_minute: int | None):
        self.window_end = datetime(2026, 12, day + 1, tzinfo=UTC)
        self.event_at = (
            None
            if committed_minute is None
            else datetime(2026, 12, 7, 10, committed_minute, tzinfo=UTC)
        )


def test_an_event_is_older_by_its_window_then_by_when_the_collector_committed_it():
    assert is_older(event(4, 30), State(5, 0))  # an earlier window, whenever committed
    assert not is_older(event(6, 0), State(5, 30))  # a later window
    assert is_older(event(5, 10), State(5, 20))  # same window, committed before
    assert not is_older(event(5, 20), State(5, 20))  # the same event again: applied, no change
    assert not is_older(event(5, None), State(5, 20))  # no commit time: the window decides


def test_message_ids_come_from_the_content():
    payload = {"kind": "removed", "interest_ids": [17, 18]}
    same = {"interest_ids": [17, 18], "kind": "removed"}
    assert content_id("removed", payload) == content_id("removed", same)
    assert content_id("removed", payload) != content_id(
        "removed", {**payload, "interest_ids": [17]}
    )
    crossing = sample_crossing()
    assert as_message(TO_NOTIFIER, crossing).msg_id == f"crossing:{crossing.crossing_id}"


def sample_crossing() -> Crossing:
    return Crossing(
        crossing_id=hashlib.sha256(b"17:3").hexdigest(),
        interest_id=17,
        email="anna@example.com",
        airport="LIRF",
        airport_name="Rome Fiumicino",
        condition="below",
        threshold="low_value",
        limit=10,
        value=4,
        window={"start": "2026-12-05T00:00:00Z", "end": "2026-12-06T00:00:00Z"},
        since="2026-12-07T03:12:00Z",
    )


def test_the_email_names_the_airport_the_threshold_the_value_and_the_window():
    crossing = sample_crossing()
    email = crossing_email(crossing, sender="Flight Tracker <alerts@tracker.example>")
    assert email["To"] == "anna@example.com"
    assert email["Subject"] == "LIRF (Rome Fiumicino): 4 flights, below your lower threshold of 10"
    assert email["Message-ID"] == f"<crossing.{crossing.crossing_id}@tracker.example>"
    body = email.get_content()
    assert "went below your lower threshold" in body
    assert "Flights (arrivals and departures): 4" in body
    assert "Your lower threshold (low_value): 10" in body
    assert "Window: 2026-12-05 00:00 UTC to 2026-12-06 00:00 UTC" in body


def test_a_domain_beyond_ascii_is_written_in_its_ascii_form_which_any_server_takes():
    crossing = sample_crossing().model_copy(update={"email": "kate@bücher.de"})
    email = crossing_email(crossing, sender="Flight Tracker <alerts@tracker.example>")
    assert email["To"] == "kate@xn--bcher-kva.de"
    ascii_only = SmtpTestServer(enable_SMTPUTF8=False)
    ascii_only.start()
    try:
        with SmtpSender(SmtpServer(ascii_only.host, ascii_only.port, timeout=5)).batch() as mail:
            mail.send(email)
        assert ascii_only.counts() == {"kate@xn--bcher-kva.de": 1}
    finally:
        ascii_only.stop()


@pytest.mark.parametrize(
    "changes",
    [
        {"airport_name": "Rome\r\nBcc: stranger@example.org"},
        {"airport_name": "Rome\u2028Bcc: stranger@example.org"},
        {"airport_name": "Rome\x85Bcc: stranger@example.org"},
        {"airport_name": "R" * 100_000},
        {"airport": "LI\nRF"},
        {"email": "anna@example.com\r\nBcc: stranger@example.org"},
        {"email": "anna@example.com, stranger@example.org"},
        {"email": "Anna <anna@example.com>, stranger@example.org"},
        # Encoded words: the mail library decodes them into the header, line breaks and all.
        {"airport_name": "=?utf-8?q?Rome=0D=0ABcc=3A_stranger=40example.org?="},
        {"email": "=?utf-8?q?stranger=40example.org?=@example.com"},
        # PostgreSQL stores no NUL: the record of the sending would fail at every delivery.
        {"crossing_id": "a\x00b"},
    ],
    ids=[
        "crlf",
        "line-separator",
        "next-line",
        "huge-name",
        "airport",
        "email-crlf",
        "list",
        "named",
        "encoded-word",
        "encoded-word-address",
        "nul-id",
    ],
)
def test_a_crossing_that_would_forge_headers_or_add_recipients_is_parked_unsent(changes):
    payload = {**sample_crossing().model_dump(mode="json"), **changes}
    delivery = Delivery(TO_NOTIFIER, "crossing:x", payload, attempt=1)
    # Parked before any database or mail server is touched (neither is given here).
    outcome = send_one(delivery, mail=None, email_from="Flight Tracker <alerts@tracker.example>")
    assert isinstance(outcome, Park)


def test_an_sla_breach_naming_a_list_of_recipients_is_parked_unsent():
    breach = {
        "kind": "sla-breach",
        "breach_id": "b" * 64,
        "to": "ops@example.com, stranger@example.org",
        "metric": "p99",
        "query": "up",
        "value": 2.0,
        "violated": "max",
        "limit": 1.0,
        "below": 0,
        "above": 3,
        "at": "2026-12-07T10:00:00Z",
    }
    delivery = Delivery(SLA_BREACH, "sla-breach:x", breach, attempt=1)
    assert isinstance(send_one(delivery, mail=None, email_from="alerts@tracker.example"), Park)
    for changes in ({"metric": "p\n99"}, {"metric": "=?utf-8?q?p99=0D=0AReply-To=3A_x?="}):
        delivery = Delivery(SLA_BREACH, "x", {**breach, "to": "ops@example.com", **changes}, 1)
        assert isinstance(send_one(delivery, mail=None, email_from="alerts@tracker.example"), Park)


def test_times_come_out_in_utc_and_removed_ids_are_bounded():
    event = FlightsEvent(
        kind="flights",
        airport="LIRF",
        window={"start": "2026-12-05T20:00:00+20:00", "end": "2026-12-06T20:00:00+20:00"},
        arrivals=1,
        departures=1,
        flights=2,
        followers=[],
        committed_at="2026-12-06T23:30:00-23:59",
    )
    assert event.window.start == datetime(2026, 12, 5, tzinfo=UTC)
    assert event.window.start.utcoffset() == timedelta(0)
    assert event.committed_at.utcoffset() == timedelta(0)
    with pytest.raises(ValidationError):
        FlightsEvent.model_validate(
            {**event.model_dump(), "committed_at": "9999-12-31T23:00:00-05:00"}
        )
    with pytest.raises(ValidationError):
        ALERT_SYSTEM_EVENT.validate_python(
            {"kind": "removed", "interest_ids": list(range(1, MAX_IDS_PER_EVENT + 2))}
        )
    # No stored row holds a NUL: a follower with one is a forged event, parked when read.
    follower = {"interest_id": 1, "email": "x\x00y@example.com", "high_value": 1}
    with pytest.raises(ValidationError):
        FlightsEvent.model_validate({**event.model_dump(), "followers": [follower]})
