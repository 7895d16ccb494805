"""Data Collector: airports followed by users, and their flights collected from OpenSky.

**Interests.** A user (who must exist in the User Manager, asked over gRPC) follows an
airport by its ICAO code (`LIRF`, `EGLL`, ...). A new interest asks the collector's worker
for a cycle at once; its flights appear within seconds to minutes (whatever OpenSky takes).

**Flights** are stored in UTC and served newest first: an arrival's time is its
`last_seen`, a departure's its `first_seen`. Averages count the last X times 24 hours up
to the last collection, divide by the part of them actually collected, and say which.
"""
