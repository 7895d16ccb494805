"""A real SMTP server in the test process (aiosmtpd), with the faults tests need.

It is the local mail catcher's inbox (devstack.mailcatcher) plus controls:
refuse a recipient with a given reply (for a number of times, or always),
hold a recipient's message at DATA until the test releases it, and stop and
start again on the same port. A held message whose client died meanwhile
is not kept: the server never accepted it.
"""

import asyncio
import collections
import logging
import ssl
import threading
from dataclasses import dataclass

from aiosmtpd.controller import Controller

from devstack.mailcatcher import CaughtMail, Inbox
from devstack.stack import free_port
from tests.utils import wait_until

# A held message is let go after this long even if the test forgot to release it.
HOLD_LIMIT_SECONDS = 60


@dataclass
class Refusal:
    """The reply a recipient gets instead of 250, and how many more times (None: always)."""

    reply: str
    times: int | None


class ControlledInbox(Inbox):
    """The mail catcher's inbox, with refusals and holds set by the test."""

    def __init__(self):
        super().__init__()
        self.refusals: dict[str, Refusal] = {}
        self.holds: dict[str, threading.Event] = {}
        self.held: set[str] = set()
        self.refused = collections.Counter()
        self._controls = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        """Refuse the recipient as told, else accept it."""
        with self._controls:
            refusal = self.refusals.get(address)
            if refusal is not None and refusal.times is not None:
                refusal.times -= 1
                if refusal.times < 0:
                    del self.refusals[address]
                    refusal = None
            if refusal is not None:
                self.refused[address] += 1
                return refusal.reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        """Hold a held recipient's message until released; then keep and accept it."""
        for recipient in envelope.rcpt_tos:
            release = self.holds.get(recipient)
            if release is not None:
                self.held.add(recipient)
                try:
                    # Cancelled (the message dropped) if the client goes away meanwhile.
                    await asyncio.to_thread(release.wait, HOLD_LIMIT_SECONDS)
                finally:
                    self.held.discard(recipient)
        return await super().handle_DATA(server, session, envelope)


class SmtpTestServer:
    """An SMTP server on a fixed port of this machine, started and stopped by the test."""

    def __init__(self, *, port: int | None = None, **smtp_options):
        self.port = port or free_port()
        self.inbox = ControlledInbox()
        self.smtp_options = smtp_options
        self._controller: Controller | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def start(self) -> None:
        """Listen (again) on the port."""
        # aiosmtpd logs every command at INFO, from its own thread, even after a test ended.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self._controller = Controller(
            self.inbox, hostname=self.host, port=self.port, **self.smtp_options
        )
        self._controller.start()

    def stop(self) -> None:
        """Stop listening and drop every connection (the mail server goes down)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def refuse(self, recipient: str, reply: str, *, times: int | None = None) -> None:
        """Answer ``reply`` (``"550 ..."``) to RCPT TO ``recipient``, ``times`` times or always."""
        with self.inbox._controls:
            self.inbox.refusals[recipient] = Refusal(reply, times)

    def hold(self, recipient: str) -> None:
        """Hold ``recipient``'s messages at DATA until :meth:`release`."""
        self.inbox.holds[recipient] = threading.Event()

    def wait_until_holding(self, recipient: str, timeout: float = 15) -> None:
        """Return once a message to ``recipient`` is being held."""
        wait_until(lambda: recipient in self.inbox.held, timeout=timeout)

    def release(self, recipient: str) -> None:
        """Let ``recipient``'s held message (if its client is still there) be accepted."""
        self.inbox.holds.pop(recipient).set()

    def mails(self) -> list[CaughtMail]:
        """Every email accepted so far, oldest first."""
        return self.inbox.mails()

    def to(self, recipient: str) -> list[CaughtMail]:
        """The emails accepted for ``recipient``."""
        return [mail for mail in self.mails() if recipient in mail.to]

    def counts(self) -> collections.Counter:
        """How many emails each recipient got."""
        return collections.Counter(recipient for mail in self.mails() for recipient in mail.to)


def tls_server_options(certificates: dict[str, str]) -> dict:
    """Options of a server that requires STARTTLS and then a login (user ``alerts``, ``s3cret``)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates["GRPC_TLS_CERT"], certificates["GRPC_TLS_KEY"])

    def authenticator(server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        good = auth_data.login == b"alerts" and auth_data.password == b"s3cret"
        return AuthResult(success=good)

    return {
        "tls_context": context,
        "require_starttls": True,
        "auth_required": True,
        "auth_require_tls": True,
        "authenticator": authenticator,
    }
