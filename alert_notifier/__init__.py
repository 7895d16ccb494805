"""Alert Notifier: one email per threshold crossing (and per SLA breach), sent over SMTP."""
