"""The load generator's pacing: a paced background load is a steady stream, not a flood.

It runs wrk against a small local HTTP server, so it needs wrk installed
(``make bench`` installs it); without wrk it skips.
"""

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench import loadgen

pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (make bench installs it)"
)


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: without this, each answer waits for a delayed ACK.
    disable_nagle_algorithm = True

    def do_GET(self):
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


@pytest.fixture
def server_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _requests(url: str, pause_ms: int | None) -> int:
    load = loadgen.Background(
        url, "airport_path", args=["/x/%s", "LIRF"], connections=1, seconds=2, pause_ms=pause_ms
    )
    with load:
        pass
    assert load.result.errors == 0
    return load.result.requests


def test_a_paced_connection_waits_between_its_requests(server_url):
    # One connection pausing 100 ms: about 10 requests a second, however fast the server.
    assert _requests(server_url, pause_ms=100) <= 25


def test_an_unpaced_connection_sends_as_fast_as_the_server_answers(server_url):
    assert _requests(server_url, pause_ms=None) > 100
