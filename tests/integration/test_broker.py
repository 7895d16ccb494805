"""The broker as the services use it, on a real nats-server: publish, consume, outbox, faults."""

import logging
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg2
import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from prometheus_client import REGISTRY
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from common.broker import outbox
from common.broker.connection import Broker, BrokerUnavailableError, Message
from common.broker.consumer import DONE, MAX_ATTEMPTS, Consumer, Park, Retry, Subscription
from common.broker.streams import TO_ALERT_SYSTEM, TO_NOTIFIER
from devstack.stack import free_port, nats_server_binary
from tests.utils import wait_until

pytestmark = pytest.mark.local_stack


class NatsServer:
    """A nats-server with JetStream on a free port, its streams in ``store``."""

    def __init__(self, store: Path):
        self.port = free_port()
        self.store = store
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js"]
        self.process = subprocess.Popen(
            [*command, "-sd", str(self.store)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        probe = Broker(self.url, name="probe", timeout=1)
        wait_until(lambda: probe.is_connected(), timeout=15)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)


@pytest.fixture
def nats_server():
    with tempfile.TemporaryDirectory(prefix="flight-tracker-nats-") as tmp:
        server = NatsServer(Path(tmp))
        server.start()
        try:
            yield server
        finally:
            if server.process.poll() is None:
                server.stop()


def message(subject: str = TO_ALERT_SYSTEM, **payload) -> Message:
    return Message(subject, str(uuid.uuid4()), payload or {"n": 1})


class Recorder:
    """A handler that records what it is given and answers as told."""

    def __init__(self, answer=lambda delivery: DONE):
        self.answer = answer
        self.seen = []
        self.lock = threading.Lock()

    def __call__(self, deliveries):
        with self.lock:
            self.seen.extend(deliveries)
        return [self.answer(delivery) for delivery in deliveries]

    def payloads(self) -> list:
        with self.lock:
            return [delivery.payload for delivery in self.seen]


def consuming(server: NatsServer, handler, subject: str = TO_ALERT_SYSTEM, **config) -> Consumer:
    app = Flask("test")
    app.config.update(config)
    consumer = Consumer(
        app,
        Broker(server.url, name="test-consumer"),
        [Subscription(subject, f"test-{uuid.uuid4().hex[:8]}", handler)],
    )
    consumer.start()
    return consumer


def test_a_message_published_twice_with_one_id_is_stored_and_delivered_once(nats_server):
    broker = Broker(nats_server.url, name="test")
    first = message(n=1)
    assert broker.publish(first) is True
    assert broker.publish(first) is False
    handler = Recorder()
    consumer = consuming(nats_server, handler)
    try:
        wait_until(lambda: handler.payloads() == [{"n": 1}])
        # Acknowledged: it does not come back.
        assert broker.publish(message(n=2))
        wait_until(lambda: handler.payloads() == [{"n": 1}, {"n": 2}])
    finally:
        consumer.stop()


def test_a_retried_message_comes_back_and_one_that_keeps_failing_is_parked(nats_server):
    broker = Broker(nats_server.url, name="test")

    def answer(delivery):
        if delivery.payload["kind"] == "flaky" and delivery.attempt == 1:
            return Retry("the mail server is down", delay_seconds=0.2)
        if delivery.payload["kind"] == "hopeless":
            return Retry("the recipient is refused", because_of_message=True, delay_seconds=0.1)
        if delivery.payload["kind"] == "broken":
            return Park("not a crossing")
        return DONE

    handler = Recorder(answer)
    consumer = consuming(nats_server, handler, TO_NOTIFIER)
    try:
        for kind in ("flaky", "hopeless", "broken"):
            broker.publish(message(TO_NOTIFIER, kind=kind))
        wait_until(lambda: broker.dead_letters(TO_NOTIFIER) == 2, timeout=15)
        attempts = {}
        for delivery in handler.seen:
            attempts[delivery.payload["kind"]] = delivery.attempt
        assert attempts == {"flaky": 2, "hopeless": 5, "broken": 1}
        assert consumer.counts.parked == 2
    finally:
        consumer.stop()


def test_a_handler_that_raises_gets_the_batch_again(nats_server):
    broker = Broker(nats_server.url, name="test")
    calls = []

    def handler(deliveries):
        calls.append(len(deliveries))
        if len(calls) == 1:
            raise RuntimeError("the database is down")
        return [DONE] * len(deliveries)

    broker.publish(message(n=1))
    consumer = consuming(nats_server, handler)
    try:
        # The handler's second call runs on a thread; its count comes after, on the loop.
        wait_until(lambda: consumer.counts.handled == 1, timeout=15)
        assert len(calls) == 2
    finally:
        consumer.stop()


# Retries a few tenths of a second apart: a message failing alone is parked within seconds.
QUICK_RETRIES = {"CONSUMER_RETRY_FIRST_SECONDS": 0.1, "CONSUMER_RETRY_MAX_SECONDS": 0.4}


def test_a_message_that_fails_its_batch_is_parked_and_the_others_are_handled(nats_server):
    """As a value the database refuses fails a whole transaction, and nothing else would."""
    broker = Broker(nats_server.url, name="test")
    for payload in ({"n": 1}, {"poison": True}, {"n": 2}):
        broker.publish(message(**payload))
    handled = Recorder()

    def handler(deliveries):
        if any("poison" in delivery.payload for delivery in deliveries):
            raise ValueError("A string literal cannot contain NUL (0x00) characters.")
        return handled(deliveries)

    consumer = consuming(nats_server, handler, **QUICK_RETRIES)
    try:
        wait_until(lambda: broker.dead_letters(TO_ALERT_SYSTEM) == 1, timeout=15)
        assert sorted(p["n"] for p in handled.payloads()) == [1, 2]
        assert consumer.counts.handled == 2
    finally:
        consumer.stop()


@pytest.mark.parametrize(
    "failure",
    [
        OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused")),
        # As a replica one migration behind meets a table it does not know yet.
        RuntimeError("relation does not exist"),
    ],
    ids=["database-down", "same-for-every-message"],
)
def test_a_failure_every_message_meets_holds_the_batch_back_however_long_it_lasts(
    nats_server, failure
):
    """None of the messages is the cause: none is parked."""
    broker = Broker(nats_server.url, name="test")
    for n in (1, 2):
        broker.publish(message(n=n))

    def handler(deliveries):
        # Down until each message has been delivered more often than a failing one may be.
        if any(delivery.attempt <= MAX_ATTEMPTS for delivery in deliveries):
            raise failure
        return [DONE] * len(deliveries)

    consumer = consuming(nats_server, handler, **QUICK_RETRIES)
    try:
        wait_until(lambda: consumer.counts.handled == 2, timeout=30)
        assert broker.dead_letters(TO_ALERT_SYSTEM) == 0
    finally:
        consumer.stop()


def test_a_message_nested_past_the_parser_is_parked_and_the_next_one_handled(nats_server):
    broker = Broker(nats_server.url, name="test")

    async def publish_raw(js, data: bytes):
        await js.publish(TO_ALERT_SYSTEM, data, headers={"Nats-Msg-Id": str(uuid.uuid4())})

    broker.call(publish_raw, b"[" * 50_000)
    broker.publish(message(n=1))
    handler = Recorder(lambda d: Park("not an event") if "undecodable" in d.payload else DONE)
    consumer = consuming(nats_server, handler)
    try:
        wait_until(lambda: {"n": 1} in handler.payloads(), timeout=15)
        wait_until(lambda: broker.dead_letters(TO_ALERT_SYSTEM) == 1, timeout=15)
    finally:
        consumer.stop()


def test_a_consumer_waiting_for_a_broker_that_is_down_logs_no_tracebacks(caplog):
    """nats-py's default error callback logs each failed try with its traceback."""
    down = Broker(f"nats://127.0.0.1:{free_port()}", name="test", timeout=1)
    app = Flask("test")
    app.config["CONSUMER_ACK_WAIT_SECONDS"] = 1  # how long stop() waits for the thread
    consumer = Consumer(app, down, [Subscription(TO_ALERT_SYSTEM, "d", Recorder())])
    with caplog.at_level(logging.INFO):
        consumer.start()
        wait_until(lambda: "trying again" in caplog.text, timeout=15)
        time.sleep(3)  # a few tries more (every 0.5 s): none is logged
        consumer.stop()
    assert not [record for record in caplog.records if record.exc_info], caplog.text[:2000]
    assert caplog.text.count("trying again") == 1


def test_publishing_while_the_broker_is_down_fails_fast_and_works_after_it_returns(nats_server):
    broker = Broker(nats_server.url, name="test", timeout=1)
    assert broker.publish(message(n=1))
    nats_server.stop()
    with pytest.raises(BrokerUnavailableError):
        broker.publish(message(n=2))
    nats_server.start()
    wait_until(lambda: _publishes(broker), timeout=15)
    handler = Recorder()
    consumer = consuming(nats_server, handler)
    try:
        # What was stored before the restart is still there (streams on disk).
        wait_until(lambda: {"n": 1} in handler.payloads(), timeout=15)
    finally:
        consumer.stop()


def _publishes(broker: Broker) -> bool:
    try:
        return broker.publish(message(n=3))
    except BrokerUnavailableError:
        return False


@pytest.fixture
def outbox_app(local_stack):
    """A Flask app with an outbox table, on a database of its own in the suite's PostgreSQL."""
    database = f"outbox_{uuid.uuid4().hex[:8]}"
    admin = local_stack.admin_database_url("USER_MANAGER_DATABASE_URL")
    connection = psycopg2.connect(admin)
    connection.autocommit = True
    connection.cursor().execute(f"CREATE DATABASE {database}")
    connection.close()
    url = make_url(admin).set(drivername="postgresql+psycopg2", database=database)
    app = Flask("outbox-test")
    app.config["SQLALCHEMY_DATABASE_URI"] = url.render_as_string(hide_password=False)
    db = SQLAlchemy()
    table = outbox.outbox_table(db.metadata)
    db.init_app(app)
    with app.app_context():
        db.create_all()
    yield app, db, table


def test_the_relay_publishes_what_commits_and_nothing_of_a_rollback(outbox_app, nats_server):
    app, db, table = outbox_app
    broker = Broker(nats_server.url, name="test")
    relay = outbox.Relay(app, db, table, broker)
    handler = Recorder()
    consumer = consuming(nats_server, handler)
    relay.start()
    try:
        with app.app_context():
            outbox.enqueue(db, table, [message(n=1), message(n=2)])
            db.session.commit()
            outbox.enqueue(db, table, [message(n=3)])
            db.session.rollback()
        wait_until(lambda: sorted(p["n"] for p in handler.payloads()) == [1, 2], timeout=15)
        with app.app_context():
            wait_until(lambda: outbox.backlog(db, table).count == 0)
    finally:
        relay.stop()
        consumer.stop()


def test_messages_committed_while_the_broker_is_down_are_published_when_it_returns(
    outbox_app, nats_server
):
    app, db, table = outbox_app
    broker = Broker(nats_server.url, name="test", timeout=1)
    relay = outbox.Relay(app, db, table, broker)
    relay.start()
    nats_server.stop()
    try:
        with app.app_context():
            outbox.enqueue(db, table, [message(n=n) for n in range(50)])
            db.session.commit()
            assert outbox.backlog(db, table).count == 50
        nats_server.start()
        handler = Recorder()
        consumer = consuming(nats_server, handler)
        try:
            wait_until(lambda: len(handler.payloads()) == 50, timeout=60)
            assert sorted(p["n"] for p in handler.payloads()) == list(range(50))
        finally:
            consumer.stop()
    finally:
        relay.stop()


def test_a_message_reaching_an_idle_consumer_is_handled_at_once(nats_server, monkeypatch):
    """An idle consumer waits for messages; one that comes is handed over without waiting more.

    The fetch that waits for the first message must not keep waiting, to the
    end of its window, for more to fill the batch: every hop would add up to
    that window to an alert's latency.
    """
    from common.broker import consumer as consumer_module

    monkeypatch.setattr(consumer_module, "FETCH_WAIT_SECONDS", 4.0)
    broker = Broker(nats_server.url, name="test")
    handled = {}

    def handler(deliveries):
        for delivery in deliveries:
            handled[delivery.payload["n"]] = time.monotonic()
        return [DONE] * len(deliveries)

    durable = f"test-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        Flask("test"),
        Broker(nats_server.url, name="test-consumer"),
        [Subscription(TO_ALERT_SYSTEM, durable, handler)],
    )
    consumer.start()
    try:
        # The consumer is idle: its fetch waits at the broker for a message.
        wait_until(lambda: _waiting_pulls(broker, durable) >= 1)
        published = time.monotonic()
        broker.publish(message(n=1))
        wait_until(lambda: 1 in handled, timeout=10)
        assert handled[1] - published < 2.0
    finally:
        consumer.stop()


