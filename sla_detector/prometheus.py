"""Prometheus's HTTP API as the detector uses it: instant queries and readiness.

A query's answer becomes the values of its series now (``/api/v1/query``):
an instant vector gives one value per series, a scalar one value. Three
kinds of failure are told apart, because they mean different things:
:class:`QueryRefusedError` (Prometheus answered that the query is wrong: the
operator must fix it), :class:`PrometheusUnavailableError` (no answer, a timeout,
a 5xx: the detector waits and says so), and an empty list (the query is fine
but matches nothing now).
"""

import math
import sys

import requests

# Prometheus is on the same network; a healthy one answers an instant query in
# milliseconds. Five seconds bounds a check of many metrics against a sick one.
QUERY_TIMEOUT_SECONDS = 5.0
# /health asks whether Prometheus is ready; it must answer within the probe's budget.
READY_TIMEOUT_SECONDS = 0.5


class PrometheusUnavailableError(Exception):
    """Prometheus did not answer, or not in time, or failed (5xx)."""


class QueryRefusedError(Exception):
    """Prometheus refused the query, or it gives a kind of result that is not a value."""


def query(base_url: str, promql: str, *, timeout: float = QUERY_TIMEOUT_SECONDS) -> list[float]:
    """Return the values of ``promql``'s series now (NaN left out; empty: nothing matches)."""
    url = f"{base_url}/api/v1/query"
    # Prometheus gets the same bound: it stops evaluating a query nobody waits for any more
    # (left to itself it goes on for its own query timeout, two minutes by default).
    params = {"query": promql, "timeout": f"{timeout:.3f}"}
    try:
        response = requests.get(url, params=params, timeout=timeout)
    except requests.RequestException as error:
        raise PrometheusUnavailableError(
            f"{base_url} does not answer: {type(error).__name__}"
        ) from None
    try:
        body = response.json()
    except (ValueError, RecursionError):
        body = None
    body = body if isinstance(body, dict) else {}
    if response.status_code in (400, 422):
        error = body.get("error")
        raise QueryRefusedError(
            error if isinstance(error, str) and error else f"HTTP {response.status_code}"
        )
    if response.status_code != 200:
        raise PrometheusUnavailableError(f"{base_url} answered HTTP {response.status_code}")
    try:
        if body.get("status") != "success":
            raise ValueError
        values = _values(body["data"])
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        # A proxy in front of it, or another server at its address: not Prometheus's answer.
        raise PrometheusUnavailableError(
            f"{base_url} answered something that is not a query's result"
        ) from None
    # JSON (the API's answers, the breach events) has no infinity; the largest float
    # compares with every limit as infinity does (a limit is below it in size).
    return [
        math.copysign(sys.float_info.max, value) if math.isinf(value) else value
        for value in values
        if not math.isnan(value)
    ]


def _values(data: dict) -> list[float]:
    """Return the values of a query's ``data``: one per series of a vector, one of a scalar."""
    kind = data.get("resultType")
    if kind == "vector":
        return [float(series["value"][1]) for series in data["result"]]
    if kind == "scalar":
        return [float(data["result"][1])]
    raise QueryRefusedError(
        f"it gives a {kind}; the detector compares values now (an instant vector or a scalar)"
    )


def is_ready(base_url: str, *, timeout: float = READY_TIMEOUT_SECONDS) -> bool:
    """Tell whether Prometheus answers that it is ready to serve queries."""
    try:
        return requests.get(f"{base_url}/-/ready", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False
