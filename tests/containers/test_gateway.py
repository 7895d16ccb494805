"""The compose gateway's nginx configuration, checked without nginx against the services.

Limits, the replicas by name, buffering, forwarded headers and JSON errors.
The configuration is a template the nginx image fills in at start
(``deploy/compose/gateway``); here it is parsed, cross-checked with
docker-compose.yml and the services' settings, and its maps are evaluated
on sample requests. The stack that runs it is checked by ``make test-containers``.
"""

import json
import re
from pathlib import Path

import pytest

from common.observability.request_ids import REQUEST_ID_PATTERN
from tests.containers.deployment import (
    COMPOSE_FILE,
    REPO_ROOT,
    Directive,
    app_services,
    dotenv_entries,
    http_port_variable,
    load_compose,
    parse_nginx,
    required_environment,
    service_environment,
    settings_class,
)

COMPOSE = load_compose()
GATEWAY = COMPOSE["services"]["gateway"]
SERVICES = app_services(COMPOSE)
TEMPLATES = REPO_ROOT / "deploy" / "compose" / "gateway"
TEMPLATE_DIR_IN_IMAGE = "/etc/nginx/templates"
CONF_DIR_IN_IMAGE = "/etc/nginx/conf.d"
TEMPLATE_SUFFIX = ".template"
# Docker's embedded DNS server, inside every container on a user-defined network.
DOCKER_DNS = "127.0.0.11"
# What the services themselves answer with; the gateway's own errors must look the same.
GATEWAY_ERRORS = {400, 404, 405, 413, 429, 502, 503, 504}
# Answers that tell the client when to try again.
RETRY_AFTER = {429: "1", 502: "5", 503: "5"}
# Short enough that 200 slow clients cost only connections for seconds; long enough for a
# real client on a slow link.
MAX_CLIENT_TIMEOUT_SECONDS = 15
UNITS = {"": 1, "k": 1024, "m": 1024 * 1024}


def config() -> Directive:
    return parse_nginx((TEMPLATES / "default.conf.template").read_text())


def rendered(text: str, environment: dict[str, str] | None = None) -> str:
    """Fill in a template's ${NAMES} as the nginx image's entrypoint does (envsubst)."""
    given = service_environment(GATEWAY) if environment is None else environment
    return re.sub(r"\$\{([A-Z][A-Z0-9_]*)\}", lambda m: given.get(m.group(1), m.group(0)), text)


def rendered_config() -> Directive:
    """The configuration nginx reads, with the compose file's defaults filled in."""
    return parse_nginx(rendered((TEMPLATES / "default.conf.template").read_text()))


def included(path: str) -> Directive:
    """The template an ``include`` names (a file the entrypoint writes to conf.d)."""
    name = Path(path).relative_to(CONF_DIR_IN_IMAGE).name + TEMPLATE_SUFFIX
    return parse_nginx((TEMPLATES / name).read_text())


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)?", value)
    number, unit = int(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60}[unit]


def size_in_bytes(value: str) -> int:
    match = re.fullmatch(r"(\d+)([kKmM]?)", value)
    return int(match.group(1)) * UNITS[match.group(2).lower()]


def server_for(package: str) -> Directive:
    port = default_config(package).HTTP_PORT
    (server,) = [s for s in config().all("server") if s.one("listen").args == [str(port)]]
    return server


def default_config(package: str):
    import os
    from unittest import mock

    with mock.patch.dict(os.environ, required_environment(package)):
        return settings_class(package)()


def headers_set(server: Directive) -> dict[str, str]:
    return {d.args[0]: d.args[1] for d in server.all("proxy_set_header")}


def map_of(variable: str) -> Directive:
    (found,) = [m for m in config().all("map") if m.args[1] == variable]
    return found


