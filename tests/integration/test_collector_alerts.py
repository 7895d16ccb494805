"""The collector's side of the alerts: the window it compares, the events it publishes.

On the collection stack (real worker, simulator, PostgreSQL and nats-server),
with no Alert System: each test reads what the collector published on
``to-alert-system`` from the broker's stream, and feeds ``to-data-collector``
reports to it as the alert services would.

With two days of backfill the alert window of a newly followed airport is
the day before yesterday: the only day fetched at least a day after it
ended (``COLLECT_REFRESH_DAYS``). Yesterday is fetched whole, but OpenSky's
nightly batch may still add to it: it is not settled until tomorrow.
"""

import time
from datetime import UTC, datetime

import grpc
import pytest

from common.broker.connection import Message
from common.broker.streams import TO_DATA_COLLECTOR, stream_of
from common.rpc.generated import flight_tracker_pb2, flight_tracker_pb2_grpc
from common.timeutil import isoformat_utc
from tests.integration.collector_support import (
    CYCLE_TIMEOUT,
    DAY,
    iso,
    make_flight,
    today_start,
)
from tests.integration.test_interests import orphan_and_kept_user
from tests.utils import create_user, reconcile_interests, wait_until

pytestmark = pytest.mark.local_stack

AIRPORT = "LIRF"


def window_day() -> int:
    """The first second of the alert window of a newly followed airport (two days ago)."""
    return today_start() - 2 * DAY


