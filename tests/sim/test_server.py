"""The simulator over real HTTP: in a thread with SimulatorControl, and as a CLI process."""

import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from opensky_sim import Settings, run_in_thread
from opensky_sim.control import SimulatorControl

from .helpers import DAY, day_start, flight

B = day_start(3)


@pytest.fixture(scope="module")
def sim():
    server, base_url = run_in_thread(Settings(token_lifetime=600))
    control = SimulatorControl(base_url)
    yield control
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def fresh(sim):
    sim.reset()


def fetch_token(sim, secret="sim-secret"):
    form = {"grant_type": "client_credentials", "client_id": "sim-client", "client_secret": secret}
    return requests.post(sim.token_url, data=form, timeout=5)


def get(sim, direction, headers=None, **params):
    return requests.get(
        f"{sim.api_url}/flights/{direction}", params=params, headers=headers, timeout=5
    )


def test_control_client_drives_a_collector_like_session(sim):
    access_token = fetch_token(sim).json()["access_token"]
    headers = {"Authorization": f"Bearer {access_token}"}
    sim.inject([{"status": 503}], endpoint="departure")

    failed = get(sim, "departure", headers, airport="LIRF", begin=B, end=B + DAY - 1)
    answered = get(sim, "departure", headers, airport="LIRF", begin=B, end=B + DAY - 1)

    assert failed.status_code == 503
    assert answered.json() == sim.ground_truth("LIRF", B, B + DAY - 1, "departure")
    assert [c["status"] for c in sim.calls()] == [200, 503, 200]
    assert sim.credits()["sim-client"]["used"] == 30
    assert sim.state()["call_count"] == 3


def test_control_client_covers_every_control_call(sim):
    rome_milan = flight("aaa001", B + 3600, B + 7200, "LIRF", "LIMC")
    sim.load_dataset([rome_milan])
    assert sim.ground_truth(None, B, B + 7200, "all") == [rome_milan]
    sim.clear_dataset()
    assert rome_milan not in sim.ground_truth(None, B, B + 7200, "all")

    sim.inject([{"status": 500}, {"kind": "malformed"}])
    assert len(sim.pending_failures()) == 2
    sim.clear_failures()
    assert sim.pending_failures() == []

    access_token = fetch_token(sim).json()["access_token"]
    sim.expire_tokens()
    headers = {"Authorization": f"Bearer {access_token}"}
    assert get(sim, "all", headers, begin=B, end=B + 60).status_code == 401

    sim.set_credits("anonymous", remaining=3)
    assert sim.credits()["anonymous"]["remaining"] == 3
    sim.set_credits("sim-client", limit=100)
    assert sim.credits()["sim-client"]["limit"] == 100

    sim.set_clock_offset(3600)
    assert sim.state()["clock_offset_seconds"] == 3600

    sim.clear_calls()
    assert sim.calls() == []


def test_control_client_raises_on_a_refused_call(sim):
    with pytest.raises(requests.HTTPError):
        sim.load_dataset([{"icao24": "abc123"}])
    with pytest.raises(requests.HTTPError):
        sim.inject([{"kind": "explode"}])


def test_slow_answers_do_not_block_other_clients(sim):
    sim.inject([{"kind": "timeout", "seconds": 3}], endpoint="arrival")

    slow = threading.Thread(
        target=get, args=(sim, "arrival"), kwargs={"airport": "EGLL", "begin": B, "end": B + 60}
    )
    slow.start()
    deadline = time.monotonic() + 5
    while sim.pending_failures() and time.monotonic() < deadline:
        pass  # the slow request is inside the simulator once it took its failure
    assert sim.pending_failures() == []
    assert fetch_token(sim).status_code == 200
    # Answered while the slow request still waits: it did not queue behind it.
    assert slow.is_alive()
    slow.join()


def test_cli_serves_on_a_free_port_and_exits_cleanly_on_sigterm(tmp_path):
    stderr = (tmp_path / "stderr").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "opensky_sim", "--port", "0", "--seed", "7"],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    try:
        line = process.stdout.readline().strip()
        prefix = "OpenSky simulator listening on "
        assert line.startswith(prefix), (tmp_path / "stderr").read_text()
        base_url = line.removeprefix(prefix)
        assert not base_url.endswith(":0")
        sim = SimulatorControl(base_url)

        access_token = fetch_token(sim).json()["access_token"]
        response = get(
            sim,
            "departure",
            {"Authorization": f"Bearer {access_token}"},
            airport="EGLL",
            begin=B,
            end=B + DAY - 1,
        )
        assert response.status_code == 200
        assert response.json()
        assert sim.state()["settings"]["seed"] == 7
        assert fetch_token(sim, secret="wrong").status_code == 401

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stderr.close()
