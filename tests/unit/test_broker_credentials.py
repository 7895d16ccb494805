"""A broker URL may carry a user and password: logs, errors and /health never show them."""

import uuid

import pytest

from common.broker.connection import Broker, BrokerUnavailableError, Message, without_credentials
from devstack.stack import free_port


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://alerts:s3cret@nats:4222", "nats://nats:4222"),
        ("tls://token@nats.example.com:4222", "tls://nats.example.com:4222"),
        ("nats://nats:4222", "nats://nats:4222"),
    ],
)
def test_the_url_is_shown_without_its_credentials(url, shown):
    assert without_credentials(url) == shown


def test_an_unreachable_broker_is_named_without_its_password(caplog):
    broker = Broker(f"nats://alerts:s3cret@127.0.0.1:{free_port()}", name="test", timeout=1)
    with pytest.raises(BrokerUnavailableError) as refused:
        broker.publish(Message("to-alert-system", str(uuid.uuid4()), {"n": 1}))
    assert "127.0.0.1" in str(refused.value) and "s3cret" not in str(refused.value)
    assert "s3cret" not in caplog.text
