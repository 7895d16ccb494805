"""The /_sim control API: datasets, ground truth, clock, `all` semantics, reset."""

import time

import pytest

from opensky_sim import Settings, create_app

from .helpers import DAY, day_start, flight, flights, ground_truth, token

B = day_start(3)
ROME_MILAN = flight("aaa001", B + 3600, B + 7200, "LIRF", "LIMC")
MILAN_ROME = flight("aaa002", B + 4000, B + 8000, "LIMC", "LIRF")
ROME_NOWHERE = flight("aaa003", B + 5000, B + 9000, "LIRF", None)


@pytest.fixture
def dataset(client):
    response = client.put("/_sim/dataset", json={"flights": [ROME_NOWHERE, MILAN_ROME, ROME_MILAN]})
    assert response.status_code == 200


@pytest.mark.usefixtures("dataset")
def test_loaded_dataset_is_exactly_what_every_endpoint_answers(client):
    assert flights(client, "departure", B, B + DAY, "LIRF").get_json() == [
        ROME_MILAN,
        ROME_NOWHERE,
    ]
    assert flights(client, "arrival", B, B + DAY, "LIRF").get_json() == [MILAN_ROME]
    assert flights(client, "all", B, B + 7200).get_json() == [
        ROME_MILAN,
        MILAN_ROME,
        ROME_NOWHERE,
    ]
    assert flights(client, "departure", B, B + DAY, "EGLL").status_code == 404
    assert client.get("/_sim/state").get_json()["dataset_loaded"] is True


@pytest.mark.usefixtures("dataset")
def test_ground_truth_matches_the_public_answers_without_limits_or_charges(client):
    assert ground_truth(client, "arrival", B - 5 * DAY, B + 5 * DAY, "LIMC") == [ROME_MILAN]
    assert ground_truth(client, "departure", B, B + DAY, "EGLL") == []
    assert client.get("/_sim/credits").get_json()["anonymous"]["used"] == 0
    assert client.get("/_sim/calls").get_json() == []


def test_dataset_flights_get_missing_fields_as_null(client):
    partial = {"icao24": "abc123", "firstSeen": B, "lastSeen": B + 600}
    client.put("/_sim/dataset", json={"flights": [partial]})

    (answer,) = flights(client, "all", B, B + 60).get_json()

    assert answer["icao24"] == "abc123"
    assert answer["estDepartureAirport"] is None
    assert answer["arrivalAirportCandidatesCount"] is None


@pytest.mark.parametrize(
    "flights_payload",
    [
        None,
        {"icao24": "abc123"},
        ["not a flight"],
        [{"icao24": "abc123", "firstSeen": "B", "lastSeen": B}],
        [{"icao24": "abc123", "firstSeen": B, "lastSeen": B - 1}],
        [{"icao24": "abc123", "firstSeen": B, "lastSeen": B, "estArrivalAirport": 7}],
    ],
)
def test_unusable_dataset_is_rejected_and_world_kept(client, flights_payload):
    response = client.put("/_sim/dataset", json={"flights": flights_payload})

    assert response.status_code == 400
    assert response.get_json()["error"]
    assert client.get("/_sim/state").get_json()["dataset_loaded"] is False


@pytest.mark.usefixtures("dataset")
def test_deleting_the_dataset_brings_back_the_synthetic_world(client):
    client.delete("/_sim/dataset")

    answer = flights(client, "departure", B, B + DAY, "LIRF").get_json()

    assert len(answer) > 20
    assert ROME_MILAN not in answer


def test_ground_truth_has_no_interval_limit(client):
    week = ground_truth(client, "departure", B - 6 * DAY, B + DAY - 1, "LIRF")
    days = [
        f
        for day in range(B - 6 * DAY, B + DAY, DAY)
        for f in flights(client, "departure", day, day + DAY - 1, "LIRF").get_json()
    ]

    assert week == days


@pytest.mark.parametrize(
    "query",
    [
        {"direction": "sideways", "begin": B, "end": B + 60},
        {"direction": "arrival", "begin": B, "end": B + 60},
        {"direction": "all", "begin": B + 60, "end": B},
    ],
)
def test_bad_ground_truth_query_is_400(client, query):
    response = client.get("/_sim/flights", query_string=query)

    assert response.status_code == 400
    assert response.get_json()["error"]


