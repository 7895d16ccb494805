"""The SMTP sender against a real SMTP server: one connection a batch, failures sorted by whose."""

import socket
import ssl
import time
from email.message import EmailMessage

import pytest

from common.mail import PERMANENT, TEMPORARY, UNREACHABLE, SendError, SmtpSender, SmtpServer
from devstack.stack import free_port
from tests.smtp_server import SmtpTestServer, tls_server_options
from tests.utils import write_test_certificates


def email_to(recipient: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = "Flight Tracker <alerts@tracker.example>"
    email["To"] = recipient
    email["Subject"] = "LIRF: 238 flights"
    email.set_content("over your upper threshold")
    return email


def sender_for(server: SmtpTestServer, **options) -> SmtpSender:
    return SmtpSender(SmtpServer(server.host, server.port, timeout=5, **options))


def test_a_batch_sends_over_one_connection(smtp_server):
    with sender_for(smtp_server).batch() as mail:
        for n in range(3):
            mail.send(email_to(f"user{n}@example.com"))
    mails = smtp_server.mails()
    assert [m.to for m in mails] == [[f"user{n}@example.com"] for n in range(3)]
    assert len({m.connection for m in mails}) == 1
    assert mails[0].mail_from == "alerts@tracker.example"


def test_a_refused_recipient_is_temporary_on_4xx_permanent_on_5xx_and_the_batch_goes_on(
    smtp_server,
):
    smtp_server.refuse("full@example.com", "452 4.2.2 Mailbox full")
    smtp_server.refuse("gone@example.com", "550 5.1.1 No such user")
    with sender_for(smtp_server).batch() as mail:
        with pytest.raises(SendError) as temporary:
            mail.send(email_to("full@example.com"))
        with pytest.raises(SendError) as permanent:
            mail.send(email_to("gone@example.com"))
        mail.send(email_to("fine@example.com"))
    assert (temporary.value.kind, temporary.value.code) == (TEMPORARY, 452)
    assert (permanent.value.kind, permanent.value.code) == (PERMANENT, 550)
    assert "No such user" in permanent.value.reason
    assert smtp_server.counts() == {"fine@example.com": 1}


def test_a_server_closing_for_everyone_is_unreachable_not_the_message_s_fault(smtp_server):
    smtp_server.refuse("someone@example.com", "421 4.3.2 Shutting down")
    with sender_for(smtp_server).batch() as mail, pytest.raises(SendError) as closing:
        mail.send(email_to("someone@example.com"))
    assert closing.value.kind == UNREACHABLE


def test_no_server_is_unreachable_and_so_is_one_that_never_answers():
    nobody = SmtpSender(SmtpServer("127.0.0.1", free_port(), timeout=2))
    with nobody.batch() as mail, pytest.raises(SendError) as refused:
        mail.send(email_to("a@example.com"))
    assert refused.value.kind == UNREACHABLE
    assert nobody.is_reachable(timeout=0.5) is False
    with socket.socket() as silent:  # accepts connections, never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        mute = SmtpSender(SmtpServer("127.0.0.1", silent.getsockname()[1], timeout=0.5))
        started = time.monotonic()
        with mute.batch() as mail, pytest.raises(SendError) as timed_out:
            mail.send(email_to("a@example.com"))
        assert timed_out.value.kind == UNREACHABLE
        assert time.monotonic() - started < 5


def test_reachable_means_the_server_greets_and_answers(smtp_server):
    assert sender_for(smtp_server).is_reachable(timeout=2) is True
    smtp_server.stop()
    assert sender_for(smtp_server).is_reachable(timeout=2) is False


@pytest.fixture
def tls_smtp_server(tmp_path):
    certificates = write_test_certificates(tmp_path)
    server = SmtpTestServer(**tls_server_options(certificates))
    server.start()
    try:
        yield server, ssl.create_default_context(cafile=certificates["GRPC_TLS_CA"])
    finally:
        server.stop()


def test_starttls_then_login_when_configured(tls_smtp_server):
    server, trusted = tls_smtp_server
    configured = sender_for(
        server, username="alerts", password="s3cret", starttls=True, ssl_context=trusted
    )
    with configured.batch() as mail:
        mail.send(email_to("a@example.com"))
    assert server.counts() == {"a@example.com": 1}
    wrong = sender_for(
        server, username="alerts", password="wrong", starttls=True, ssl_context=trusted
    )
    plain = sender_for(server, username="alerts", password="s3cret")
    for refused_sender in (wrong, plain):
        with refused_sender.batch() as mail, pytest.raises(SendError) as refused:
            mail.send(email_to("b@example.com"))
        assert refused.value.kind == UNREACHABLE  # our settings, not the message
    assert server.counts() == {"a@example.com": 1}


def test_a_message_to_more_than_one_recipient_is_refused_and_nothing_is_sent(smtp_server):
    with sender_for(smtp_server).batch() as mail:
        with pytest.raises(SendError) as listed:
            mail.send(email_to("anna@example.com, stranger@example.org"))
        with_bcc = email_to("anna@example.com")
        with_bcc["Bcc"] = "stranger@example.org"
        mail.send(with_bcc)
    assert listed.value.kind == PERMANENT
    assert smtp_server.counts() == {"anna@example.com": 1}


@pytest.fixture
def ascii_only_smtp_server():
    """An SMTP server that offers no SMTPUTF8, as some still do not."""
    server = SmtpTestServer(enable_SMTPUTF8=False)
    server.start()
    yield server
    server.stop()


def test_an_address_beyond_ascii_the_server_cannot_take_is_permanent_and_the_batch_goes_on(
    ascii_only_smtp_server,
):
    with sender_for(ascii_only_smtp_server).batch() as mail:
        with pytest.raises(SendError) as refused:
            mail.send(email_to("jösé@example.com"))
        mail.send(email_to("fine@example.com"))
    assert refused.value.kind == PERMANENT
    assert ascii_only_smtp_server.counts() == {"fine@example.com": 1}
