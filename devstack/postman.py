"""Write the Postman collection and environment in ``postman/`` (``make postman``).

The collection (v2.1) walks through every endpoint of the User Manager, the
Data Collector and the SLA breach detector in an order that tells a story: a
new user, the four idempotency scenarios for creating it (a first request,
the same request with the same key, a new key for a user that exists, no
key), its interests (with thresholds) and the flights collected for them,
then the same four scenarios for deleting it; last the SLA detector's
configuration and breaches. Every request carries
``pm.test`` assertions on status and body, so the same file is a manual
walkthrough in Postman and an automated test with newman
(tests/integration/test_postman.py runs it against the suite's stack).

The first request draws a fresh email, tax code and idempotency keys, so the
collection can run again and again against the same stack. The scenarios
that need a repeated key use those per-run keys (``{{create_key}}``,
``{{delete_key}}``); the others send Postman's ``{{$guid}}``.

The JSON files are generated from this module rather than edited by hand:
scripts read better as Python lists than as JSON-escaped lines, and a test
fails when the committed files are older than this module.
"""

import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
POSTMAN_DIR = REPO_ROOT / "postman"
COLLECTION_FILE = POSTMAN_DIR / "flight-tracker.postman_collection.json"
ENVIRONMENT_FILE = POSTMAN_DIR / "local.postman_environment.json"
SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
BASE_URLS = {
    "um_url": "http://localhost:5001",
    "dc_url": "http://localhost:5002",
    "sla_url": "http://localhost:5006",
}
SLA_FOLDER = "SLA breach detector"

DESCRIPTION = (
    "Every endpoint of the User Manager ({{um_url}}), the Data Collector ({{dc_url}}) and the "
    "SLA breach detector ({{sla_url}}), in order: a new user, the four idempotency scenarios "
    "for creating it (a first request, the same one with the same key, a new key, no key), "
    "its interests with thresholds and flights, then the four scenarios for deleting it, and "
    "the SLA detector's configuration and breaches, read but never changed. Run the whole "
    "collection (Run collection, or `newman run`): each run uses a fresh email, tax code and "
    "keys. Start the stack first: `make run OPENSKY_SIMULATOR=1` (see README)."
)
JSON_HEADER = {"key": "Content-Type", "value": "application/json"}
# A fixed IBAN is fine (it need not be unique); the tax code must be, so it is drawn per run.
USER_BODY = {
    "email": "{{email}}",
    "first_name": "Mario",
    "last_name": "Rossi",
    "tax_code": "{{tax_code}}",
    "iban": "IT60X0542811101000000123456",
}
INTEREST_BODY = {"email": "{{email}}", "airport_code": "LIRF"}
THRESHOLDS_BODY = {
    "email": "{{email}}",
    "airport_code": "LIMC",
    "high_value": 1200,
    "low_value": 300,
}

START_RUN = [
    "// A fresh user and fresh keys for every run, so the collection can run again",
    "// against the same stack (emails and tax codes are unique).",
    'const id = pm.variables.replaceIn("{{$guid}}").replace(/-/g, "");',
    'pm.collectionVariables.set("email", `postman.${id.slice(0, 16)}@example.com`);',
    'pm.collectionVariables.set("second_email", `postman.${id.slice(16)}@example.com`);',
    'pm.collectionVariables.set("tax_code", `PM${id.slice(0, 14).toUpperCase()}`);',
    'pm.collectionVariables.set("create_key", pm.variables.replaceIn("{{$guid}}"));',
    'pm.collectionVariables.set("delete_key", pm.variables.replaceIn("{{$guid}}"));',
]
EVERY_RESPONSE = [
    "// Runs after every request of the collection.",
    'pm.test("the answer carries its request id (X-Request-ID)", () => {',
    '    pm.response.to.have.header("X-Request-ID");',
    "});",
]


def status(code: int) -> list[str]:
    """Assert the status code."""
    return [f'pm.test("status is {code}", () => pm.response.to.have.status({code}));']


