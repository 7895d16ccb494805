"""Collection settings that would contradict each other fail at start, naming both."""

import pytest

from common.settings import ConfigError
from data_collector.config import Settings as Config


@pytest.fixture
def config_with(monkeypatch):
    def build(**variables: str) -> Config:
        monkeypatch.setenv("DATA_COLLECTOR_DATABASE_URL", "postgresql://u:p@db:5432/d")
        for name in (
            "COLLECT_INTERVAL_MINUTES",
            "COLLECT_MIN_GAP_MINUTES",
            "OPENSKY_CLIENT_ID",
            "OPENSKY_DAILY_CREDITS",
        ):
            monkeypatch.delenv(name, raising=False)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        return Config()

    return build


@pytest.mark.parametrize(
    ("interval", "gap"),
    [(None, 60), ("720", 60), ("60", 60), ("2", 2), ("1", 1)],
)
def test_the_default_gap_is_an_hour_or_the_interval_if_shorter(config_with, interval, gap):
    variables = {} if interval is None else {"COLLECT_INTERVAL_MINUTES": interval}
    config = config_with(**variables)
    assert gap == config.COLLECT_MIN_GAP_MINUTES


def test_an_explicit_gap_within_the_interval_is_kept(config_with):
    config = config_with(COLLECT_INTERVAL_MINUTES="30", COLLECT_MIN_GAP_MINUTES="30")
    assert config.COLLECT_MIN_GAP_MINUTES == 30
    assert config_with(COLLECT_MIN_GAP_MINUTES="0").COLLECT_MIN_GAP_MINUTES == 0


def test_an_explicit_gap_longer_than_the_interval_is_refused_naming_both(config_with):
    with pytest.raises(ConfigError) as refused:
        config_with(COLLECT_INTERVAL_MINUTES="2", COLLECT_MIN_GAP_MINUTES="60")
    assert "COLLECT_MIN_GAP_MINUTES (60)" in str(refused.value)
    assert "COLLECT_INTERVAL_MINUTES (2)" in str(refused.value)


@pytest.mark.parametrize(
    ("variables", "credits"),
    [
        ({}, 400),
        ({"OPENSKY_CLIENT_ID": "your_api_client_id"}, 400),
        ({"OPENSKY_CLIENT_ID": "a-client"}, 4000),
        ({"OPENSKY_CLIENT_ID": "a-client", "OPENSKY_DAILY_CREDITS": "8000"}, 8000),
    ],
)
def test_the_daily_credits_default_to_the_quota_of_the_account_in_use(
    config_with, variables, credits
):
    assert credits == config_with(**variables).OPENSKY_DAILY_CREDITS
