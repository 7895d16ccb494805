"""Alert Notifier settings, read from the environment with local-stack defaults."""

from email.errors import ObsoleteHeaderDefect
from email.policy import default as default_policy
from typing import Annotated, Self

from pydantic import AfterValidator, Field, model_validator

from common.mail import SmtpServer
from common.settings import (
    HOUR_SECONDS,
    BrokerSettings,
    Port,
    ServiceSettings,
    host_name,
    is_loopback,
    named_after,
)


class Settings(ServiceSettings, BrokerSettings):
    """Everything the Alert Notifier reads from its environment, read when instantiated."""

    model_config = named_after("ALERT_NOTIFIER", http_port=5005)

    # The mail server the alerts go through (required: make run starts a local mail catcher
    # and points this at it when it is unset).
    SMTP_HOST: Annotated[str | None, AfterValidator(host_name)] = None
    # 25 between mail servers; a provider's submission port is usually 587 with STARTTLS.
    SMTP_PORT: Port = 25
    # Unset: no login (a relay that trusts this host). Set: both, sent after STARTTLS if on.
    SMTP_USERNAME: str | None = None
    SMTP_PASSWORD: str | None = Field(None, repr=False)
    # 1: upgrade the connection to TLS (certificate checked) before logging in and sending.
    SMTP_STARTTLS: bool = False
    # Any one step of the conversation (connect, a command, the message): a mail server that
    # is slower than this is treated as down, and the email is tried again later.
    SMTP_TIMEOUT_SECONDS: float = Field(10.0, gt=0, le=HOUR_SECONDS)
    # Emails the worker sends at once, each over a connection of its own to the mail server
    # and to the database: sending one is mostly waiting on them, so a few overlap their
    # waits (a burst goes about this many times faster). Each takes one of the worker's
    # DB_POOL_SIZE connections (so fewer than those); a mail server may limit a client's
    # connections.
    SMTP_CONNECTIONS: int = Field(4, ge=1, le=16)
    # The From of every alert; its domain also names the Message-IDs.
    ALERT_EMAIL_FROM: str = "Flight Tracker <alerts@flight-tracker.localhost>"

    @model_validator(mode="after")
    def _check_mail_settings(self) -> Self:
        if not self.SMTP_HOST:
            raise ValueError(
                "SMTP_HOST must be set: the Alert Notifier sends its email through that mail "
                "server (make run starts a local mail catcher when it is unset)."
            )
        if bool(self.SMTP_USERNAME) != bool(self.SMTP_PASSWORD):
            raise ValueError("SMTP_USERNAME and SMTP_PASSWORD go together: set both, or neither.")
        if self.SMTP_CONNECTIONS >= self.DB_POOL_SIZE:
            raise ValueError(
                f"SMTP_CONNECTIONS must be below DB_POOL_SIZE ({self.DB_POOL_SIZE}): each "
                "email sent at once holds a database connection, and the outbox relay needs one."
            )
        if not (self.SMTP_USERNAME or "").isascii() or not (self.SMTP_PASSWORD or "").isascii():
            # smtplib sends the login as ASCII: anything else would fail every email.
            raise ValueError("SMTP_USERNAME and SMTP_PASSWORD must be ASCII characters.")
        # The mail library's own parser: it reports what a lenient reading would drop.
        sender = default_policy.header_factory("From", self.ALERT_EMAIL_FROM)
        addresses = [address.addr_spec for address in sender.addresses]
        # An obsolete form (a display name with a period) still names one mailbox.
        defects = [d for d in sender.defects if not isinstance(d, ObsoleteHeaderDefect)]
        if defects or len(addresses) != 1 or "@" not in addresses[0]:
            raise ValueError(
                f"ALERT_EMAIL_FROM must be one email address, such as 'Flight Tracker "
                f"<alerts@example.com>', got {self.ALERT_EMAIL_FROM!r}."
            )
        if not addresses[0].isascii():
            # Beyond ASCII, a mail server without SMTPUTF8 would refuse every email.
            raise ValueError(
                f"ALERT_EMAIL_FROM must be an ASCII email address, got {self.ALERT_EMAIL_FROM!r}."
            )
        return self

    # Upper case: Flask copies upper-case attributes into the app's configuration.
    @property
    def SMTP_SERVER(self) -> SmtpServer:  # noqa: N802
        """The mail server, as the sender connects to it."""
        return SmtpServer(
            host=self.SMTP_HOST,
            port=self.SMTP_PORT,
            username=self.SMTP_USERNAME,
            password=self.SMTP_PASSWORD,
            starttls=self.SMTP_STARTTLS,
            timeout=self.SMTP_TIMEOUT_SECONDS,
        )

    def startup_warnings(self) -> list[str]:
        """Return what the operator should read in the log at start."""
        warnings = super().startup_warnings()
        if self.SMTP_USERNAME and not self.SMTP_STARTTLS and not is_loopback(self.SMTP_HOST):
            warnings.append(
                f"SMTP_USERNAME is set but SMTP_STARTTLS is off: the password goes to "
                f"{self.SMTP_HOST} unencrypted. Set SMTP_STARTTLS=1."
            )
        return warnings
