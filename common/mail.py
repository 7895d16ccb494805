"""Sending email over SMTP: one connection per batch, and every failure sorted by whose it is.

A service that mails (the Alert Notifier) opens a :meth:`SmtpSender.batch`,
sends each message through it and closes it: the connection (and its
STARTTLS and login, when configured) is made on the first message and reused
for the rest. Each failure is a :class:`SendError` of one kind, which says
what to do with the message:

- ``unreachable``: the mail server cannot be reached, does not answer in
  time, closes the connection, refuses our login or our sender: nothing to do
  with this message, so it (and the rest of the batch) waits for the server;
- ``temporary``: the server answered 4xx for this message (a full mailbox, a
  greylisting recipient): try it again later, a few times;
- ``permanent``: the server answered 5xx for this message (no such user, a
  refused message): trying again cannot help.

A message goes to one recipient here, so a refusal of "the recipients" is a
refusal of that one.
"""

import contextlib
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr

UNREACHABLE = "unreachable"
TEMPORARY = "temporary"
PERMANENT = "permanent"
# "Service not available, closing transmission channel": about the server, never the message.
SERVICE_CLOSING = 421
ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?")


class SendError(Exception):
    """A message was not accepted: ``kind`` says whose fault it is (see the module docstring)."""

    def __init__(self, kind: str, reason: str, code: int | None = None):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class SmtpServer:
    """Where the mail goes and how to log in; ``ssl_context`` only for tests' own CA."""

    host: str
    port: int = 25
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    timeout: float = 10.0
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    @property
    def address(self) -> str:
        """``host:port``, for logs and ``/health``."""
        return f"{self.host}:{self.port}"


def _refusal(code: int, text: bytes | str, what: str) -> SendError:
    """Sort an SMTP reply refusing ``what`` by its code; the reason names no address."""
    reply = text.decode(errors="replace") if isinstance(text, bytes) else text
    # Servers often quote the recipient: the reason goes to logs, which hold no email.
    reason = f"{what}: {code} {ADDRESS.sub('<address>', reply)}"
    if code == SERVICE_CLOSING:
        return SendError(UNREACHABLE, reason, code)
    return SendError(PERMANENT if code >= 500 else TEMPORARY, reason, code)


class SmtpBatch:
    """One connection to the mail server, opened at the first message, for a batch of them."""

    def __init__(self, server: SmtpServer):
        self.server = server
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> "SmtpBatch":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def send(self, message: EmailMessage) -> None:
        """Hand ``message`` to the server; return once it accepted it, or raise SendError."""
        recipients = getaddresses(message.get_all("To", []))
        if len(recipients) != 1:
            # Left to itself, smtplib sends to every address of To, Cc and Bcc.
            raise SendError(PERMANENT, f"a message goes to one recipient, not {len(recipients)}")
        smtp = self._connected()
        sender = parseaddr(message["From"])[1]
        try:
            refused = smtp.send_message(message, from_addr=sender, to_addrs=[recipients[0][1]])
        except smtplib.SMTPRecipientsRefused as error:
            code, text = next(iter(error.recipients.values()))
            raise _refusal(code, text, "recipient refused") from None
        except smtplib.SMTPSenderRefused as error:
            # Our own From: a setting to fix, not this message's fault.
            failure = _refusal(error.smtp_code, error.smtp_error, "our sender refused")
            raise SendError(UNREACHABLE, failure.reason, error.smtp_code) from None
        except smtplib.SMTPDataError as error:
            raise _refusal(error.smtp_code, error.smtp_error, "message refused") from None
        except smtplib.SMTPNotSupportedError as error:
            # Raised before anything is sent: a non-ASCII address to a server without
            # SMTPUTF8. This message cannot go there; the others can.
            raise SendError(PERMANENT, f"{self.server.address}: {error}") from None
        except (smtplib.SMTPException, OSError) as error:
            self._drop()
            raise SendError(UNREACHABLE, f"{self.server.address}: {error}") from None
        if refused:
            code, text = next(iter(refused.values()))
            raise _refusal(code, text, "recipient refused")

    def _connected(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        try:
            self._smtp = open_connection(self.server, log_in=True)
        except smtplib.SMTPResponseException as error:
            raise SendError(
                UNREACHABLE, f"{self.server.address}: {error.smtp_code} {error.smtp_error!r}"
            ) from None
        except (smtplib.SMTPException, OSError) as error:
            raise SendError(UNREACHABLE, f"{self.server.address}: {error}") from None
        return self._smtp

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with contextlib.suppress(OSError):
                smtp.close()

    def close(self) -> None:
        """Say goodbye to the server (QUIT) and close the connection, if one was opened."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


def open_connection(server: SmtpServer, *, log_in: bool) -> smtplib.SMTP:
    """Connect and greet the server; STARTTLS when configured, and log in when ``log_in``."""
    smtp = smtplib.SMTP(server.host, server.port, timeout=server.timeout)
    try:
        smtp.ehlo()
        if server.starttls:
            smtp.starttls(context=server.ssl_context or ssl.create_default_context())
            smtp.ehlo()
        if log_in and server.username:
            smtp.login(server.username, server.password or "")
    except BaseException:
        smtp.close()
        raise
    return smtp


class SmtpSender:
    """The mail server of a service: batches to send through, and whether it answers."""

    def __init__(self, server: SmtpServer):
        self.server = server

    def batch(self) -> SmtpBatch:
        """Return a batch: ``with sender.batch() as mail: mail.send(message)``."""
        return SmtpBatch(self.server)

    def is_reachable(self, *, timeout: float) -> bool:
        """Tell whether the server greets us and answers NOOP within ``timeout`` (no login)."""
        probe = SmtpServer(
            self.server.host,
            self.server.port,
            starttls=False,
            timeout=timeout,
        )
        try:
            smtp = open_connection(probe, log_in=False)
        except (smtplib.SMTPException, OSError):
            return False
        try:
            return smtp.noop()[0] == 250
        except (smtplib.SMTPException, OSError):
            return False
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
