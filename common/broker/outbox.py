"""Messages for the broker, written in the transaction that causes them, published after it.

A service that must tell another about a change it commits (the collector:
an airport's flights were updated; the Alert System: a threshold was
crossed) cannot publish inside its transaction (a rollback would leave a
message about nothing) nor after it (a crash in between would lose the
message). So it writes the message to its own ``broker_outbox`` table in the
same transaction (:func:`enqueue`), and the :class:`Relay` of its worker
publishes it once committed, then deletes it. Each message has an id derived
from what it says, so when the relay dies between publishing and deleting,
the repeat is dropped by the broker (within the streams' deduplication
window) or, later, ignored by the consumer.

The relay wakes up when a transaction that enqueued commits (PostgreSQL
``NOTIFY``, delivered at commit), so a message leaves within milliseconds;
it also looks every ``IDLE_SECONDS`` in case a notification was missed.
After a round that found messages it pauses ``BURST_PAUSE_SECONDS``: in a
burst of small commits (the notifier's receipts, one an email) it would
otherwise run a round per commit, and a round costs more than the messages. While
the broker is down it waits, doubling the wait up to ``MAX_BACKOFF_SECONDS``,
and the messages wait in the table: nothing is lost. Several replicas share
the table (``FOR UPDATE SKIP LOCKED``).
"""

