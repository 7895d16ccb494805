"""HTTP face of the simulator: OpenSky's public endpoints and the test-only control API.

Views only translate between HTTP and ``Simulator``; OpenSky's rules live in
``simulator.py`` and ``world.py``. The control API sits under ``/_sim`` and is
neither authenticated, charged nor recorded in the call log, so tests can
inspect and steer the simulator without disturbing what they measure.
"""

import threading

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.serving import make_server

from opensky_sim.simulator import ANONYMOUS, TOKEN_PATH, Settings, Simulator

control = Blueprint("control", __name__, url_prefix="/_sim")


def create_app(settings=None):
    """Build an app holding one fresh ``Simulator``."""
    app = Flask(__name__)
    app.extensions["opensky_sim"] = Simulator(settings or Settings())
    app.add_url_rule(TOKEN_PATH, view_func=token, methods=["POST"])
    app.add_url_rule("/api/flights/<any(arrival, departure, all):direction>", view_func=flights)
    app.register_blueprint(control)
    return app


def run_in_thread(settings=None, *, host="127.0.0.1", port=0):
    """Serve a new simulator from a daemon thread; return (server, base_url).

    Stop it with ``server.shutdown()``. Port 0 picks a free port.
    """
    server = make_server(host, port, create_app(settings), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_port}"


def _sim():
    return current_app.extensions["opensky_sim"]


def _respond(answer):
    response = current_app.response_class(
        answer.body, status=answer.status, content_type=answer.content_type
    )
    response.headers.update(answer.headers)
    return response


def token():
    """Issue an OAuth2 token for the client-credentials grant."""
    return _respond(_sim().handle_token(request.form.to_dict()))


def flights(direction):
    """Answer a flights query as OpenSky would."""
    answer = _sim().handle_flights(
        direction, request.args.to_dict(), request.headers.get("Authorization")
    )
    return _respond(answer)


# Control interface. Errors are JSON so a failing test shows why.


class ControlError(Exception):
    """A control request that cannot be honoured; becomes a 400 or 404."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


@control.errorhandler(ControlError)
@control.errorhandler(ValueError)
def _control_error(error):
    return jsonify(error=str(error)), getattr(error, "status", 400)


def _json_object():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ControlError("expected a JSON object body")
    return body


def _optional_int(body, name):
    value = body.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ControlError(f"{name} must be an integer")
    return value


@control.post("/reset")
def reset():
    """Return to the synthetic world with nothing injected, used or logged."""
    _sim().reset()
    return jsonify(status="reset")


@control.put("/dataset")
def load_dataset():
    """Replace the world with exactly the given flights."""
    flights = _json_object().get("flights")
    _sim().load_dataset(flights)
    return jsonify(flights=len(flights))


@control.delete("/dataset")
def clear_dataset():
    """Go back to the synthetic world."""
    _sim().clear_dataset()
    return jsonify(status="synthetic")


@control.get("/flights")
def ground_truth():
    """List the flights OpenSky holds for a query, without auth, credits or 404."""
    args = request.args.to_dict()
    return jsonify(_sim().ground_truth(args.pop("direction", None), args))


@control.post("/failures")
def inject_failures():
    """Queue failures for the next matching public requests."""
    body = _json_object()
    pending = _sim().inject(body.get("failures"), body.get("endpoint"))
    return jsonify(pending=pending)


@control.get("/failures")
def pending_failures():
    """List the failures not yet consumed."""
    return jsonify(_sim().pending_failures())


@control.delete("/failures")
def clear_failures():
    """Drop every pending failure."""
    _sim().clear_failures()
    return jsonify(pending=0)


@control.get("/calls")
def calls():
    """Return the log of public calls, oldest first."""
    return jsonify(_sim().call_log())


@control.delete("/calls")
def clear_calls():
    """Empty the call log."""
    _sim().clear_calls()
    return jsonify(calls=0)


@control.post("/tokens/expire")
def expire_tokens():
    """Expire every token issued so far."""
    _sim().expire_tokens()
    return jsonify(status="expired")


@control.get("/credits")
def credits():
    """Show each client's daily limit, usage and balance."""
    return jsonify(_sim().credits())


@control.put("/credits")
def set_credits():
    """Set a client's daily limit and/or today's remaining balance."""
    body = _json_object()
    client = body.get("client", ANONYMOUS)
    limit, remaining = _optional_int(body, "limit"), _optional_int(body, "remaining")
    if limit is None and remaining is None:
        raise ControlError("give limit and/or remaining")
    try:
        _sim().set_credits(client, limit=limit, remaining=remaining)
    except KeyError:
        raise ControlError(f"unknown client: {client}", status=404) from None
    return jsonify(_sim().credits()[client])


@control.put("/clock")
def set_clock():
    """Shift the sim clock by offset_seconds from real time."""
    offset = _json_object().get("offset_seconds")
    if not isinstance(offset, int | float) or isinstance(offset, bool):
        raise ControlError("offset_seconds must be a number")
    _sim().set_clock_offset(offset)
    return jsonify(offset_seconds=offset)


@control.put("/settings")
def change_settings():
    """Change the settings that may change at runtime: all_semantics."""
    body = _json_object()
    if set(body) != {"all_semantics"}:
        raise ControlError("only all_semantics can change at runtime")
    _sim().set_all_semantics(body["all_semantics"])
    return jsonify(_sim().state()["settings"])


@control.get("/state")
def state():
    """Summarise settings, world and queues for debugging."""
    return jsonify(_sim().state())
