"""User Manager: creates, lists, reads and deletes the Flight Tracker's users, at most once.

**At most once.** `POST /users` and `DELETE /users/{email}` need an `Idempotency-Key`
header (any 1-255 visible ASCII characters; a UUID is customary). The first request with a
key does the work; a repeat with the same key and the same request gets the stored answer
again, marked `Idempotent-Replayed: true`, without doing anything twice. The same key with a
different method, path or body is a 422. Invalid requests (400) are not stored, so a
corrected retry may reuse its key. Keys expire after `IDEMPOTENCY_KEY_RETENTION_HOURS`
(default 24).

**Deleting** a user also deletes their interests in the Data Collector (over gRPC); when the
collector is down the call waits in an outbox and is retried until it succeeds.
"""
