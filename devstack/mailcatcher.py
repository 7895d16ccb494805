"""A local mail catcher: a real SMTP server that keeps what it accepts and shows it over HTTP.

``make run`` starts it when ``SMTP_HOST`` is not set and points the Alert
Notifier at it, so the first alert a newcomer triggers is there to read:
``GET /`` is a page listing the emails, newest first, ``GET /messages`` the
same as JSON. Nothing leaves the machine, and nothing is stored on disk:
the newest :data:`KEPT_MESSAGES` are kept in memory until it stops.

    python -m devstack.mailcatcher --smtp-port 1025 --http-port 8025

The tests use :class:`Inbox` (the SMTP side) in their own process.
"""

import argparse
import email
import email.policy
import html
import json
import logging
import sys
import threading
from collections import deque
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

from common.process.supervisor import wait_for_stop_signal
from common.timeutil import isoformat_utc, utc_now

log = logging.getLogger("mailcatcher")

# A newcomer reads a handful; a bench run sends thousands. The newest ten thousand are
# kept (a few MB), the older ones forgotten.
KEPT_MESSAGES = 10_000
DEFAULT_SMTP_PORT = 1025
DEFAULT_HTTP_PORT = 8025


@dataclass(frozen=True)
class CaughtMail:
    """An email the catcher accepted: the envelope, the main headers and the text."""

    received_at: str
    mail_from: str
    to: list[str]
    subject: str
    message_id: str
    body: str
    # The client connection it came on (its address and port): one per SMTP session.
    connection: str


class Inbox:
    """The aiosmtpd handler that accepts every email and keeps the newest ``keep``."""

    def __init__(self, keep: int = KEPT_MESSAGES):
        self._lock = threading.Lock()
        self._mails: deque[CaughtMail] = deque(maxlen=keep)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's name
        """Keep the email and accept it."""
        self.keep(session, envelope)
        return "250 Message accepted for delivery"

    def keep(self, session, envelope) -> CaughtMail:
        """Parse and keep one accepted email; return it."""
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = parsed.get_body(preferencelist=("plain", "html"))
        mail = CaughtMail(
            received_at=isoformat_utc(utc_now()),
            mail_from=envelope.mail_from,
            to=list(envelope.rcpt_tos),
            # A subject too long for one line is folded onto the next, and the parser keeps
            # the fold's leading space, which mail clients do not show.
            subject=str(parsed.get("Subject", "")).strip(),
            message_id=str(parsed.get("Message-ID", "")),
            body=body.get_content().replace("\r\n", "\n") if body is not None else "",
            connection=":".join(str(part) for part in session.peer[:2]),
        )
        with self._lock:
            self._mails.append(mail)
        return mail

    def mails(self) -> list[CaughtMail]:
        """Return what was kept, oldest first."""
        with self._lock:
            return list(self._mails)

    def clear(self) -> None:
        """Forget every email kept so far."""
        with self._lock:
            self._mails.clear()


def smtp_server(inbox: Inbox, host: str, port: int) -> Controller:
    """Return an SMTP server (not started) on ``host:port`` that hands each email to ``inbox``."""
    return Controller(inbox, hostname=host, port=port)


def _page(mails: list[CaughtMail]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(mail.received_at)}</td><td>{html.escape(', '.join(mail.to))}</td>"
        f"<td>{html.escape(mail.subject)}</td></tr>"
        f"<tr><td></td><td colspan=2><pre>{html.escape(mail.body)}</pre></td></tr>"
        for mail in reversed(mails)
    )
    return (
        "<!doctype html><meta charset=utf-8><title>Flight Tracker mail catcher</title>"
        "<h1>Emails caught</h1><p>Newest first; the same as JSON at "
        '<a href="/messages">/messages</a>.</p>'
        f"<table><tr><th>received</th><th>to</th><th>subject</th></tr>{rows}</table>"
    )


def http_server(inbox: Inbox, host: str, port: int) -> ThreadingHTTPServer:
    """Return the HTTP server that shows the inbox: ``/`` a page, ``/messages`` JSON."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            mails = inbox.mails()
            if self.path == "/messages":
                body = json.dumps([asdict(mail) for mail in reversed(mails)]).encode()
                content_type = "application/json"
            elif self.path == "/":
                body, content_type = _page(mails).encode(), "text/html; charset=utf-8"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            """Say nothing per request: the page is polled by people and tests."""

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str] | None = None) -> int:
    """Catch email until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m devstack.mailcatcher", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=DEFAULT_SMTP_PORT)
    parser.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # aiosmtpd logs every command of every session at INFO.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    inbox = Inbox()
    smtp = smtp_server(inbox, args.host, args.smtp_port)
    web = http_server(inbox, args.host, args.http_port)
    smtp.start()
    threading.Thread(target=web.serve_forever, name="mailcatcher-http", daemon=True).start()
    log.info(
        "catching email on smtp://%s:%d; read it at http://%s:%d/",
        args.host,
        args.smtp_port,
        args.host,
        args.http_port,
    )
    wait_for_stop_signal()
    web.shutdown()
    smtp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
