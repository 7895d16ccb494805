"""Client for the simulator's ``/_sim`` control API, for tests to import.

Each method is one control call and raises ``requests.HTTPError`` on a non-2xx
answer, so a test that mis-configures the simulator fails at the line that did
it rather than later with confusing data.
"""

import requests

from opensky_sim.simulator import ANONYMOUS, TOKEN_PATH

# Control calls are local and instant; a hang means the simulator is stuck.
TIMEOUT_SECONDS = 10


class SimulatorControl:
    """Steer and inspect a running simulator at ``base_url`` (e.g. http://127.0.0.1:9000)."""

    def __init__(self, base_url):
        self.base_url = base_url.rstrip("/")
        self.api_url = self.base_url + "/api"
        self.token_url = self.base_url + TOKEN_PATH
        self._session = requests.Session()

    def _call(self, method, path, **kwargs):
        response = self._session.request(
            method, f"{self.base_url}/_sim{path}", timeout=TIMEOUT_SECONDS, **kwargs
        )
        response.raise_for_status()
        return response.json()

    def reset(self):
        """Back to the synthetic world with no failures, calls, tokens, usage or offset."""
        return self._call("POST", "/reset")

    def load_dataset(self, flights):
        """Make the world exactly ``flights`` (OpenSky flight objects)."""
        return self._call("PUT", "/dataset", json={"flights": flights})

    def clear_dataset(self):
        """Go back to the synthetic world."""
        return self._call("DELETE", "/dataset")

    def ground_truth(self, airport, begin, end, direction):
        """Return the flights OpenSky holds for a query; airport is ignored for "all"."""
        params = {"begin": begin, "end": end, "direction": direction}
        if airport is not None:
            params["airport"] = airport
        return self._call("GET", "/flights", params=params)

    def inject(self, failures, endpoint=None):
        """Queue failures for the next requests to ``endpoint`` (None: any flights endpoint).

        A failure with ``for_seconds`` answers every such request for that long.
        """
        return self._call("POST", "/failures", json={"failures": failures, "endpoint": endpoint})

    def pending_failures(self):
        """List the failures not yet consumed, in firing order."""
        return self._call("GET", "/failures")

    def clear_failures(self):
        """Drop every pending failure."""
        return self._call("DELETE", "/failures")

    def calls(self):
        """Return the log of public calls, oldest first."""
        return self._call("GET", "/calls")

    def clear_calls(self):
        """Empty the call log."""
        return self._call("DELETE", "/calls")

    def expire_tokens(self):
        """Expire every token issued so far; its next use gets a 401."""
        return self._call("POST", "/tokens/expire")

    def credits(self):
        """Return ``{client: {"limit", "used", "remaining"}}``."""
        return self._call("GET", "/credits")

    def set_credits(self, client=ANONYMOUS, *, remaining=None, limit=None):
        """Set a client's daily limit and/or today's remaining balance."""
        body = {"client": client}
        if remaining is not None:
            body["remaining"] = remaining
        if limit is not None:
            body["limit"] = limit
        return self._call("PUT", "/credits", json=body)

    def set_clock_offset(self, seconds):
        """Shift the simulator's "now" by ``seconds`` from real time."""
        return self._call("PUT", "/clock", json={"offset_seconds": seconds})

    def set_all_semantics(self, semantics):
        """Make ``/flights/all`` return flights first seen in the window or only those inside it."""
        return self._call("PUT", "/settings", json={"all_semantics": semantics})

    def state(self):
        """Return the simulator's summary (settings, dataset, queues)."""
        return self._call("GET", "/state")
