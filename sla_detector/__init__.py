"""SLA Breach Detector: samples gauges through PromQL and raises a breach when they stray.

**Configuration.** Each metric is a PromQL query and a range (`min`, `max`). Every
`check_seconds` (T_check, at least five scrape intervals) the detector asks Prometheus for
each query's value now and keeps the last 5 samples of each metric. At least 3 of them below
`min`, or 3 above `max`, is a breach: an event on the broker's `sla-breach` subject, emailed
to `SLA_ALERT_EMAIL`. It ends once all 5 kept samples are back in range, so one incident is
one breach. A Prometheus that does not answer, or a query that matches nothing, takes no
sample: `/health` says so (degraded), and it never raises a breach.
"""
