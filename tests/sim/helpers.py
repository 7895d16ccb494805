"""Small helpers shared by the simulator tests: tokens, time windows, flight queries."""

import time

from opensky_sim.simulator import TOKEN_PATH

DAY = 86400
GOOD_FORM = {
    "grant_type": "client_credentials",
    "client_id": "sim-client",
    "client_secret": "sim-secret",
}


def day_start(days_ago):
    """Return midnight UTC ``days_ago`` days before today, as Unix seconds."""
    return (int(time.time()) // DAY - days_ago) * DAY


def token(client, **overrides):
    response = client.post(TOKEN_PATH, data={**GOOD_FORM, **overrides})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["access_token"]


def bearer(access_token):
    return {"Authorization": f"Bearer {access_token}"}


def flights(client, direction, begin, end, airport=None, headers=None):
    params = {"begin": begin, "end": end}
    if airport is not None:
        params["airport"] = airport
    return client.get(f"/api/flights/{direction}", query_string=params, headers=headers)


def ground_truth(client, direction, begin, end, airport=None):
    params = {"direction": direction, "begin": begin, "end": end}
    if airport is not None:
        params["airport"] = airport
    response = client.get("/_sim/flights", query_string=params)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def flight(icao24, first_seen, last_seen, departure, arrival, callsign="TST123  "):
    """Build an OpenSky flight object for loading into a dataset."""
    return {
        "icao24": icao24,
        "firstSeen": first_seen,
        "estDepartureAirport": departure,
        "lastSeen": last_seen,
        "estArrivalAirport": arrival,
        "callsign": callsign,
        "estDepartureAirportHorizDistance": 500,
        "estDepartureAirportVertDistance": 50,
        "estArrivalAirportHorizDistance": 700,
        "estArrivalAirportVertDistance": 60,
        "departureAirportCandidatesCount": 1,
        "arrivalAirportCandidatesCount": 2,
    }