def test_clock_offset_decides_which_flights_have_landed(client):
    now = int(time.time())
    landing_soon = flight("bbb001", now - 1800, now + 3600, "EGLL", "LIRF")
    client.put("/_sim/dataset", json={"flights": [landing_soon]})

    assert flights(client, "departure", now - 3600, now, "EGLL").status_code == 404

    client.put("/_sim/clock", json={"offset_seconds": 7200})
    assert flights(client, "departure", now - 3600, now, "EGLL").get_json() == [landing_soon]


def test_clock_offset_moves_the_cheap_recent_window(client):
    now = int(time.time())
    client.put("/_sim/clock", json={"offset_seconds": 2 * DAY})

    response = flights(client, "departure", now - 3600, now, "EGLL")

    assert client.get("/_sim/calls").get_json()[-1]["cost"] == 30
    assert response.headers["X-Rate-Limit-Remaining"] == "370"


def test_bad_clock_offset_is_400(client):
    assert client.put("/_sim/clock", json={"offset_seconds": "soon"}).status_code == 400


STAYS_INSIDE = flight("ccc001", B + 600, B + 3000, "LIRF", "LIMC")
LANDS_AFTER = flight("ccc002", B + 3000, B + 9000, "LIRF", "EGLL")
STARTED_BEFORE = flight("ccc003", B - 600, B + 1200, "EDDF", "LIRF")


@pytest.mark.parametrize(
    ("semantics", "expected"),
    [("first-seen", [STAYS_INSIDE, LANDS_AFTER]), ("contained", [STAYS_INSIDE])],
)
def test_all_semantics(semantics, expected):
    client = create_app(Settings(all_semantics=semantics)).test_client()
    client.put("/_sim/dataset", json={"flights": [STAYS_INSIDE, LANDS_AFTER, STARTED_BEFORE]})

    assert flights(client, "all", B, B + 7200).get_json() == expected
    assert ground_truth(client, "all", B, B + 7200) == expected


def test_all_semantics_can_be_switched_at_runtime_until_reset(client):
    client.put("/_sim/dataset", json={"flights": [STAYS_INSIDE, LANDS_AFTER]})

    response = client.put("/_sim/settings", json={"all_semantics": "contained"})

    assert response.status_code == 200 and response.get_json()["all_semantics"] == "contained"
    assert flights(client, "all", B, B + 7200).get_json() == [STAYS_INSIDE]
    client.post("/_sim/reset")
    client.put("/_sim/dataset", json={"flights": [STAYS_INSIDE, LANDS_AFTER]})
    assert flights(client, "all", B, B + 7200).get_json() == [STAYS_INSIDE, LANDS_AFTER]


@pytest.mark.parametrize(
    "body", [{"all_semantics": "overlapping"}, {"seed": 7}, {"all_semantics": "contained", "x": 1}]
)
def test_settings_that_cannot_change_at_runtime_are_a_400(client, body):
    response = client.put("/_sim/settings", json=body)

    assert response.status_code == 400 and response.get_json()["error"]
    assert client.get("/_sim/state").get_json()["settings"]["all_semantics"] == "first-seen"


def test_unknown_all_semantics_is_refused():
    with pytest.raises(ValueError, match="all_semantics"):
        Settings(all_semantics="overlapping")


def test_reset_forgets_everything_tests_changed(client, settings):
    headers = {"Authorization": f"Bearer {token(client)}"}
    client.put("/_sim/dataset", json={"flights": [ROME_MILAN]})
    client.post("/_sim/failures", json={"failures": [{"status": 500}]})
    client.put("/_sim/clock", json={"offset_seconds": 3600})
    client.put("/_sim/credits", json={"client": "anonymous", "limit": 10})
    flights(client, "departure", B, B + 60, "LIRF")

    client.post("/_sim/reset")

    state = client.get("/_sim/state").get_json()
    assert state["dataset_loaded"] is False
    assert state["pending_failures"] == 0
    assert state["call_count"] == 0
    assert state["clock_offset_seconds"] == 0
    assert state["settings"]["client_id"] == settings.client_id
    assert client.get("/_sim/credits").get_json()["anonymous"] == {
        "limit": 400,
        "used": 0,
        "remaining": 400,
    }
    assert flights(client, "departure", B, B + DAY, "LIRF", headers).status_code == 401


def test_calls_can_be_cleared(client):
    flights(client, "departure", B, B + 60, "LIRF")

    client.delete("/_sim/calls")

    assert client.get("/_sim/calls").get_json() == []


def test_control_calls_need_a_json_object(client):
    response = client.put("/_sim/dataset", data="flights", content_type="text/plain")

    assert response.status_code == 400
    assert response.get_json()["error"]