def error_says(fragment: str) -> list[str]:
    """Assert an error body (the one error shape) whose sentence contains ``fragment``."""
    return [
        'pm.test("the error says why", () => {',
        f"    pm.expect(pm.response.json().error).to.include({json.dumps(fragment)});",
        "});",
    ]


def not_replayed() -> list[str]:
    """Assert a first answer, not a replay."""
    return [
        'pm.test("a first answer, not a replay", () => {',
        '    pm.response.to.not.have.header("Idempotent-Replayed");',
        "});",
    ]


def replay_of(variable: str) -> list[str]:
    """Assert a replay whose body equals the answer stored in ``variable``."""
    return [
        'pm.test("the stored answer, replayed (Idempotent-Replayed: true)", () => {',
        '    pm.expect(pm.response.headers.get("Idempotent-Replayed")).to.eql("true");',
        f'    pm.expect(pm.response.json()).to.eql(JSON.parse(pm.collectionVariables.get("{variable}")));',
        "});",
    ]


def request(
    name: str,
    method: str,
    base: str,
    path: str,
    *,
    tests: list[str],
    description: str = "",
    query: dict[str, str] | None = None,
    headers: list[dict[str, str]] | None = None,
    body: dict[str, Any] | None = None,
    prerequest: list[str] | None = None,
) -> dict[str, Any]:
    """Return one collection item: a request with its tests (and pre-request script)."""
    url: dict[str, Any] = {
        "raw": f"{{{{{base}}}}}{path}",
        "host": [f"{{{{{base}}}}}"],
        "path": [part for part in path.split("/") if part],
    }
    if query:
        url["raw"] += "?" + "&".join(f"{key}={value}" for key, value in query.items())
        url["query"] = [{"key": key, "value": value} for key, value in query.items()]
    item_request: dict[str, Any] = {"method": method, "header": list(headers or []), "url": url}
    if description:
        item_request["description"] = description
    if body is not None:
        item_request["header"].append(JSON_HEADER)
        item_request["body"] = {
            "mode": "raw",
            "raw": json.dumps(body, indent=2),
            "options": {"raw": {"language": "json"}},
        }
    events = []
    if prerequest:
        events.append(script("prerequest", prerequest))
    events.append(script("test", tests))
    return {"name": name, "event": events, "request": item_request}


def script(listen: str, lines: list[str]) -> dict[str, Any]:
    """Return a Postman event running ``lines`` of JavaScript."""
    return {"listen": listen, "script": {"type": "text/javascript", "exec": lines}}