def test_a_consumer_started_with_another_ack_wait_brings_the_durable_consumer_to_it(nats_server):
    durable = f"test-{uuid.uuid4().hex[:8]}"
    broker = Broker(nats_server.url, name="test")
    for ack_wait in (30, 2):
        app = Flask("test")
        app.config["CONSUMER_ACK_WAIT_SECONDS"] = ack_wait
        consumer = Consumer(
            app,
            Broker(nats_server.url, name="test-consumer"),
            [Subscription(TO_ALERT_SYSTEM, durable, Recorder())],
        )
        consumer.start()
        try:
            wait_until(lambda ack_wait=ack_wait: _ack_wait(broker, durable) == ack_wait)
        finally:
            consumer.stop()


def _consumer_info(broker: Broker, durable: str):
    from nats.js.errors import NotFoundError

    async def info(js):
        try:
            return await js.consumer_info("TO_ALERT_SYSTEM", durable)
        except NotFoundError:
            return None

    return broker.call(info)


def _waiting_pulls(broker: Broker, durable: str) -> int:
    info = _consumer_info(broker, durable)
    return 0 if info is None else info.num_waiting or 0


def _ack_wait(broker: Broker, durable: str) -> float | None:
    info = _consumer_info(broker, durable)
    return None if info is None else info.config.ack_wait


