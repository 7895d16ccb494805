"""The SLA detector's settings and configuration file: refused at start with one sentence."""

import hashlib
import os
import subprocess
import sys

import pytest

from common.errors import ConfigError
from sla_detector.config import Settings
from sla_detector.inputs import SlaConfig

VALID = """\
metrics:
  - name: credits
    query: max(opensky_credits_remaining)
    min: 50
    max: 4000
  - name: p99
    query: histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))
    max: 1
"""


def settings(monkeypatch, **variables: str) -> Settings:
    for name in ("SLA_CHECK_SECONDS", "PROMETHEUS_SCRAPE_SECONDS", "SLA_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_the_check_interval_must_be_five_scrape_intervals_naming_both(monkeypatch):
    assert settings(monkeypatch).SLA_CHECK_SECONDS == 75
    assert settings(monkeypatch, SLA_CHECK_SECONDS="10", PROMETHEUS_SCRAPE_SECONDS="2")

    with pytest.raises(ConfigError) as refused:
        settings(monkeypatch, SLA_CHECK_SECONDS="60", PROMETHEUS_SCRAPE_SECONDS="15")

    assert str(refused.value).startswith(
        "SLA_CHECK_SECONDS (60) must be at least 5 x PROMETHEUS_SCRAPE_SECONDS (15) = 75"
    )


def test_a_check_interval_over_a_day_is_refused_naming_the_variable(monkeypatch):
    assert settings(monkeypatch, SLA_CHECK_SECONDS="86400").SLA_CHECK_SECONDS == 86400

    with pytest.raises(ConfigError, match="SLA_CHECK_SECONDS must be at most 86400"):
        settings(monkeypatch, SLA_CHECK_SECONDS="86401")
    # Five scrapes must fit in a check: a scrape rarer than a fifth of a day leaves none.
    with pytest.raises(ConfigError, match="PROMETHEUS_SCRAPE_SECONDS must be at most 17280"):
        settings(monkeypatch, SLA_CHECK_SECONDS="86400", PROMETHEUS_SCRAPE_SECONDS="17281")


def test_the_detector_does_not_start_with_a_check_interval_too_short():
    env = {**os.environ, "SLA_CHECK_SECONDS": "4", "PROMETHEUS_SCRAPE_SECONDS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "sla_detector", "web"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "SLA_CHECK_SECONDS (4) must be at least 5 x PROMETHEUS_SCRAPE_SECONDS (1)" in (
        result.stderr
    )


def test_the_configuration_file_is_read_at_start(monkeypatch, tmp_path):
    path = tmp_path / "sla.yml"
    path.write_text(VALID)

    config = settings(monkeypatch, SLA_CONFIG_FILE=str(path)).SLA_CONFIG

    assert [metric.name for metric in config.metrics] == ["credits", "p99"]
    assert (config.metrics[0].min, config.metrics[1].min, config.metrics[1].max) == (50, None, 1)


def test_the_file_is_read_once_its_digest_of_the_bytes_adopted(monkeypatch, tmp_path):
    """Moved or edited after the start, it changes nothing until the next start."""
    path = tmp_path / "sla.yml"
    path.write_text(VALID)

    read = settings(monkeypatch, SLA_CONFIG_FILE=str(path))
    path.unlink()

    digest, config = read.SLA_CONFIG_DIGEST, read.SLA_CONFIG
    assert digest == hashlib.sha256(VALID.encode()).hexdigest()
    assert [metric.name for metric in config.metrics] == ["credits", "p99"]


@pytest.mark.parametrize(
    ("content", "sentence"),
    [
        (b"metrics: [\xff]", "is not UTF-8 text"),
        (b"metrics: " + b"[" * 5000 + b"]" * 5000, "nests deeper than YAML is read"),
    ],
)
def test_a_file_that_is_no_text_or_nests_too_deep_is_named(
    monkeypatch, tmp_path, content, sentence
):
    path = tmp_path / "sla.yml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"SLA_CONFIG_FILE .*sla.yml {sentence}"):
        settings(monkeypatch, SLA_CONFIG_FILE=str(path))


ONE = "metrics:\n  - "


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        ("metrics: [", "is not YAML"),
        ("metric: []", "metrics: field required"),
        (
            ONE + "{name: a, query: up, min: 2, max: 1}",
            "metrics.0: min (2) must not be above max (1)",
        ),
        (ONE + "{name: a, query: up}", "metrics.0: give min, max or both"),
        (ONE + "{name: a, query: up, max: .inf}", "metrics.0: max must be a finite number"),
        (
            ONE + "{name: a, query: up, min: -1.7976931348623157e+308}",
            "metrics.0: min must be a finite number below 1.79769e+308",
        ),
        (ONE + "{name: a, query: up, max: '1'}", "metrics.0.max: input should be a valid number"),
        (ONE + "{name: a, query: up, max: 1}\n  - {name: a, query: up, max: 2}", "names must be"),
        (ONE + "{name: a, query: up, max: 1, step: 5}", "metrics.0.step: extra inputs are not"),
        (
            "metrics: []\ncheck_seconds: 10",
            "check_seconds of SLA_CONFIG_FILE (10) must be at least",
        ),
        ("metrics: []\ncheck_seconds: 100000000000", "check_seconds: input should be less than"),
        (ONE + '{name: a, query: "up\\0", max: 1}', "metrics.0.query: string should match"),
    ],
)
def test_a_bad_file_stops_the_start_saying_where_and_why(monkeypatch, tmp_path, text, sentence):
    path = tmp_path / "sla.yml"
    path.write_text(text)

    with pytest.raises(ConfigError) as refused:
        settings(monkeypatch, SLA_CONFIG_FILE=str(path))

    assert sentence in str(refused.value)


def test_a_missing_file_is_named(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match=r"SLA_CONFIG_FILE .*nowhere\.yml cannot be read"):
        settings(monkeypatch, SLA_CONFIG_FILE=str(tmp_path / "nowhere.yml"))


def test_the_api_takes_the_same_document_as_json():
    assert SlaConfig.model_validate({"metrics": [{"name": "a", "query": "up", "max": 1}]})


@pytest.mark.parametrize(
    "name", ["p99\nBcc: x", "p99\x85x", "p99\u2028x", "p99\u2029x", "=?utf-8?q?p=0D=0ABcc=3A_x?="]
)
def test_a_name_that_would_break_an_email_header_is_refused(name):
    with pytest.raises(ValueError, match=r"metrics\.0\.name"):
        SlaConfig.model_validate({"metrics": [{"name": name, "query": "up", "max": 1}]})


@pytest.mark.parametrize("url", ["garbage", "prometheus:9090", "http://prometheus:9090/?x=1"])
def test_a_prometheus_url_the_api_path_cannot_follow_is_refused(monkeypatch, url):
    with pytest.raises(ConfigError, match="PROMETHEUS_URL must be a URL \\(http or https\\)"):
        settings(monkeypatch, PROMETHEUS_URL=url)
