"""What the Data Collector's API document says of the service; its views document the rest."""

from common.web.openapi import ApiDocument

DOCUMENT = ApiDocument(
    title="Data Collector API",
    description="""\
Airports followed by users, and the flights collected for them from the OpenSky Network.

**Interests.** A user (who must exist in the User Manager, asked over gRPC) follows an
airport by its ICAO code (`LIRF`, `EGLL`, ...). A new interest asks the collector's worker
for a cycle at once; its flights appear within seconds to minutes (whatever OpenSky takes).

**Flights** are stored in UTC and served newest first: an arrival's time is its
`last_seen`, a departure's its `first_seen`. Averages count the last X times 24 hours up
to the last collection, divide by the part of them actually collected, and say which.

**Errors** are JSON, `{"error": "...", "details": {...}}`. **Lists** of flights are JSON
arrays; the next page's URL is in the `Link: <...>; rel="next"` header. Every response
carries `X-Request-ID`.
""",
    tags={
        "interests": "Which airports each user follows.",
        "flights": "Collected flights, last flights, averages.",
        "collection": "The OpenSky collection worker.",
    },
)