def test_a_relay_waiting_for_commits_stops_at_once(outbox_app, nats_server):
    app, db, table = outbox_app
    relay = outbox.Relay(app, db, table, Broker(nats_server.url, name="test"))
    relay.start()
    # Nothing to publish: the relay waits for a commit's notification (IDLE_SECONDS at most).
    wait_until(lambda: relay._listener is not None)
    started = time.monotonic()
    relay.stop()
    assert time.monotonic() - started < outbox.IDLE_SECONDS / 2


def test_the_relay_and_the_consumer_count_what_passed_by_subject_and_outcome(
    outbox_app, nats_server
):
    app, db, table = outbox_app
    broker = Broker(nats_server.url, name="test")

    def counted(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"subject": TO_NOTIFIER, **labels}) or 0.0

    published = counted("broker_messages_published_total")
    consumed = {
        outcome: counted("broker_messages_consumed_total", outcome=outcome)
        for outcome in ("done", "parked")
    }
    with app.app_context():
        outbox.enqueue(db, table, [message(TO_NOTIFIER, bad=False), message(TO_NOTIFIER, bad=True)])
        db.session.commit()
    relay = outbox.Relay(app, db, table, broker)
    consumer = consuming(
        nats_server, Recorder(lambda d: Park("no") if d.payload["bad"] else DONE), TO_NOTIFIER
    )
    relay.start()
    try:
        wait_until(lambda: broker.dead_letters(TO_NOTIFIER) == 1, timeout=15)
        wait_until(lambda: consumer.counts.handled == 1)
    finally:
        relay.stop()
        consumer.stop()

    assert counted("broker_messages_published_total") == published + 2
    for outcome in ("done", "parked"):
        assert counted("broker_messages_consumed_total", outcome=outcome) == consumed[outcome] + 1
