"""What the Alert System's API document says of it; the skeleton's views document the rest."""

from common.web.openapi import ApiDocument

DOCUMENT = ApiDocument(
    title="Alert System API",
    description="""\
Evaluates the Data Collector's events against every interest's thresholds and sends each
crossing (an airport over a user's upper threshold, or under the lower one) to the Alert
Notifier once. It has no API of its own (users set thresholds at the Data Collector): only
the operators' operations, liveness, readiness and metrics.
""",
    tags={},
)
