"""What the SLA detector asks Prometheus: every query bounded, a configuration's check too."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from flask import Flask

from common.web.errors import ApiError
from sla_detector import configuration, prometheus
from sla_detector.inputs import SlaConfig

SCALAR_ONE = json.dumps({"status": "success", "data": {"resultType": "scalar", "result": [0, "1"]}})


class SlowPrometheus:
    """An HTTP server answering instant queries after ``delay`` seconds; it keeps what it got."""

    def __init__(self, delay: float, answer: str = SCALAR_ONE, status: int = 200):
        self.delay = delay
        self.asked: list[dict[str, list[str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.asked.append(parse_qs(urlparse(self.path).query))
                time.sleep(outer.delay)
                body = answer.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads, self.server.block_on_close = True, False
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "SlowPrometheus":
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_prometheus_is_told_to_stop_a_query_when_the_detector_stops_waiting():
    with SlowPrometheus(delay=0) as server:
        assert prometheus.query(server.url, "up", timeout=2.5) == [1.0]
    (asked,) = server.asked
    assert asked["query"] == ["up"]
    assert float(asked["timeout"][0]) == 2.5


def test_checking_a_configuration_stops_within_half_the_request_time_and_changes_nothing():
    app = Flask(__name__)
    app.config.update(
        PROMETHEUS_URL="",
        PROMETHEUS_SCRAPE_SECONDS=15,
        SLA_CHECK_SECONDS=75,
        REQUEST_TIMEOUT_SECONDS=2,
    )
    config = SlaConfig.model_validate(
        {"metrics": [{"name": f"m{n}", "query": "up", "max": 1} for n in range(20)]}
    )
    with SlowPrometheus(delay=0.4) as server, app.app_context():
        app.config["PROMETHEUS_URL"] = server.url
        started = time.monotonic()
        with pytest.raises(ApiError) as refused:
            configuration.replace(config)  # 20 queries of 0.4 s: 8 s unbounded
        elapsed = time.monotonic() - started
    assert refused.value.status == 503
    assert elapsed < 1.5
    assert len(server.asked) < 20


def answer(result_type: str, result) -> str:
    return json.dumps({"status": "success", "data": {"resultType": result_type, "result": result}})


@pytest.mark.parametrize(
    "body",
    [
        "[]",
        "null",
        json.dumps({"status": "success"}),
        json.dumps({"status": "success", "data": []}),
        answer("vector", [{"metric": {}}]),
        answer("vector", [{"metric": {}, "value": [1]}]),
        answer("vector", [{"metric": {}, "value": [1, "abc"]}]),
        answer("vector", {"metric": {}}),
        answer("scalar", None),
        answer("scalar", [1, None]),
        "[" * 100_000,
    ],
)
def test_an_answer_that_is_no_query_result_is_prometheus_unavailable(body):
    """A proxy or another server at its address: the detector waits, as for a 5xx."""
    not_a_result = pytest.raises(
        prometheus.PrometheusUnavailableError, match="not a query's result"
    )
    with SlowPrometheus(delay=0, answer=body) as server, not_a_result:
        prometheus.query(server.url, "up", timeout=2)


def test_a_refusal_without_prometheus_error_field_is_still_a_refusal():
    refused = pytest.raises(prometheus.QueryRefusedError, match="HTTP 400")
    with SlowPrometheus(delay=0, answer="[1, 2]", status=400) as server, refused:
        prometheus.query(server.url, "up", timeout=2)


def test_the_check_interval_is_never_under_five_scrapes_of_the_settings_now():
    """A stored T_check may predate a longer scrape interval; without one, the setting rules."""
    app = Flask(__name__)
    app.config.update(PROMETHEUS_SCRAPE_SECONDS=60, SLA_CHECK_SECONDS=600)
    with app.app_context():
        assert configuration.check_seconds(SlaConfig(metrics=[], check_seconds=75)) == 300
        assert configuration.check_seconds(SlaConfig(metrics=[], check_seconds=900)) == 900
        assert configuration.check_seconds(SlaConfig(metrics=[])) == 600
