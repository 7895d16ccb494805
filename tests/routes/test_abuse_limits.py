"""What one client can make the collector spend: capped interests, one run a minute."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from data_collector.app import create_app
from tests.utils import AppClient, create_user, run_sql

# Known ICAO codes nobody else's tests follow.
SPARE_AIRPORTS = ["EFHK", "ESSA", "ENGM", "EKCH", "BIKF", "EIDW", "EGPH", "EGCC", "LPPT", "LEBL"]


@pytest.fixture
def collector_with(local_stack):
    """The Data Collector app in this process, on the suite's database, with these limits."""

    def build(**limits):
        return AppClient(
            create_app(
                {
                    "SQLALCHEMY_DATABASE_URI": local_stack.database_urls[
                        "DATA_COLLECTOR_DATABASE_URL"
                    ],
                    "USER_MANAGER_GRPC_ADDR": local_stack.env["USER_MANAGER_GRPC_ADDR"],
                    **limits,
                }
            )
        )

    return build


def followed_airports(local_stack) -> int:
    database = local_stack.database_urls["DATA_COLLECTOR_DATABASE_URL"]
    return run_sql(database, "SELECT count(DISTINCT airport_code) FROM user_interests")[0][0]


def follow(client, email: str, airport: str):
    return client.post("/interests", json={"email": email, "airport_code": airport})


def test_a_user_follows_at_most_max_interests_per_user_airports(collector_with, um):
    client = collector_with(MAX_INTERESTS_PER_USER=2)
    email = create_user(um)
    assert follow(client, email, "LIRF").status_code == 201
    assert follow(client, email, "LIMC").status_code == 201
    refused = follow(client, email, "LIPZ")
    assert refused.status_code == 409
    assert refused.json()["details"] == {"limit": "MAX_INTERESTS_PER_USER"}
    assert follow(client, email, "LIRF").status_code == 200  # already followed: no new cost
    assert len(client.get(f"/interests/{email}").json()) == 2


def test_new_airports_stop_at_max_followed_airports_even_when_asked_for_at_once(
    local_stack, collector_with, um
):
    already = followed_airports(local_stack)
    client = collector_with(MAX_FOLLOWED_AIRPORTS=already + 3)
    emails = [create_user(um) for _ in SPARE_AIRPORTS]
    with ThreadPoolExecutor(max_workers=5) as pool:
        answers = list(
            pool.map(lambda pair: follow(client, *pair), zip(emails, SPARE_AIRPORTS, strict=True))
        )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201] * 3 + [409] * (len(SPARE_AIRPORTS) - 3)
    refused = next(answer for answer in answers if answer.status_code == 409)
    assert refused.json()["details"] == {"limit": "MAX_FOLLOWED_AIRPORTS"}
    assert followed_airports(local_stack) == already + 3
    # An airport someone follows already costs nothing more: still open to everyone.
    taken = next(a for a, answer in zip(SPARE_AIRPORTS, answers, strict=True) if answer.ok)
    assert follow(client, create_user(um), taken).status_code == 201
    for email in emails:
        for airport in SPARE_AIRPORTS:
            client.request("DELETE", "/interests", json={"email": email, "airport_code": airport})


def test_collection_runs_are_asked_for_at_most_once_a_minute(collector_with):
    client = collector_with(COLLECTION_RUN_MIN_INTERVAL_SECONDS=60)
    answers = [client.post("/collection/runs") for _ in range(3)]
    assert answers[-1].status_code == 429
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
    assert "minute" in answers[-1].json()["error"]
    assert [answer.status_code for answer in answers].count(202) <= 1
