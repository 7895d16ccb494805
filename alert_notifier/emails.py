"""The alert emails: what a crossing or an SLA breach says, and the headers that identify it.

Plain text, so every mail client shows it as written. The Message-ID is
derived from the crossing (or breach) id: the mail server sees the same id
if the rare duplicate of a crossing is ever sent (a crash between the
server's acceptance and our record of it), and clients that thread or
deduplicate by Message-ID show it once.
"""

from datetime import UTC, datetime
from email import policy
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from common.broker.messages import Crossing, SlaBreach, Window
from common.emails import ascii_domain_form

SIDE = {"above": ("above", "upper"), "below": ("below", "lower")}


class HeaderClasses(HeaderRegistry):
    """The email package's header registry, making each header's class once.

    The stock registry makes a new class (a ``type()`` call) each time a
    header is set or read, a dozen times an email: a third of what writing
    one costs, in a burst of thousands. The classes hold no state, so one
    per header name behaves the same.
    """

    def __init__(self):
        super().__init__()
        self._made: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        made = self._made.get(name.lower())
        if made is None:
            made = self._made[name.lower()] = super().__getitem__(name)
        return made


# The standard policy (RFC 5322, headers checked as they are set), with the registry above.
POLICY = policy.default.clone(header_factory=HeaderClasses())


def utc_text(moment: datetime) -> str:
    """Return a moment as people read it: ``2026-12-05 00:00 UTC``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def window_text(window: Window) -> str:
    """Return a window as people read it: ``2026-12-05 00:00 UTC to 2026-12-06 00:00 UTC``."""
    return f"{utc_text(window.start)} to {utc_text(window.end)}"


def message_id(kind: str, key: str, sender: str) -> str:
    """Return the Message-ID of the email about ``key``, in the sender's domain."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "flight-tracker.localhost"
    return f"<{kind}.{key}@{domain}>"


def _email(*, sender: str, to: str, subject: str, body: str, msg_id: str) -> EmailMessage:
    email = EmailMessage(policy=POLICY)
    email["From"] = sender
    email["To"] = ascii_domain_form(to)
    email["Subject"] = subject
    email["Date"] = format_datetime(datetime.now(UTC))
    email["Message-ID"] = msg_id
    email.set_content(body)
    return email


def crossing_email(crossing: Crossing, *, sender: str) -> EmailMessage:
    """Return the email telling a user that an airport crossed one of their thresholds."""
    direction, side = SIDE[crossing.condition]
    airport = f"{crossing.airport} ({crossing.airport_name})"
    subject = (
        f"{airport}: {crossing.value} flights, {direction} your {side} threshold "
        f"of {crossing.limit}"
    )
    body = f"""\
The number of flights at {airport} went {direction} your {side} threshold.

  Flights (arrivals and departures): {crossing.value}
  Your {side} threshold ({crossing.threshold}): {crossing.limit}
  Window: {window_text(crossing.window)}
  {direction.capitalize()} since: {utc_text(crossing.since)}

You get one email when the number crosses a threshold, none while it stays
{direction} it, and a new one if it comes back within your thresholds and crosses
again. To change or clear your thresholds: PUT /interests at the Data Collector.

-- Flight Tracker
"""
    return _email(
        sender=sender,
        to=crossing.email,
        subject=subject,
        body=body,
        msg_id=message_id("crossing", crossing.crossing_id, sender),
    )


def breach_email(breach: SlaBreach, *, sender: str) -> EmailMessage:
    """Return the email telling the operator that a metric breached its SLA."""
    side = "above its maximum" if breach.violated == "max" else "below its minimum"
    subject = f"SLA breach: {breach.metric} {side} ({breach.value:g}, limit {breach.limit:g})"
    body = f"""\
The metric {breach.metric} is {side}.

  Value: {breach.value:g}
  Limit ({breach.violated}): {breach.limit:g}
  Samples below the minimum: {breach.below}; above the maximum: {breach.above}
  At: {utc_text(breach.at)}
  Query: {breach.query}

-- Flight Tracker SLA detector
"""
    return _email(
        sender=sender,
        to=breach.to,
        subject=subject,
        body=body,
        msg_id=message_id("sla-breach", breach.breach_id, sender),
    )
