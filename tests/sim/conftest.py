"""Fixtures for the OpenSky simulator's tests: a fresh simulator app and its test client."""

import pytest

from opensky_sim import Settings, create_app


@pytest.fixture
def settings():
    return Settings()


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()