def folder(name: str, description: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Return a folder of items."""
    return {"name": name, "description": description, "item": items}


def key(value: str) -> list[dict[str, str]]:
    """Return the Idempotency-Key header."""
    return [{"key": "Idempotency-Key", "value": value}]


def probes() -> dict[str, Any]:
    """Return liveness, readiness, metrics and the API documents of both services."""
    items = []
    for label, base, facts in (
        ("User Manager", "um_url", "outbox"),
        ("Data Collector", "dc_url", "opensky"),
    ):
        items += [
            request(
                f"{label}: liveness",
                "GET",
                base,
                "/ping",
                tests=[
                    *status(200),
                    'pm.test("pong", () => pm.expect(pm.response.json().message).to.eql("pong"));',
                ],
                prerequest=START_RUN if base == "um_url" else None,
            ),
            request(
                f"{label}: readiness",
                "GET",
                base,
                "/health",
                tests=[
                    *status(200),
                    'pm.test("database ok, peer reported", () => {',
                    "    const health = pm.response.json();",
                    '    pm.expect(health.database).to.eql("ok");',
                    '    pm.expect(["ok", "degraded"]).to.include(health.status);',
                    '    pm.expect(health.peer).to.have.property("status");',
                    f'    pm.expect(health).to.have.property("{facts}");',
                    "});",
                ],
            ),
            request(
                f"{label}: OpenAPI document",
                "GET",
                base,
                "/openapi.json",
                description="The same document as an interactive page: /docs/ in a browser.",
                tests=[
                    *status(200),
                    'pm.test("OpenAPI 3.1", () => pm.expect(pm.response.json().openapi).to.match(/^3\\.1/));',
                ],
            ),
            request(
                f"{label}: Prometheus metrics",
                "GET",
                base,
                "/metrics",
                tests=[
                    *status(200),
                    'pm.test("request counters", () => pm.expect(pm.response.text()).to.include("http_requests_total"));',
                ],
            ),
        ]
    return folder(
        "Probes and documents", "Liveness, readiness, metrics and the OpenAPI documents.", items
    )


def create_user_scenarios() -> dict[str, Any]:
    """Return the four idempotency scenarios of POST /users, and a key reused for another body."""
    return folder(
        "Create a user: idempotency scenarios",
        "Run in order: scenario 2 repeats scenario 1's key ({{create_key}}).",
        [
            request(
                "Scenario 1: first request creates the user (201)",
                "POST",
                "um_url",
                "/users",
                headers=key("{{create_key}}"),
                body=USER_BODY,
                tests=[
                    *status(201),
                    *not_replayed(),
                    'pm.test("the user as stored (email lower-cased, IBAN compact)", () => {',
                    "    const user = pm.response.json().user;",
                    '    pm.expect(user.email).to.eql(pm.collectionVariables.get("email"));',
                    '    pm.expect(user.iban).to.eql("IT60X0542811101000000123456");',
                    "    pm.expect(user.created_at).to.match(/Z$/);",
                    "});",
                    'pm.collectionVariables.set("created_answer", pm.response.text());',
                ],
            ),
            request(
                "Scenario 2: same request, same key: the stored answer again (201)",
                "POST",
                "um_url",
                "/users",
                headers=key("{{create_key}}"),
                body=USER_BODY,
                tests=[*status(201), *replay_of("created_answer")],
            ),
            request(
                "Scenario 3: the user exists, new key (409)",
                "POST",
                "um_url",
                "/users",
                headers=key("{{$guid}}"),
                body=USER_BODY,
                tests=[*status(409), *error_says("already exists")],
            ),
            request(
                "Scenario 4: no Idempotency-Key (400)",
                "POST",
                "um_url",
                "/users",
                body=USER_BODY,
                tests=[*status(400), *error_says("Idempotency-Key")],
            ),
            request(
                "Same key, different body (422)",
                "POST",
                "um_url",
                "/users",
                headers=key("{{create_key}}"),
                body={**USER_BODY, "first_name": "Luigi"},
                tests=[*status(422), *error_says("different request")],
            ),
            request(
                "Invalid fields are named (400)",
                "POST",
                "um_url",
                "/users",
                headers=key("{{$guid}}"),
                body={
                    "email": "not-an-email",
                    "first_name": "",
                    "last_name": "Rossi",
                    "iban": "IT00",
                },
                tests=[
                    *status(400),
                    'pm.test("details name each invalid field", () => {',
                    '    pm.expect(pm.response.json().details).to.have.all.keys("email", "first_name", "iban");',
                    "});",
                ],
            ),
        ],
    )


def read_users() -> dict[str, Any]:
    """Return GET /users and GET /users/{email}."""
    return folder(
        "Read users",
        "One user, and the list one page at a time (next page in the Link header).",
        [
            request(
                "Read the user (200)",
                "GET",
                "um_url",
                "/users/{{email}}",
                tests=[
                    *status(200),
                    'pm.test("the user", () => {',
                    "    const user = pm.response.json();",
                    '    pm.expect(user.email).to.eql(pm.collectionVariables.get("email"));',
                    '    pm.expect(user.tax_code).to.eql(pm.collectionVariables.get("tax_code"));',
                    "});",
                ],
            ),
            request(
                "Create a second user, so that the list has two pages (201)",
                "POST",
                "um_url",
                "/users",
                headers=key("{{$guid}}"),
                body={"email": "{{second_email}}", "first_name": "Luigi", "last_name": "Verdi"},
                tests=[*status(201)],
            ),
            request(
                "List users, one per page (200, Link: rel=next)",
                "GET",
                "um_url",
                "/users",
                query={"limit": "1"},
                tests=[
                    *status(200),
                    'pm.test("a page of at most one user, with the next page\'s URL", () => {',
                    '    pm.expect(pm.response.json()).to.be.an("array").with.lengthOf(1);',
                    '    pm.expect(pm.response.headers.get("Link")).to.match(/^<http.*cursor=.*>; rel="next"$/);',
                    "});",
                ],
            ),
            request(
                "Unknown user (404)",
                "GET",
                "um_url",
                "/users/nobody.{{$guid}}@example.com",
                tests=[*status(404), *error_says("not found")],
            ),
        ],
    )


def interests() -> dict[str, Any]:
    """Return POST, GET, PUT (thresholds) and DELETE of interests."""
    return folder(
        "Interests",
        "The Data Collector asks the User Manager (gRPC) whether the user exists.",
        [
            request(
                "Follow an airport (201)",
                "POST",
                "dc_url",
                "/interests",
                body=INTEREST_BODY,
                tests=[
                    *status(201),
                    'pm.test("collection starts", () => pm.expect(pm.response.json().message).to.include("initiated"));',
                ],
            ),
            request(
                "Follow it again: nothing changes (200)",
                "POST",
                "dc_url",
                "/interests",
                body=INTEREST_BODY,
                tests=[
                    *status(200),
                    'pm.test("already there", () => pm.expect(pm.response.json().message).to.include("already"));',
                ],
            ),
            request(
                "The user's airports (200)",
                "GET",
                "dc_url",
                "/interests/{{email}}",
                tests=[
                    *status(200),
                    'pm.test("LIRF, with its name", () => {',
                    "    const [interest] = pm.response.json();",
                    '    pm.expect(interest.airport_code).to.eql("LIRF");',
                    '    pm.expect(interest.airport_name).to.include("Fiumicino");',
                    "});",
                    'pm.test("says whether its collection waits for credits", () => {',
                    "    const [interest] = pm.response.json();",
                    '    pm.expect(interest).to.have.property("collection_waits_for_credits_until");',
                    "});",
                    'pm.test("no thresholds; the alert window and state", () => {',
                    "    const [interest] = pm.response.json();",
                    "    pm.expect(interest.high_value).to.eql(null);",
                    "    pm.expect(interest.low_value).to.eql(null);",
                    '    pm.expect(interest).to.have.property("alert_window");',
                    '    pm.expect(interest.alert_state).to.have.keys("condition", "since", "last_email_at");',
                    "});",
                ],
            ),
            request(
                "Follow another airport with thresholds (201)",
                "POST",
                "dc_url",
                "/interests",
                description="An email when the airport's flights over its alert window (a whole "
                "UTC day, `alert_window.flights` in GET /interests/{email}) go above `high_value` "
                "or under `low_value`.",
                body=THRESHOLDS_BODY,
                tests=[*status(201)],
            ),
            request(
                "Thresholds the wrong way round (400)",
                "POST",
                "dc_url",
                "/interests",
                body={**THRESHOLDS_BODY, "airport_code": "EGLL", "high_value": 10, "low_value": 20},
                tests=[
                    *status(400),
                    'pm.test("names both thresholds", () => {',
                    '    pm.expect(pm.response.json().details).to.have.keys("high_value", "low_value");',
                    "});",
                ],
            ),
            request(
                "Change the upper threshold, keep the lower (200)",
                "PUT",
                "dc_url",
                "/interests",
                description="A threshold given replaces the stored one, `null` clears it, one "
                "left out is kept.",
                body={"email": "{{email}}", "airport_code": "LIMC", "high_value": 1500},
                tests=[
                    *status(200),
                    'pm.test("the new upper threshold, the lower one kept", () => {',
                    "    pm.expect(pm.response.json().high_value).to.eql(1500);",
                    "    pm.expect(pm.response.json().low_value).to.eql(300);",
                    "});",
                ],
            ),
            request(
                "Clear the lower threshold (200)",
                "PUT",
                "dc_url",
                "/interests",
                body={"email": "{{email}}", "airport_code": "LIMC", "low_value": None},
                tests=[
                    *status(200),
                    'pm.test("cleared", () => pm.expect(pm.response.json().low_value).to.eql(null));',
                ],
            ),
            request(
                "Thresholds of an airport not followed (404)",
                "PUT",
                "dc_url",
                "/interests",
                body={"email": "{{email}}", "airport_code": "EGLL", "high_value": 100},
                tests=[*status(404), *error_says("not found")],
            ),
            request(
                "Stop following the airport with thresholds (200)",
                "DELETE",
                "dc_url",
                "/interests",
                body={"email": "{{email}}", "airport_code": "LIMC"},
                tests=[*status(200)],
            ),
            request(
                "Unknown airport code (400)",
                "POST",
                "dc_url",
                "/interests",
                body={"email": "{{email}}", "airport_code": "ZZZZ"},
                tests=[
                    *status(400),
                    'pm.test("names the field", () => pm.expect(pm.response.json().details).to.have.property("airport_code"));',
                ],
            ),
            request(
                "Unknown user (404)",
                "POST",
                "dc_url",
                "/interests",
                body={"email": "nobody.{{$guid}}@example.com", "airport_code": "LIRF"},
                tests=[*status(404), *error_says("User not found")],
            ),
            request(
                "Stop following (200)",
                "DELETE",
                "dc_url",
                "/interests",
                body=INTEREST_BODY,
                tests=[*status(200)],
            ),
            request(
                "Stop following again (404)",
                "DELETE",
                "dc_url",
                "/interests",
                body=INTEREST_BODY,
                tests=[*status(404), *error_says("not found")],
            ),
            request(
                "Follow it once more, for the delete scenarios (201)",
                "POST",
                "dc_url",
                "/interests",
                body=INTEREST_BODY,
                tests=[*status(201)],
            ),
        ],
    )


def flights() -> dict[str, Any]:
    """Return the flight queries and the collection trigger."""
    flight_or_none = [
        'pm.test("the most recent flight, or none stored yet", () => {',
        "    pm.expect([200, 404]).to.include(pm.response.code);",
        "    if (pm.response.code === 200) {",
        '        pm.expect(pm.response.json()).to.include.keys("icao24", "first_seen", "last_seen", "type");',
        "    }",
        "});",
    ]
    return folder(
        "Flights",
        "Flights appear once the collector's worker has fetched them (seconds with the "
        "simulator; OpenSky may take longer).",
        [
            request(
                "Ask for a collection cycle now (202; 429 within a minute of the last)",
                "POST",
                "dc_url",
                "/collection/runs",
                tests=[
                    'pm.test("asked for, or told when to ask again", () => {',
                    "    pm.expect(pm.response.code).to.be.oneOf([202, 429]);",
                    "    if (pm.response.code === 429) {",
                    '        pm.expect(Number(pm.response.headers.get("Retry-After"))).to.be.within(1, 60);',
                    "    }",
                    "});",
                ],
            ),
            request(
                "Arrivals at LIRF, newest first (200)",
                "GET",
                "dc_url",
                "/flights/LIRF",
                query={"type": "arrivals", "limit": "5"},
                tests=[
                    *status(200),
                    'pm.test("at most 5 arrivals at LIRF", () => {',
                    "    const flights = pm.response.json();",
                    "    pm.expect(flights.length).to.be.at.most(5);",
                    '    flights.forEach((f) => { pm.expect(f.type).to.eql("arrival"); pm.expect(f.est_arrival_airport).to.eql("LIRF"); });',
                    "});",
                ],
            ),
            request(
                "The flights at every airport the user follows (200)",
                "GET",
                "dc_url",
                "/flights",
                query={"email": "{{email}}", "limit": "5"},
                description="One list for all the user's airports, newest first; each item "
                "says which airport it belongs to and whether it arrives there or leaves.",
                tests=[
                    *status(200),
                    'pm.test("at most 5 flights, each at LIRF (the one airport followed)", () => {',
                    "    const flights = pm.response.json();",
                    "    pm.expect(flights.length).to.be.at.most(5);",
                    "    flights.forEach((f) => {",
                    '        pm.expect(f.airport).to.eql("LIRF");',
                    '        const at = f.type === "arrival" ? f.est_arrival_airport : f.est_departure_airport;',
                    '        pm.expect(at).to.eql("LIRF");',
                    "    });",
                    "});",
                    'pm.test("newest first", () => {',
                    '    const times = pm.response.json().map((f) => (f.type === "arrival" ? f.last_seen : f.first_seen));',
                    "    pm.expect(times).to.eql([...times].sort().reverse());",
                    "});",
                ],
            ),
            request(
                "The flights of an unknown user (404)",
                "GET",
                "dc_url",
                "/flights",
                query={"email": "nobody.{{$guid}}@example.com"},
                tests=[*status(404), *error_says("User not found")],
            ),
            request(
                "Every stored flight, a page of two (200)",
                "GET",
                "dc_url",
                "/flights",
                query={"limit": "2"},
                tests=[
                    *status(200),
                    'pm.test("at most two flights, each with its airport and role there", () => {',
                    "    const flights = pm.response.json();",
                    "    pm.expect(flights.length).to.be.at.most(2);",
                    '    flights.forEach((f) => pm.expect(["arrival", "departure"]).to.include(f.type));',
                    '    flights.forEach((f) => pm.expect(f.airport).to.be.a("string"));',
                    '    if (pm.response.headers.has("Link")) {',
                    '        pm.expect(pm.response.headers.get("Link")).to.match(/^<http.*cursor=.*>; rel="next"$/);',
                    "    }",
                    "});",
                ],
            ),
            request(
                "Last departure from LIRF (200, or 404 before the first collection)",
                "GET",
                "dc_url",
                "/flights/last/LIRF",
                query={"type": "departures"},
                tests=flight_or_none,
            ),
            request(
                "Average flights per day over the last 7 days (200)",
                "GET",
                "dc_url",
                "/flights/average/LIRF",
                query={"days": "7"},
                description="The window is the last 7 times 24 hours up to the last collection; "
                "each direction counts its flights in the collected part of it and divides "
                "by that part, in days.",
                tests=[
                    *status(200),
                    "const average = pm.response.json();",
                    'pm.test("a window of 7 x 24 hours, and how much of it was collected", () => {',
                    "    const window = average.window;",
                    "    pm.expect(Date.parse(window.to) - Date.parse(window.from)).to.eql(7 * 86400 * 1000);",
                    '    pm.expect(["last collection", "now"]).to.include(window.ends_at);',
                    "    pm.expect(average.days_requested).to.eql(7);",
                    "    pm.expect(average.days_covered).to.be.within(0, 7);",
                    "    pm.expect(average.coverage).to.be.within(0, 1);",
                    "});",
                    'pm.test("per direction: flights counted, days covered, flights per day", () => {',
                    "    let total = 0;",
                    "    for (const direction of [average.arrivals, average.departures]) {",
                    '        pm.expect(direction).to.have.all.keys("flights", "days_covered", "per_day");',
                    "        if (direction.days_covered > 0) {",
                    "            pm.expect(direction.per_day).to.be.closeTo(direction.flights / direction.days_covered, 0.01);",
                    "            total += direction.per_day;",
                    "        } else {",
                    "            pm.expect(direction.per_day).to.eql(null);",
                    "        }",
                    "    }",
                    "    if (average.average_flights_per_day !== null) {",
                    "        pm.expect(average.average_flights_per_day).to.be.closeTo(total, 0.011);",
                    "    }",
                    "});",
                    'pm.collectionVariables.set("average_from", average.window.from);',
                    'pm.collectionVariables.set("average_to", average.window.to);',
                ],
            ),
            request(
                "Departures in the average's window: the ones it counts (200)",
                "GET",
                "dc_url",
                "/flights/LIRF",
                query={
                    "type": "departures",
                    "since": "{{average_from}}",
                    "until": "{{average_to}}",
                    "limit": "1000",
                },
                description="`since` is inclusive and `until` exclusive, like the average's "
                "window: these are the departures it counted (unless part of the window was "
                "never collected).",
                tests=[
                    *status(200),
                    'pm.test("every departure lies in the window", () => {',
                    '    const from = Date.parse(pm.collectionVariables.get("average_from"));',
                    '    const to = Date.parse(pm.collectionVariables.get("average_to"));',
                    "    pm.response.json().forEach((f) => {",
                    '        pm.expect(f.type).to.eql("departure");',
                    "        pm.expect(Date.parse(f.first_seen)).to.be.within(from, to - 1);",
                    "    });",
                    "});",
                ],
            ),
            request(
                "A bad type (400)",
                "GET",
                "dc_url",
                "/flights/LIRF",
                query={"type": "landings"},
                tests=[*status(400), *error_says("type")],
            ),
        ],
    )


def delete_user_scenarios() -> dict[str, Any]:
    """Return the same four idempotency scenarios applied to DELETE /users/{email}."""
    return folder(
        "Delete the user: idempotency scenarios",
        "Run in order: scenario 2 repeats scenario 1's key ({{delete_key}}).",
        [
            request(
                "Scenario 1: first request deletes the user and their interests (200)",
                "DELETE",
                "um_url",
                "/users/{{email}}",
                headers=key("{{delete_key}}"),
                tests=[
                    *status(200),
                    *not_replayed(),
                    'pm.collectionVariables.set("deleted_answer", pm.response.text());',
                ],
            ),
            request(
                "The interests went with the user (200, empty)",
                "GET",
                "dc_url",
                "/interests/{{email}}",
                tests=[
                    *status(200),
                    'pm.test("no interest left", () => pm.expect(pm.response.json()).to.eql([]));',
                ],
            ),
            request(
                "Scenario 2: same request, same key: the stored answer again (200)",
                "DELETE",
                "um_url",
                "/users/{{email}}",
                headers=key("{{delete_key}}"),
                tests=[*status(200), *replay_of("deleted_answer")],
            ),
            request(
                "Scenario 3: the user is gone, new key (404)",
                "DELETE",
                "um_url",
                "/users/{{email}}",
                headers=key("{{$guid}}"),
                tests=[*status(404), *error_says("not found")],
            ),
            request(
                "Scenario 4: no Idempotency-Key (400)",
                "DELETE",
                "um_url",
                "/users/{{email}}",
                tests=[*status(400), *error_says("Idempotency-Key")],
            ),
            request(
                "Clean up: delete the second user (200)",
                "DELETE",
                "um_url",
                "/users/{{second_email}}",
                headers=key("{{$guid}}"),
                tests=[*status(200)],
            ),
        ],
    )


def sla_detector() -> dict[str, Any]:
    """Return the SLA detector's configuration and breaches: read, and refused changes only.

    A valid ``PUT /sla/config`` would replace the configuration of the stack the
    collection runs against (and from then on the detector ignores
    ``SLA_CONFIG_FILE``), so the collection sends only documents the detector
    refuses, which change nothing; the descriptions show a valid one.
    """
    valid = (
        'A valid document: {"metrics": [{"name": "credits-left", "query": '
        '"max(opensky_credits_remaining)", "min": 50}]}. Each query is asked of Prometheus '
        "first (503 when it does not answer); the document is kept across restarts."
    )
    return folder(
        SLA_FOLDER,
        "The metrics the detector watches through Prometheus, and the breaches it raised "
        "(scope `ops` with AUTH_MODE=on). Nothing here changes the configuration.",
        [
            request(
                "SLA detector: readiness",
                "GET",
                "sla_url",
                "/health",
                tests=[
                    *status(200),
                    'pm.test("database ok, the checks reported", () => {',
                    "    const health = pm.response.json();",
                    '    pm.expect(health.database).to.eql("ok");',
                    '    pm.expect(["ok", "degraded"]).to.include(health.status);',
                    '    pm.expect(health).to.have.property("sla");',
                    "});",
                ],
            ),
            request(
                "SLA detector: liveness",
                "GET",
                "sla_url",
                "/ping",
                tests=[
                    *status(200),
                    'pm.test("pong", () => pm.expect(pm.response.json().message).to.eql("pong"));',
                ],
            ),
            request(
                "SLA detector: OpenAPI document",
                "GET",
                "sla_url",
                "/openapi.json",
                tests=[
                    *status(200),
                    'pm.test("OpenAPI 3.1", () => pm.expect(pm.response.json().openapi).to.match(/^3\\.1/));',
                ],
            ),
            request(
                "SLA detector: Prometheus metrics",
                "GET",
                "sla_url",
                "/metrics",
                tests=[
                    *status(200),
                    'pm.test("SLA gauges", () => pm.expect(pm.response.text()).to.include("sla_check_interval_seconds"));',
                ],
            ),
            request(
                "The configuration in force (200)",
                "GET",
                "sla_url",
                "/sla/config",
                description="The metrics watched (name, PromQL query, min, max) and T_check "
                "(`check_seconds`): `SLA_CONFIG_FILE`'s until one is put.",
                tests=[
                    *status(200),
                    'pm.test("metrics and T_check", () => {',
                    "    const config = pm.response.json();",
                    '    pm.expect(config.metrics).to.be.an("array");',
                    '    pm.expect(config.check_seconds).to.be.a("number");',
                    "});",
                ],
            ),
            request(
                "Refuse min above max (400)",
                "PUT",
                "sla_url",
                "/sla/config",
                description=valid,
                body={
                    "metrics": [
                        {
                            "name": "credits-left",
                            "query": "max(opensky_credits_remaining)",
                            "min": 4000,
                            "max": 50,
                        }
                    ]
                },
                tests=[
                    *status(400),
                    'pm.test("names the metric", () => {',
                    '    pm.expect(pm.response.json().details).to.have.property("metrics.0");',
                    "});",
                ],
            ),
            request(
                "Refuse a T_check shorter than five scrapes (400)",
                "PUT",
                "sla_url",
                "/sla/config",
                description="`check_seconds` must be at least 5 x PROMETHEUS_SCRAPE_SECONDS, so "
                "that each check sees new scrapes. " + valid,
                body={"metrics": [], "check_seconds": 1},
                tests=[
                    *status(400),
                    'pm.test("names check_seconds and the scrape interval", () => {',
                    "    const details = pm.response.json().details;",
                    '    pm.expect(details.check_seconds).to.include("PROMETHEUS_SCRAPE_SECONDS");',
                    "});",
                ],
            ),
            request(
                "The breaches (200)",
                "GET",
                "sla_url",
                "/sla/breaches",
                description="Per metric: how many breaches since the detector first ran, and "
                "the last one (its values, the limit violated, the counts below and above).",
                tests=[
                    *status(200),
                    'pm.test("since when, and each metric", () => {',
                    "    const breaches = pm.response.json();",
                    '    pm.expect(breaches.since).to.be.a("string");',
                    '    pm.expect(breaches.metrics).to.be.an("array");',
                    "});",
                ],
            ),
        ],
    )


def collection() -> dict[str, Any]:
    """Return the whole collection."""
    return {
        "info": {
            "name": "Flight Tracker",
            "description": DESCRIPTION,
            "schema": SCHEMA,
        },
        "event": [script("test", EVERY_RESPONSE)],
        "variable": [
            {"key": name, "value": ""}
            for name in (
                "email",
                "second_email",
                "tax_code",
                "create_key",
                "delete_key",
                "created_answer",
                "deleted_answer",
                "average_from",
                "average_to",
            )
        ],
        "item": [
            probes(),
            create_user_scenarios(),
            read_users(),
            interests(),
            flights(),
            delete_user_scenarios(),
            sla_detector(),
        ],
    }


def environment() -> dict[str, Any]:
    """Return the environment of the local stack (``make run``, docker compose)."""
    return {
        "name": "Flight Tracker (local)",
        "values": [
            {"key": key, "value": value, "type": "default", "enabled": True}
            for key, value in BASE_URLS.items()
        ],
    }


def render(document: dict[str, Any]) -> str:
    """Return a file's text: two-space indented JSON, as Postman writes it."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    """Write both files."""
    COLLECTION_FILE.write_text(render(collection()))
    ENVIRONMENT_FILE.write_text(render(environment()))
    print(
        f"wrote {COLLECTION_FILE.relative_to(REPO_ROOT)} and {ENVIRONMENT_FILE.relative_to(REPO_ROOT)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
