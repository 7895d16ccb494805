"""What operators see: request ids across both services, one log line per request, metrics."""

import re
import uuid

import pytest

from tests.utils import create_user, metric_value, wait_until


def test_request_id_is_echoed_or_generated(um, dc):
    given = f"test-{uuid.uuid4().hex}"
    assert um.get("/ping", headers={"X-Request-ID": given}).headers["X-Request-ID"] == given
    generated = dc.get("/ping").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    # An id that could break log lines or headers is replaced, not trusted.
    unsafe = dc.get("/ping", headers={"X-Request-ID": "a b\tc"}).headers["X-Request-ID"]
    assert unsafe != "a b\tc"


@pytest.mark.local_stack
def test_request_id_reaches_the_peer_over_grpc_and_is_logged_there(local_stack, um, dc):
    email = create_user(um)
    request_id = f"trace-{uuid.uuid4().hex}"
    response = dc.post(
        "/interests",
        json={"email": email, "airport_code": "LIRF"},
        headers={"X-Request-ID": request_id},
    )
    assert response.status_code == 201

    def logged(role: str, pattern: str) -> bool:
        return any(
            re.search(pattern, line) and request_id in line
            for line in local_stack.log_text(role).splitlines()
        )

    # The Data Collector logs the request; the User Manager logs the gRPC call it caused.
    wait_until(lambda: logged("data_collector", r"POST /interests 201 [0-9.]+ms"))
    wait_until(lambda: logged("user_manager", r"/flighttracker.v1.UserService/CheckUserExists OK"))


def _sample(metrics_text: str, name: str, **labels: str) -> float:
    return metric_value(metrics_text, name, **labels) or 0.0


# Requests and scrapes through a balancer may reach different replicas.
@pytest.mark.one_replica
def test_metrics_count_requests_by_route_across_workers(um):
    before = _sample(
        um.get("/metrics").text, "http_requests_total", method="GET", route="/ping", status="200"
    )
    for _ in range(20):
        assert um.get("/ping").status_code == 200
    text = um.get("/metrics").text
    after = _sample(text, "http_requests_total", method="GET", route="/ping", status="200")
    # Several gunicorn workers served these: the count is theirs combined.
    assert after - before == 20
    assert _sample(text, "http_request_duration_seconds_count", method="GET", route="/ping") > 0


def test_metrics_count_grpc_calls_on_both_sides(um, dc):
    email = create_user(um)
    assert dc.post("/interests", json={"email": email, "airport_code": "LIMC"}).status_code == 201
    client = _sample(
        dc.get("/metrics").text, "grpc_client_calls_total", method="CheckUserExists", outcome="OK"
    )
    served = _sample(
        um.get("/metrics").text,
        "grpc_server_calls_total",
        method="/flighttracker.v1.UserService/CheckUserExists",
        code="OK",
    )
    assert client >= 1
    assert served >= 1


@pytest.mark.local_stack
def test_logged_database_errors_do_not_carry_the_statement_values(local_stack, capsys):
    """PostgreSQL quotes values in some errors; what the services log must not."""
    import logging

    from sqlalchemy import create_engine, text

    from common.db.connections import engine_options
    from common.observability.logs import configure_logging
    from common.settings import sqlalchemy_url

    url = sqlalchemy_url(local_stack.database_urls["USER_MANAGER_DATABASE_URL"])
    engine = create_engine(url, **engine_options(pool_size=1))
    iban = "GB82WEST12345698765432"
    for log_format in ("text", "json"):
        configure_logging("INFO", log_format)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT CAST(:iban AS integer)"), {"iban": iban})
        except Exception as error:
            assert iban in str(error)  # the raw error does quote it...
            logging.getLogger("test").exception("query failed")
        logged = capsys.readouterr().err
        assert "InvalidTextRepresentation (SQLSTATE 22P02)" in logged
        assert iban not in logged  # ...the log line does not
    engine.dispose()
