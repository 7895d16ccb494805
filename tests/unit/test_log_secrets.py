"""The OpenSky client never logs its client secret or an access token, even at DEBUG."""

import logging

import pytest

from data_collector.collection.opensky import CredentialsRefusedError, OpenSkyClient
from opensky_sim.app import run_in_thread
from opensky_sim.simulator import Settings

SECRET = "client-secret-that-must-stay-private"


@pytest.fixture
def simulator():
    server, url = run_in_thread(Settings(client_id="me", client_secret=SECRET))
    try:
        yield server.app.extensions["opensky_sim"], url
    finally:
        server.shutdown()


def client(url: str, secret: str = SECRET) -> OpenSkyClient:
    return OpenSkyClient(
        api_url=f"{url}/api",
        token_url=f"{url}/auth/realms/opensky-network/protocol/openid-connect/token",
        client_id="me",
        client_secret=secret,
        timeout=5,
        max_attempts=2,
        backoff_seconds=0,
    )


def test_tokens_and_the_secret_stay_out_of_every_log_record(simulator, caplog):
    sim, url = simulator
    caplog.set_level(logging.DEBUG)  # every logger, urllib3's request lines included
    opensky = client(url)
    opensky.flights("arrival", begin=1_700_000_000, end=1_700_003_600, airport="LIRF")
    sim.expire_tokens()  # the next request gets a 401, and the client renews its token
    opensky.flights("departure", begin=1_700_000_000, end=1_700_003_600, airport="LIRF")
    with pytest.raises(CredentialsRefusedError) as refused:
        client(url, secret="a-wrong-secret").flights(
            "arrival", begin=1_700_000_000, end=1_700_003_600, airport="LIRF"
        )

    tokens = list(sim.tokens)
    assert len(tokens) == 2
    logged = caplog.text + str(refused.value)
    assert "OpenSky answered 401: renewing the token once" in logged
    for secret in (SECRET, "a-wrong-secret", *tokens):
        assert secret not in logged