def dataset() -> list[dict]:
    """Flights at LIRF over the collected days; on the window's day, 3 arrivals, 4 departures.

    One arrival of the window's day took off the day before (counted by its
    landing), and one departure lands the day after (counted by its take-off).
    """
    d2, d1 = window_day(), window_day() + DAY
    elapsed = int(time.time()) - today_start()
    # Today: a flight that has landed already (unless the day has just begun).
    today = [make_flight("b0000a", "LIMC", AIRPORT, today_start() + elapsed // 4, minutes=1)]
    return [
        *(today if elapsed > 600 else []),
        make_flight("b00001", "EGLL", AIRPORT, d2 - 3600, minutes=120),  # lands on d2
        make_flight("b00002", "LIMC", AIRPORT, d2 + 3600),
        make_flight("b00003", "LFPG", AIRPORT, d2 + 5 * 3600),
        make_flight("b00004", AIRPORT, "LIMC", d2 + 2 * 3600),
        make_flight("b00005", AIRPORT, "EGLL", d2 + 8 * 3600),
        make_flight("b00006", AIRPORT, None, d2 + 12 * 3600),
        make_flight("b00007", AIRPORT, "KJFK", d2 + DAY - 1800, minutes=600),  # lands on d1
        make_flight("b00008", "LIMC", AIRPORT, d1 + 3600),
        make_flight("b00009", AIRPORT, "LIMC", d1 + 7200),
    ]


WINDOW_ARRIVALS, WINDOW_DEPARTURES = 3, 4


def expected_event(event: dict) -> None:
    """Assert that ``event`` is the window's figure of the dataset."""
    assert event["airport"] == AIRPORT
    assert event["window"] == {"start": iso(window_day()), "end": iso(window_day() + DAY)}
    assert (event["arrivals"], event["departures"], event["flights"]) == (
        WINDOW_ARRIVALS,
        WINDOW_DEPARTURES,
        WINDOW_ARRIVALS + WINDOW_DEPARTURES,
    )
    assert (event["part"], event["parts"]) == (1, 1)


def follow(collector, airport: str = AIRPORT, **thresholds) -> tuple[str, int]:
    """A new user follows ``airport`` with ``thresholds``; return the email and interest id."""
    email = create_user(collector.um)
    body = {"email": email, "airport_code": airport, **thresholds}
    response = collector.dc.post("/interests", json=body)
    assert response.status_code == 201, response.text
    return email, collector.interest_id(email, airport)


def follow_and_collect(collector, **thresholds) -> tuple[str, int]:
    """Follow LIRF with ``thresholds`` and wait for the cycle that collects it."""
    with collector.paused():
        asked_at = time.time()
        followed = follow(collector, **thresholds)
    collector.wait_for_cycle(asked_at)
    return followed


def interest_item(collector, email: str, airport: str = AIRPORT) -> dict:
    """The user's interest in ``airport`` as ``GET /interests/{email}`` shows it."""
    response = collector.dc.get(f"/interests/{email}")
    assert response.status_code == 200, response.text
    (item,) = [i for i in response.json() if i["airport_code"] == airport]
    return item


def refetch_today(collector) -> dict:
    """Forget today's marks and run a cycle: today's flights are stored again, nothing new."""
    collector.sql("DELETE FROM collected_days WHERE day = to_timestamp(%s)::date", (today_start(),))
    return collector.run_cycle()


@pytest.fixture
def flights(collector):
    collector.sim.load_dataset(dataset())


def test_a_settled_day_is_published_once_with_the_followers_thresholds(collector, flights):
    email, interest = follow_and_collect(collector, high_value=5, low_value=1)
    (event,) = collector.published("flights", interest)
    expected_event(event)
    assert event["followers"] == [
        {"interest_id": interest, "email": email, "high_value": 5, "low_value": 1}
    ]
    # committed_at is the database's clock when the cycle wrote it, in UTC.
    committed = datetime.fromisoformat(event["committed_at"])
    assert committed.tzinfo is not None and abs(committed.timestamp() - time.time()) < 60
    item = interest_item(collector, email)
    assert (item["high_value"], item["low_value"]) == (5, 1)
    assert item["alert_window"] == {
        "start": iso(window_day()),
        "end": iso(window_day() + DAY),
        "arrivals": WINDOW_ARRIVALS,
        "departures": WINDOW_DEPARTURES,
        "flights": WINDOW_ARRIVALS + WINDOW_DEPARTURES,
    }
    assert item["alert_state"] == {"condition": None, "since": None, "last_email_at": None}

    # Another cycle stores and marks today again, with the same figure: nothing is sent.
    assert refetch_today(collector)["requests"] > 0
    assert len(collector.published("flights", interest)) == 1


def test_only_interests_with_a_threshold_are_listed(collector, flights):
    with collector.paused():
        asked_at = time.time()
        _, plain = follow(collector)
        _, upper = follow(collector, high_value=10)
        _, lower = follow(collector, low_value=2)
    collector.wait_for_cycle(asked_at)
    (event,) = [e for e in collector.published("flights", upper) if e["airport"] == AIRPORT]
    assert [f["interest_id"] for f in event["followers"]] == [upper, lower]
    assert collector.published("flights", plain) == []


def test_an_airport_with_more_followers_than_a_message_holds_is_sent_in_parts(collector, flights):
    collector.sql(
        "INSERT INTO user_interests (user_email, airport_code, high_value) "
        "SELECT 'bulk.' || n || '@example.com', 'LIRF', n FROM generate_series(1, 1100) AS n"
    )
    _, interest = follow_and_collect(collector, low_value=1)
    # This test's followers only: the stream also keeps the events of earlier tests.
    ours = {row[0] for row in collector.sql("SELECT id FROM user_interests")}
    events = [
        e
        for e in collector.published("flights")
        if e["airport"] == AIRPORT and {f["interest_id"] for f in e["followers"]} <= ours
    ]
    assert [(e["part"], e["parts"], len(e["followers"])) for e in events] == [
        (1, 2, 1000),
        (2, 2, 101),
    ]
    for event in events:
        expected_event({**event, "part": 1, "parts": 1})
    listed = [f["interest_id"] for e in events for f in e["followers"]]
    assert len(set(listed)) == 1101 and listed == sorted(listed) and interest in listed
    assert len({e["committed_at"] for e in events}) == 1


def test_a_day_partly_collected_is_never_the_window(collector, flights):
    # Today's departures come through; the two past days' departures fail, twice over.
    collector.sim.inject(
        [{"kind": "timeout", "seconds": 0}] + [{"status": 503}] * 8, endpoint="departure"
    )
    email, interest = follow_and_collect(collector, high_value=5)
    # The window's day has its arrivals but not its departures: no window, no event.
    stored = collector.sql(
        "SELECT direction FROM collected_days WHERE day = to_timestamp(%s)::date",
        (window_day(),),
    )
    assert stored == [("arrival",)]
    assert interest_item(collector, email)["alert_window"] is None
    assert collector.published("flights", interest) == []

    # Once the departures are in (their retry), the whole day is the window, sent once.
    wait_until(lambda: interest_item(collector, email)["alert_window"], timeout=CYCLE_TIMEOUT)
    (event,) = collector.published("flights", interest)
    expected_event(event)


def test_a_cycle_that_fails_to_store_publishes_nothing_then_publishes_once(collector, flights):
    # The database refuses every departure mark of LIRF: those ranges' transactions fail whole.
    collector.sql(
        "CREATE FUNCTION refuse_lirf_departures() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN IF NEW.airport_code = 'LIRF' AND NEW.direction = 'departure' THEN "
        "RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$; "
        "CREATE TRIGGER refuse_lirf_departures BEFORE INSERT OR UPDATE ON collected_days "
        "FOR EACH ROW EXECUTE FUNCTION refuse_lirf_departures()"
    )
    try:
        email, interest = follow_and_collect(collector, low_value=10)
        # The departure ranges' flights went with their marks (the arrival ranges stored theirs).
        stored = collector.sql(
            "SELECT count(*) FILTER (WHERE est_departure_airport = 'LIRF'), "
            "count(*) FILTER (WHERE est_arrival_airport = 'LIRF') FROM flight_data"
        )
        assert stored[0][0] == 0 and stored[0][1] > 0
        assert collector.sql("SELECT count(*) FROM alert_windows") == [(0,)]
        assert collector.published("flights", interest) == []
    finally:
        collector.sql(
            "DROP TRIGGER refuse_lirf_departures ON collected_days; "
            "DROP FUNCTION refuse_lirf_departures()"
        )
    wait_until(lambda: interest_item(collector, email)["alert_window"], timeout=CYCLE_TIMEOUT)
    (event,) = collector.published("flights", interest)
    expected_event(event)
    assert event["followers"][0]["low_value"] == 10


def test_thresholds_set_or_changed_send_that_interest_alone(collector, flights):
    first_email, first = follow_and_collect(collector, high_value=5)
    dc = collector.dc
    # A new interest with a threshold, at an airport that has a window: sent at once.
    second_email, second = follow(collector, low_value=8)
    (alone,) = collector.published("flights", second)
    expected_event(alone)
    assert alone["followers"] == [
        {"interest_id": second, "email": second_email, "high_value": None, "low_value": 8}
    ]
    # PUT: a given threshold replaces, one left out is kept, null clears.
    mine = {"email": first_email, "airport_code": "lirf"}
    changed = dc.put("/interests", json={**mine, "low_value": 2})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["high_value"], changed.json()["low_value"]) == (5, 2)
    assert changed.json()["alert_window"]["flights"] == WINDOW_ARRIVALS + WINDOW_DEPARTURES
    cleared = dc.put("/interests", json={**mine, "high_value": None})
    assert (cleared.json()["high_value"], cleared.json()["low_value"]) == (None, 2)
    # The same thresholds again change nothing, and send nothing.
    again = dc.put(
        "/interests", json={"email": first_email, "airport_code": AIRPORT, "low_value": 2}
    )
    assert again.status_code == 200
    events = collector.published("flights", first)
    assert [[(f["high_value"], f["low_value"]) for f in e["followers"]] for e in events] == [
        [(5, None)],
        [(5, 2)],
        [(None, 2)],
    ]
    assert all(e["window"] == alone["window"] for e in events)
    committed = [e["committed_at"] for e in events]
    assert committed == sorted(committed)


def test_every_way_an_interest_is_deleted_sends_its_id_as_removed(collector):
    dc = collector.dc
    email, by_rest = follow(collector)
    assert (
        dc.delete("/interests", json={"email": email, "airport_code": AIRPORT}).status_code == 200
    )
    assert collector.published("removed", by_rest) == [
        {"kind": "removed", "interest_ids": [by_rest]}
    ]
    # A deleted user's interests, through DeleteUserInterests.
    email, on_lirf = follow(collector)
    response = dc.post("/interests", json={"email": email, "airport_code": "LIMC"})
    assert response.status_code == 201
    on_limc = collector.interest_id(email, "LIMC")
    address = f"127.0.0.1:{collector.stack.settings.data_collector_grpc_port}"
    with grpc.insecure_channel(address) as channel:
        stub = flight_tracker_pb2_grpc.DataCollectorServiceStub(channel)
        deleted = stub.DeleteUserInterests(flight_tracker_pb2.UserRequest(email=email), timeout=5)
    assert deleted.deleted_count == 2
    assert collector.published("removed", on_lirf) == [
        {"kind": "removed", "interest_ids": sorted([on_lirf, on_limc])}
    ]
    # Interests of a user deleted behind the collector's back, by reconciliation.
    gone, _kept = orphan_and_kept_user(collector.stack, collector.um, dc)
    orphan = collector.interest_id(gone, AIRPORT)
    assert reconcile_interests(collector.stack)["removed"] >= 1
    assert collector.published("removed", orphan) == [{"kind": "removed", "interest_ids": [orphan]}]
    # A failed DELETE (not followed) sends nothing.
    before = len(collector.published("removed"))
    assert (
        dc.delete("/interests", json={"email": email, "airport_code": AIRPORT}).status_code == 404
    )
    assert len(collector.published("removed")) == before


def report(collector, payload: dict, msg_id: str) -> None:
    """Publish a ``to-data-collector`` report, as the alert services do."""
    collector.broker.publish(Message(TO_DATA_COLLECTOR, msg_id, payload))


def reports_settled(collector) -> bool:
    lag = collector.broker.consumer_lag(stream_of(TO_DATA_COLLECTOR).name, "data_collector")
    return lag is not None and not lag["pending"] and not lag["unacknowledged"]


def test_alert_states_and_receipts_are_shown_the_newest_kept(collector):
    email, interest = follow(collector, high_value=100)
    window = {"start": iso(window_day()), "end": iso(window_day() + DAY)}

    def state(version: int, condition: str, since: str) -> dict:
        return {
            "kind": "alert-state",
            "interest_id": interest,
            "condition": condition,
            "since": since,
            "version": version,
            "value": 120,
            "window": window,
        }

    def emailed(crossing: str, sent_at: str) -> dict:
        return {
            "kind": "emailed",
            "interest_id": interest,
            "crossing_id": crossing,
            "sent_at": sent_at,
        }

    report(collector, state(2, "above", "2026-12-06T10:00:00Z"), f"s:{interest}:2")
    report(collector, emailed("c2", "2026-12-06T10:00:05Z"), f"e:{interest}:2")
    # Late copies of older reports: an older state, an earlier email.
    report(collector, state(1, "below", "2026-12-05T10:00:00Z"), f"s:{interest}:1")
    report(collector, emailed("c1", "2026-12-05T10:00:05Z"), f"e:{interest}:1")
    # Reports about an interest that is gone, and a message that is not a report at all.
    report(collector, emailed("c9", "2026-12-06T11:00:00Z") | {"interest_id": 2**40}, "e:gone")
    parked_before = collector.broker.dead_letters(TO_DATA_COLLECTOR)
    report(collector, {"kind": "alert-state", "interest_id": interest}, f"bad:{interest}")

    def shown():
        state = interest_item(collector, email)["alert_state"]
        return state if state["last_email_at"] and reports_settled(collector) else None

    assert wait_until(shown, timeout=CYCLE_TIMEOUT) == {
        "condition": "above",
        "since": "2026-12-06T10:00:00Z",
        "last_email_at": "2026-12-06T10:00:05Z",
    }
    assert collector.broker.dead_letters(TO_DATA_COLLECTOR) == parked_before + 1
    # A newer state replaces it.
    report(collector, state(3, "inside", isoformat_utc(datetime.now(UTC))), f"s:{interest}:3")
    wait_until(lambda: interest_item(collector, email)["alert_state"]["condition"] == "inside")