def evaluate_map(directive: Directive, value: str, variables: dict[str, str]) -> str:
    """Return what an nginx ``map`` gives for ``value``: exact keys, then regexes in order."""
    variables = {**variables, directive.args[0].removeprefix("$"): value}
    entries = [(entry.name, entry.args[0]) for entry in directive.block]
    result = dict(entries).get("default", "")
    exact = {key: out for key, out in entries if not key.startswith("~") and key != "default"}
    captures: dict[str, str] = {}
    if value in exact:
        result = exact[value]
    else:
        for key, out in entries:
            if key.startswith("~"):
                flags = re.IGNORECASE if key.startswith("~*") else 0
                # PCRE's (?<name>...) is Python's (?P<name>...).
                pattern = key.lstrip("~*").replace("(?<", "(?P<")
                match = re.search(pattern, value, flags)
                if match:
                    result, captures = out, match.groupdict()
                    break

    def substitute(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return captures.get(name, variables.get(name, match.group(0)))

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", substitute, result)


def test_the_gateway_runs_the_official_nginx_image_with_the_templates_of_this_repository():
    assert re.fullmatch(r"nginx:\d+\.\d+(\.\d+)?", GATEWAY["image"]), "pin nginx by version"
    assert "build" not in GATEWAY
    mounts = [str(volume).split(":") for volume in GATEWAY["volumes"]]
    assert [(REPO_ROOT / source).resolve() for source, *_ in mounts] == [TEMPLATES]
    assert mounts[0][1:] == [TEMPLATE_DIR_IN_IMAGE, "ro"]
    # default.conf replaces the image's own default server (a "welcome" page on port 80).
    assert (TEMPLATES / "default.conf.template").is_file()
    assert GATEWAY.get("restart") == "unless-stopped"
    # The networks where the services' REST is: never a database's, nor the broker's.
    networks = set(GATEWAY["networks"])
    for name, spec in COMPOSE["services"].items():
        if name not in SERVICES and name != "gateway":
            assert not networks & set(spec["networks"]), f"the gateway would reach {name}"
    for name in SERVICES:
        assert networks & set(COMPOSE["services"][name]["networks"]), f"{name} is out of reach"
    assert set(GATEWAY["depends_on"]) == set(SERVICES)


def test_every_setting_the_templates_read_is_given_to_the_gateway():
    environment = service_environment(GATEWAY)
    for template in TEMPLATES.glob("*" + TEMPLATE_SUFFIX):
        # The image substitutes ${NAME} for the variables it has, and leaves nginx's own
        # (lower-case) alone; an upper-case name it lacks would reach nginx and fail.
        used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", template.read_text()))
        assert used <= set(environment), f"{template.name}: {sorted(used - set(environment))}"
    assert all(name.isupper() for name in environment), "a lower-case name would hit nginx's"
    for package in SERVICES.values():
        assert environment[http_port_variable(package)], "the port published on the host"


@pytest.mark.parametrize(("name", "package"), sorted(SERVICES.items()))
def test_each_service_is_proxied_to_all_its_replicas_by_name_looked_up_again(name, package):
    server = server_for(package)
    location = server.all("location")[0]
    assert location.args == ["/"]
    (assignment,) = location.all("set")
    variable, target = assignment.args
    # A variable in proxy_pass: nginx resolves the name per request, through the resolver,
    # so replicas started or stopped by --scale are found without a restart.
    assert location.one("proxy_pass").args == [f"http://{variable}"]
    assert target == f"{name}:{default_config(package).HTTP_PORT}"
    resolver = config().one("resolver")
    assert resolver.args[0] == DOCKER_DNS
    (valid,) = [arg for arg in resolver.args if arg.startswith("valid=")]
    assert seconds(valid.removeprefix("valid=")) <= 10


# A service that declares no body limit reads no body: the gateway lets a small one through.
NO_BODY_LIMIT = 1024


def body_limit(package: str) -> int:
    """The largest body a service reads (its MAX_CONTENT_LENGTH), or the gateway's own."""
    return getattr(default_config(package), "MAX_CONTENT_LENGTH", None) or NO_BODY_LIMIT


@pytest.mark.parametrize("package", sorted(SERVICES.values()))
def test_body_limit_is_the_services_own_and_refused_as_json(package):
    server = server_for(package)
    limit = size_in_bytes(server.one("client_max_body_size").args[0])
    assert limit == body_limit(package)


def test_requests_and_answers_are_buffered_and_slow_clients_cut_short():
    main = config()
    assert main.one("proxy_request_buffering").args == ["on"]
    assert main.one("proxy_buffering").args == ["on"]
    for timeout in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        assert seconds(main.one(timeout).args[0]) <= MAX_CLIENT_TIMEOUT_SECONDS, timeout
    assert main.one("reset_timedout_connection").args == ["on"]
    # A killed replica is given up fast, and another one tried.
    assert seconds(main.one("proxy_connect_timeout").args[0]) <= 5
    assert "error" in main.one("proxy_next_upstream").args
    assert "non_idempotent" not in main.one("proxy_next_upstream").args, "POST must not repeat"


@pytest.mark.parametrize("package", sorted(SERVICES.values()))
def test_the_gateway_waits_a_little_longer_than_the_service_may_take(package):
    read = seconds(config().one("proxy_read_timeout").args[0])
    service_limit = default_config(package).REQUEST_TIMEOUT_SECONDS
    assert service_limit < read <= service_limit + 10


@pytest.mark.parametrize("package", sorted(SERVICES.values()))
def test_request_id_and_forwarded_headers_reach_the_service(package):
    headers = headers_set(server_for(package))
    assert headers["X-Forwarded-For"] == "$proxy_add_x_forwarded_for"
    assert headers["X-Forwarded-Proto"] == "$scheme"
    request_id = map_of(headers["X-Request-ID"])
    assert request_id.args[0] == "$http_x_request_id"
    given = {"request_id": "generated"}
    assert evaluate_map(request_id, "abc-123", given) == "abc-123"
    assert evaluate_map(request_id, "not an id\r\n", given) == "generated"
    # The services' own rule for a usable id, so both keep the same one.
    assert request_id.block[0].name.removeprefix("~") == REQUEST_ID_PATTERN.pattern


@pytest.mark.parametrize(("name", "package"), sorted(SERVICES.items()))
def test_forwarded_host_is_a_local_name_or_a_fixed_default_never_a_clients_host(name, package):
    headers = headers_set(server_for(package))
    host_map = map_of(headers["X-Forwarded-Host"])
    port_map = map_of(headers["X-Forwarded-Port"])
    assert host_map.args[0] == "$http_host"
    published = "6001"
    variables = {http_port_variable(package): published}
    cases = {
        "localhost:6001": ("localhost:6001", "6001"),
        "127.0.0.1:6001": ("127.0.0.1:6001", "6001"),
        "LocalHost:5001": ("LocalHost:5001", "5001"),
        "localhost": ("localhost", "80"),
        "evil.example.com": (f"127.0.0.1:{published}", published),
        "localhost.evil.example.com:6001": (f"127.0.0.1:{published}", published),
        "localhost:6001@evil.example.com": (f"127.0.0.1:{published}", published),
        "": (f"127.0.0.1:{published}", published),
    }
    for client_host, (host, port) in cases.items():
        forwarded = evaluate_map(host_map, client_host, variables)
        assert forwarded == host, client_host
        assert evaluate_map(port_map, forwarded, variables) == port, client_host
    # The services believe exactly this one proxy's X-Forwarded-* (and nothing before it).
    assert service_environment(COMPOSE["services"][name])["TRUSTED_PROXIES"] == "1"


@pytest.mark.parametrize("package", sorted(SERVICES.values()))
def test_what_nginx_refuses_itself_is_answered_in_the_services_json_shape(package):
    server = server_for(package)
    named = {location.args[-1]: location for location in server.all("location")}
    for include in server.all("include"):
        named.update({loc.args[-1]: loc for loc in included(include.args[0]).all("location")})
    pages = {
        int(code): d.args[-1]
        for d in server.all("error_page")
        for code in d.args[:-1]
        if code != "="
    }
    assert set(pages) >= GATEWAY_ERRORS
    for code, target in pages.items():
        location = named[target]
        if code == 405:
            # Refused by nginx itself (TRACE): handed to the service, whose 405 says Allow.
            assert location.one("proxy_method").args == ["$request_method"]
            assert (
                location.one("proxy_pass").args == server.all("location")[0].one("proxy_pass").args
            )
            continue
        # An internal URI, not a named location: a request nginx could not parse has no URI
        # and cannot be handed to a named location (nginx would answer a 500).
        assert target.startswith("/") and location.all("internal"), target
        assert location.one("default_type").args == ["application/json"], target
        status, body = location.one("return").args
        # 494 (headers too large) is nginx's own name for a 400.
        assert int(status) == (400 if code == 494 else code), target
        assert isinstance(json.loads(body)["error"], str), target
        if code in RETRY_AFTER:
            # As the services' own 429 and 503: when to try again.
            headers = [h.args for h in location.all("add_header")]
            assert ["Retry-After", RETRY_AFTER[code], "always"] in headers, target
    limit = body_limit(package) // 1024
    assert f"{limit} KiB" in named[pages[413]].one("return").args[1]


# --- Requests per client -------------------------------------------------------------------

# Each rate zone and what it counts by: a client (its credential, else its address), an
# address.
ZONES = {"gateway_clients": "$gateway_client", "gateway_addresses": "$binary_remote_addr"}
IN_FLIGHT_ZONE = "gateway_in_flight"
LIMIT_SETTINGS = (
    "GATEWAY_REQUESTS_IN_FLIGHT",
    "GATEWAY_RATE_PER_SECOND",
    "GATEWAY_BURST",
    "GATEWAY_ADDRESS_RATE_PER_SECOND",
    "GATEWAY_ADDRESS_BURST",
)
# The busiest client the defaults must let through: the integration suite through the
# gateway, as make test-containers runs it (3 x 3 replicas on 2 cores): 3,950 requests in
# 158 s, at most 12 in flight, 153 in its busiest second and 926 in its busiest ten.
SUITE_MOST_IN_FLIGHT = 12
SUITE_BUSIEST_SECOND = 153
SUITE_BUSIEST_TEN_SECONDS = 926
# What the limits are there to refuse: one client keeping this many requests in flight.
FLOOD_IN_FLIGHT = 32


def zones() -> dict[str, tuple[str, str]]:
    """Each limit_req_zone of the rendered configuration: its key and its rate."""
    found = {}
    for zone in rendered_config().all("limit_req_zone"):
        key, *options = zone.args
        values = dict(option.split("=", 1) for option in options)
        found[values["zone"].split(":")[0]] = (key, values["rate"])
    return found


def rendered_server(package: str) -> Directive:
    port = str(default_config(package).HTTP_PORT)
    (server,) = [s for s in rendered_config().all("server") if s.one("listen").args == [port]]
    return server


def rate_limits(server: Directive) -> dict[str, dict[str, str]]:
    """The options of each limit_req of a server, by zone."""
    limits = {}
    for directive in server.all("limit_req"):
        options = dict(arg.split("=", 1) if "=" in arg else (arg, "") for arg in directive.args)
        limits[options["zone"]] = options
    return limits


@pytest.mark.parametrize("package", sorted(SERVICES.values()))
def test_every_request_passes_its_clients_and_its_addresses_limits(package):
    main = rendered_config()
    assert {name: key for name, (key, _) in zones().items()} == ZONES
    (in_flight,) = main.all("limit_conn_zone")
    assert in_flight.args[:2] == ["$gateway_client", f"zone={IN_FLIGHT_ZONE}:10m"]
    assert main.one("limit_req_status").args == ["429"]
    assert main.one("limit_conn_status").args == ["429"]
    server = rendered_server(package)
    assert server.one("limit_conn").args[0] == IN_FLIGHT_ZONE
    limits = rate_limits(server)
    assert set(limits) == set(ZONES)
    for options in limits.values():
        # Within its burst a request is answered at once, never queued behind others.
        assert "nodelay" in options and int(options["burst"]) > 0, options
    # Refused as the services refuse: JSON, and when to come back (checked with the others).
    assert ["429", "/.gateway/429"] in [d.args for d in server.all("error_page")]


def test_the_defaults_let_the_busiest_client_through_and_refuse_a_flood():
    server = rendered_server("user_manager")
    in_flight = int(server.one("limit_conn").args[1])
    rate = int(zones()["gateway_clients"][1].removesuffix("r/s"))
    burst = int(rate_limits(server)["gateway_clients"]["burst"])
    # A third more in flight than the suite ever had; half of what a flood keeps.
    assert SUITE_MOST_IN_FLIGHT * 4 / 3 <= in_flight <= FLOOD_IN_FLIGHT / 2
    # Its busiest ten seconds within the rate; its busiest second within rate and burst,
    # with half as much again to spare (a faster machine runs it faster).
    assert rate >= SUITE_BUSIEST_TEN_SECONDS / 10
    assert rate + burst >= SUITE_BUSIEST_SECOND * 1.5
    address_rate = int(zones()["gateway_addresses"][1].removesuffix("r/s"))
    address_burst = int(rate_limits(server)["gateway_addresses"]["burst"])
    # An address carries several clients' allowance (a NAT, or everyone on a compose host).
    assert address_rate >= 2 * rate and address_burst >= 2 * burst


def client_of(headers: dict[str, str], address: str = "\\x0a\\x00\\x00\\x07") -> str:
    """Evaluate the maps that name a request's client, as nginx would for these headers."""
    by_token = evaluate_map(
        map_of("$gateway_client_by_token"),
        headers.get("Authorization", ""),
        {"binary_remote_addr": address},
    )
    return evaluate_map(
        map_of("$gateway_client"),
        headers.get("X-API-Key", ""),
        {"gateway_client_by_token": by_token},
    )


def test_a_client_is_its_api_key_else_its_bearer_token_else_its_address():
    address = client_of({})
    assert address.startswith("address:")
    key = client_of({"X-API-Key": "k" * 43})
    token = client_of({"Authorization": "Bearer " + "t" * 43})
    assert key != token != address and key != address
    # The services read the API key first, and so does the gateway.
    assert client_of({"X-API-Key": "k" * 43, "Authorization": "Bearer x"}) == key
    assert client_of({"Authorization": "bearer  " + "t" * 43}) == token
    assert client_of({"Authorization": "Basic dXNlcjpwdw=="}) == address
    # Two credentials are two clients, from the same address.
    assert client_of({"X-API-Key": "a" * 43}) != client_of({"X-API-Key": "b" * 43})
    # A long credential is kept by its last 64 characters: a JWT's signature.
    header, claims = "eyJhbGciOiJSUzI1NiJ9", "eyJzdWIiOiJ4In0"
    first = client_of({"Authorization": f"Bearer {header}.{claims}.{'s' * 300}"})
    second = client_of({"Authorization": f"Bearer {header}.{claims}.{'s' * 299}z"})
    assert first != second and len(first) <= len("token:") + 64


def test_the_limits_are_settings_documented_in_env_and_the_settings_table():
    environment = service_environment(GATEWAY)
    raw = service_environment(yaml_compose()["services"]["gateway"])
    documented = {entry.name: entry for entry in dotenv_entries()}
    table = (REPO_ROOT / "docs" / "configuration.md").read_text()
    for name in LIMIT_SETTINGS:
        default = re.fullmatch(rf"\$\{{{name}:-(\d+)\}}", raw[name])
        assert default, f"{name}: a pass-through with a default"
        assert int(environment[name]) > 0
        # Commented out in .env, showing the default; in the settings table.
        assert not documented[name].active and documented[name].value == default.group(1)
        assert f"`{name}`" in table, name


def yaml_compose() -> dict:
    import yaml

    return yaml.safe_load(COMPOSE_FILE.read_text())


# --- What the logs may hold ----------------------------------------------------------------

# Variables that carry what a client sent: the request line, its path and query, headers.
CLIENT_TEXT = re.compile(
    r"\$(request|request_uri|uri|document_uri|args|query_string|arg_\w+|http_\w+|"
    r"request_body|cookie_\w+|gateway_client\w*)\b"
)
SAMPLE_EMAIL = "mario.rossi+tag@example.com"


def logged_path(request_uri: str) -> str:
    """Evaluate what the access log writes for the path of a request."""
    args = request_uri.partition("?")[2]
    query = evaluate_map(map_of("$gateway_logged_query"), args, {})
    given = {"gateway_logged_query": query}
    return evaluate_map(map_of("$gateway_logged_path"), request_uri, given)


def test_the_access_log_writes_no_email_query_or_credential():
    (log_format,) = config().all("log_format")
    text = "".join(log_format.args[1:])
    assert not CLIENT_TEXT.search(text), CLIENT_TEXT.search(text).group(0)
    assert "$gateway_logged_path" in text
    assert map_of("$gateway_logged_path").args[0] == "$request_uri"
    encoded = SAMPLE_EMAIL.replace("@", "%40").replace("+", "%2B")
    cases = {
        f"/users/{SAMPLE_EMAIL}": "/users/<email>",
        f"/users/{encoded}": "/users/<email>",
        "/users/weird/local@example.com": "/users/<email>",
        f"/interests/{SAMPLE_EMAIL}": "/interests/<email>",
        f"/flights?email={SAMPLE_EMAIL}&limit=5": "/flights?...",
        "/users?limit=2&cursor=eyJtYXJpby5yb3NzaUBleGFtcGxlLmNvbSJd": "/users?...",
        f"//users/{SAMPLE_EMAIL}": "//users/<email>...",
        f"/unknown/{encoded}/more?x=1": "/unknown/<email>...?...",
        f"/Users/{SAMPLE_EMAIL.upper().replace('@', '%40')}": "/Users/<email>...",
        "/users": "/users",
        "/flights/LIRF": "/flights/LIRF",
        "/ping": "/ping",
        "": "",
    }
    for request_uri, logged in cases.items():
        assert logged_path(request_uri) == logged, request_uri
        assert "mario" not in logged.lower() and "@" not in logged, request_uri


def test_the_access_log_writes_the_method_the_client_sent():
    """An error page is served as a GET: a refused POST must still log as a POST."""
    method = map_of("$gateway_logged_method")
    assert method.args[0] == "$request"
    assert evaluate_map(method, "POST /users HTTP/1.1", {}) == "POST"
    assert evaluate_map(method, "DELETE /users/a@b.c HTTP/1.1", {}) == "DELETE"
    assert evaluate_map(method, "a@b.c /x HTTP/1.1", {}) == "-"
    (log_format,) = config().all("log_format")
    assert '"$gateway_logged_method $gateway_logged_path ' in "".join(log_format.args[1:])


def test_error_log_lines_about_requests_are_written_only_when_critical():
    """The raw request line (path and query) goes with every error nginx logs about one."""
    assert config().one("error_log").args == ["stderr", "crit"]
    for server in config().all("server"):
        assert not server.all("error_log"), "a server's own error log would write them again"
