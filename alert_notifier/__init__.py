"""Alert Notifier: one email per threshold crossing (and per SLA breach), sent over SMTP.

Sends one email per threshold crossing (and per SLA breach) over SMTP, never twice for a
redelivered crossing, and parks what the mail server refuses for good. It has no API of its
own: only the operators' operations, liveness, readiness (with the mail server's
reachability) and metrics.
"""
