"""The message broker (NATS JetStream) as every service uses it.

- :mod:`common.broker.streams`: the subjects, and the streams that keep them on disk;
- :mod:`common.broker.connection`: one connection per process, for synchronous code;
- :mod:`common.broker.outbox`: messages written in the transaction that causes
  them and published after it commits (the transactional outbox and its relay);
- :mod:`common.broker.consumer`: a durable consumer shared by a service's
  replicas, acknowledging a message only once its handler's effect is
  committed, retrying with backoff and parking what keeps failing.

Every hop is at-least-once: a message may arrive twice (a relay that died
between the publish and its bookkeeping, a consumer that died before its
ack), never zero times. Duplicates are dropped where they can be: the
broker by message id (``Nats-Msg-Id``) within the streams' deduplication
window, and every handler by making a second delivery change nothing.
"""