import json
import logging
import select
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg2
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from prometheus_client import Counter
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    text,
)
from sqlalchemy import (
    select as select_from,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import SQLAlchemyError

from common.broker.connection import Broker, BrokerUnavailableError, Message
from common.process.heartbeat import Heartbeat

log = logging.getLogger(__name__)

PUBLISHED = Counter(
    "broker_messages_published_total",
    "Messages the outbox relay published to the broker (the broker stored them), by subject.",
    ["subject"],
)

TABLE_NAME = "broker_outbox"
# The PostgreSQL channel a commit that enqueued notifies, waking the relay at once.
CHANNEL = "broker_outbox"
# Messages published per transaction of the relay: one round of publishing, one DELETE.
BATCH_SIZE = 500
# Without a notification (one lost while the relay reconnected), it still looks this often.
IDLE_SECONDS = 5.0
# After a round that published something, the relay waits this long before the next: the
# commits of a burst are then published a round for many (not one each), for a delay of at
# most this to a message that follows another within it. A lone message is not delayed.
BURST_PAUSE_SECONDS = 0.05
# While the broker is down: 0.5 s, 1 s, 2 s ... up to this, then every this long.
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
# A subject and an id are short names; a message id derived from its content fits easily.
NAME_LENGTH = 200


def outbox_columns() -> list[Column]:
    """Return the outbox table's columns (new objects: for the model and for a migration)."""
    return [
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("subject", String(NAME_LENGTH), nullable=False),
        Column("msg_id", String(NAME_LENGTH), nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ]


def outbox_table(metadata: MetaData) -> Table:
    """Declare the outbox table on a service's metadata (its ``models.py``)."""
    return Table(TABLE_NAME, metadata, *outbox_columns())


def create_outbox_table(op) -> None:
    """Create the outbox table in a service's migration (``op``: Alembic's operations)."""
    op.create_table(TABLE_NAME, *outbox_columns())


def drop_outbox_table(op) -> None:
    """Drop the outbox table (the migration's downgrade)."""
    op.drop_table(TABLE_NAME)


def enqueue(db: SQLAlchemy, table: Table, messages: Sequence[Message]) -> None:
    """Write ``messages`` in the session's transaction; the relay publishes them after commit."""
    if not messages:
        return
    rows = [{"subject": m.subject, "msg_id": m.msg_id, "payload": m.payload} for m in messages]
    db.session.execute(insert(table), rows)
    db.session.execute(text(f"NOTIFY {CHANNEL}"))


# What enqueue() sends for one message, as plain statements (parameters: enqueue_params), for
# a common.db.batch.Batch that sends them in the same round trip as the write they go with.
ENQUEUE_ONE = (
    f"INSERT INTO {TABLE_NAME} (subject, msg_id, payload) "
    "VALUES (%(subject)s, %(msg_id)s, %(payload)s)",
    f"NOTIFY {CHANNEL}",
)


def enqueue_params(message: Message) -> dict[str, str]:
    """Return the parameters of :data:`ENQUEUE_ONE` that enqueue ``message``."""
    payload = json.dumps(message.payload)  # text, which PostgreSQL reads into the jsonb column
    return {"subject": message.subject, "msg_id": message.msg_id, "payload": payload}


@dataclass(frozen=True)
class Backlog:
    """Messages committed but not yet published: how many, and the oldest one's age."""

    count: int
    oldest_seconds: float | None


def backlog(db: SQLAlchemy, table: Table) -> Backlog:
    """Count the unpublished messages and the age of the oldest."""
    count, oldest = db.session.execute(
        select_from(
            func.count(table.c.id),
            func.extract("epoch", func.now() - func.min(table.c.created_at)),
        )
    ).one()
    return Backlog(count, None if oldest is None else float(oldest))


class Relay:
    """Publish what the service's transactions enqueued, oldest first, as soon as they commit.

    Runs on a thread of the worker process (started and stopped with it);
    ``app`` gives the database, ``broker`` the connection.
    """

    def __init__(self, app: Flask, db: SQLAlchemy, table: Table, broker: Broker):
        self.app = app
        self.db = db
        self.table = table
        self.broker = broker
        self._stopping = threading.Event()
        # Written to by stop(): wakes the wait for a notification at once.
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
        self._listener = None

    def start(self) -> None:
        """Start relaying on a thread of its own."""
        self._thread.start()
        log.info("outbox relay running (broker %s)", self.broker.shown_url)

    def stop(self) -> None:
        """Stop after the batch in flight (what is left is published by the next start)."""
        self._stopping.set()
        self._wake_writer.send(b"x")
        self._thread.join(timeout=self.broker.timeout + 5)
        self._close_listener()
        self._wake_reader.close()
        self._wake_writer.close()
        log.info("outbox relay stopped")

    def publish_due(self) -> int:
        """Publish one batch of waiting messages and delete them; return how many.

        Raise :class:`BrokerUnavailableError` (nothing deleted) when the broker does
        not store them all.
        """
        rows = self.db.session.execute(
            select_from(
                self.table.c.id, self.table.c.subject, self.table.c.msg_id, self.table.c.payload
            )
            .order_by(self.table.c.id)
            .limit(BATCH_SIZE)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            self.db.session.rollback()
            return 0
        try:
            self.broker.publish_many([Message(r.subject, r.msg_id, r.payload) for r in rows])
        except BrokerUnavailableError:
            self.db.session.rollback()
            raise
        self.db.session.execute(delete(self.table).where(self.table.c.id.in_([r.id for r in rows])))
        self.db.session.commit()
        for row in rows:
            PUBLISHED.labels(row.subject).inc()
        return len(rows)

    def _run(self) -> None:
        backoff = FIRST_BACKOFF_SECONDS
        heartbeat = Heartbeat("broker-outbox-relay")
        with self.app.app_context():
            while not self._stopping.is_set():
                heartbeat.beat()
                try:
                    published = self.publish_due()
                except BrokerUnavailableError as error:
                    log.warning("outbox relay: %s; trying again in %.1fs", error, backoff)
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                    continue
                except SQLAlchemyError as error:
                    self.db.session.rollback()
                    log.warning("outbox relay: the database failed (%s); trying again", error)
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                    continue
                finally:
                    self.db.session.remove()
                backoff = FIRST_BACKOFF_SECONDS
                if published < BATCH_SIZE:
                    if published:
                        self._stopping.wait(BURST_PAUSE_SECONDS)
                    self._wait_for_notification()

    def _wait_for_notification(self) -> None:
        """Block until a commit that enqueued notifies us, ``IDLE_SECONDS`` pass, or a stop."""
        listener = self._listen()
        if listener is None:
            self._stopping.wait(IDLE_SECONDS)
            return
        try:
            ready, _, _ = select.select([listener, self._wake_reader], [], [], IDLE_SECONDS)
            if listener in ready:
                listener.poll()
                listener.notifies.clear()
        except (OSError, psycopg2.Error) as error:
            log.warning("outbox relay: lost its notification connection (%s)", error)
            self._close_listener()

    def _listen(self):
        """Return this relay's own connection listening on :data:`CHANNEL` (None if it cannot)."""
        if self._listener is not None and not self._listener.closed:
            return self._listener
        url = self.app.config["SQLALCHEMY_DATABASE_URI"].replace("+psycopg2", "", 1)
        try:
            listener = psycopg2.connect(url, connect_timeout=5)
            listener.autocommit = True
            with listener.cursor() as cursor:
                cursor.execute(f"LISTEN {CHANNEL}")
        except psycopg2.Error as error:
            log.warning("outbox relay: cannot listen for commits (%s); polling instead", error)
            return None
        self._listener = listener
        return listener

    def _close_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            finally:
                self._listener = None
