"""Alert Notifier metrics beyond the shared HTTP ones (common.observability.metrics).

The counters and the latency are recorded in the worker, where emails are
sent (prometheus_client's multiprocess mode adds them up for ``/metrics``).
At scrape time: whether the mail server answers, and the consumers' lag,
the dead letters and the outbox (common.broker.observability).
"""

from flask import current_app
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from alert_notifier.models import OUTBOX, db
from common.broker.observability import (
    PROBE_TIMEOUT_SECONDS,
    Consumed,
    Pipeline,
    pipeline_collectors,
)
from common.broker.streams import SLA_BREACH, TO_NOTIFIER
from common.mail import SmtpSender

# One durable consumer per subject, shared by every replica: each email is sent by one.
PIPELINE = Pipeline(
    consumes=(Consumed(TO_NOTIFIER, "alert_notifier"), Consumed(SLA_BREACH, "alert_notifier")),
    db=db,
    outbox=OUTBOX,
)
# From a tenth of a second (everything local and idle) to an hour (a mail server down for
# that long): where the p50 and the p99 of the pipeline fall, and its outages.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)

EMAILS_SENT = Counter(
    "alert_emails_sent_total",
    "Emails the mail server accepted, by kind: crossing (a user's threshold) or sla-breach.",
    ["kind"],
)
EMAILS_FAILED = Counter(
    "alert_emails_failed_total",
    "Attempts to send an email that failed, by kind and reason: unreachable (the mail "
    "server is down or refuses us: retried), temporary (4xx for this email: retried, then "
    "parked), permanent (5xx for this email: parked at once).",
    ["kind", "reason"],
)
EMAILS_ALREADY_SENT = Counter(
    "alert_emails_already_sent_total",
    "Deliveries of a crossing whose email was already sent (a redelivery): nothing sent again.",
    ["kind"],
)
EMAIL_LATENCY = Histogram(
    "alert_email_latency_seconds",
    "From the collector's commit of the data that crossed a threshold to the mail server's "
    "acceptance of the email.",
    buckets=LATENCY_BUCKETS,
)


class SmtpCollector:
    """Ask the mail server whether it answers when Prometheus scrapes."""

    def describe(self):
        """Declare nothing up front: registering must not connect to the mail server."""
        return []

    def collect(self):
        """Yield 1 when the mail server greets us and answers NOOP in time, else 0."""
        sender = SmtpSender(current_app.config["SMTP_SERVER"])
        up = sender.is_reachable(timeout=PROBE_TIMEOUT_SECONDS)
        yield GaugeMetricFamily(
            "smtp_up",
            "1 when the mail server answered this scrape (greeting and NOOP) in time, else 0.",
            value=1 if up else 0,
        )


# Computed at every scrape of this service's /metrics (registered by the app factory).
SCRAPE_COLLECTORS = (SmtpCollector(), *pipeline_collectors(PIPELINE))
