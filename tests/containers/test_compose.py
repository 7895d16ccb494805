"""docker-compose.yml checked without an engine: schema, health, ports, and the code's settings.

Compose itself cannot run here, so these tests read the file as compose would
(variables substituted from nothing, or from .env) and cross-check it with
the Dockerfiles, the services' configuration and .env. A setting added to a
service's config.py fails here until compose passes it on and .env documents it.
"""

import inspect
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from common.process.supervisor import Supervisor
from tests.containers.deployment import (
    COMPOSE_FILE,
    REPO_ROOT,
    app_services,
    compose_variables,
    dockerfile_instructions,
    dotenv_entries,
    env_reads,
    load_compose,
    read_dotenv,
    reads_by_service,
    service_environment,
    string_constants,
)

COMPOSE = load_compose()
SERVICES = app_services(COMPOSE)
DATABASES = {
    name
    for name, spec in COMPOSE["services"].items()
    if spec.get("image", "").startswith("postgres")
}
# Names that scripts and tools outside the code rely on: a public contract.
EXPECTED_SERVICES = {"user-manager", "user-db", "data-collector", "data-db"}
CONTRACT_HTTP_PORTS = {"user-manager": 5001, "data-collector": 5002}
POSTGRES_PORT = 5432
LOCAL_ADDRESSES = ("localhost", "127.0.0.1", "::1")
# Switches only the test suite's own stack sets (README, "Tests"); operators never see them,
# so neither .env nor compose may carry them.
TEST_ONLY_SETTINGS = {"FAULT_INJECTION_ENABLED"}
# Settings the code reads without a default because unset means "this feature is off";
# compose passes them on (blank unless .env sets them).
OFF_WHEN_UNSET = {
    "GRPC_AUTH_TOKEN": "no gRPC token",
    "GRPC_TLS_CERT": "plaintext gRPC",
    "GRPC_TLS_KEY": "plaintext gRPC",
    "GRPC_TLS_CA": "plaintext gRPC",
}
# check-jsonschema ships the Compose Specification's schema: this works offline.
SCHEMA_CHECK = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]


def default_config(package: str, monkeypatch: pytest.MonkeyPatch):
    """Instantiate a service's Config with nothing set but its (required) database URL."""
    import importlib

    for read in env_reads():
        monkeypatch.delenv(read.name, raising=False)
    monkeypatch.setenv(f"{package.upper()}_DATABASE_URL", "postgresql://u:p@db:5432/d")
    return importlib.import_module(f"{package}.config").Config()


def published_ports(spec: dict) -> list[tuple[int, int]]:
    """Return ``(host port, container port)`` of each short-syntax mapping."""
    mappings = []
    for entry in spec.get("ports", []):
        host_port, container = str(entry).split(":")[-2:]
        mappings.append((int(host_port), int(container.split("/")[0])))
    return mappings


def test_compose_file_validates_against_the_compose_specification(tmp_path: Path):
    interpolated = tmp_path / "docker-compose.interpolated.yml"
    interpolated.write_text(yaml.safe_dump(load_compose(read_dotenv())))
    for path in (COMPOSE_FILE, interpolated):
        result = subprocess.run(
            [*SCHEMA_CHECK, str(path)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_stack_is_the_four_containers_of_the_design():
    assert set(COMPOSE["services"]) == EXPECTED_SERVICES
    assert SERVICES == {"user-manager": "user_manager", "data-collector": "data_collector"}
    for name, package in SERVICES.items():
        build = COMPOSE["services"][name]["build"]
        assert build["context"] == ".", f"{name}: the image needs common/ from the repo root"
        assert (REPO_ROOT / build["dockerfile"]).is_file()
        assert (REPO_ROOT / package / "__main__.py").is_file()


@pytest.mark.parametrize("name", sorted(DATABASES))
def test_databases_are_official_postgres_pinned_by_major_with_pg_isready(name):
    spec = COMPOSE["services"][name]
    match = re.fullmatch(r"postgres:(\d+)(\.\d+)?(-[a-z0-9.]+)?", spec["image"])
    assert match, f"{name}: pin the official postgres image by major version, not {spec['image']}"
    check = spec["healthcheck"]["test"]
    assert check[0] in ("CMD", "CMD-SHELL") and "pg_isready" in " ".join(check)
    env = service_environment(spec)
    assert env["POSTGRES_DB"] and env["POSTGRES_USER"] and env["POSTGRES_PASSWORD"]


@pytest.mark.parametrize("name", sorted(DATABASES))
def test_database_data_lives_in_a_named_volume_where_the_image_keeps_it(name):
    spec = COMPOSE["services"][name]
    major = int(re.match(r"postgres:(\d+)", spec["image"]).group(1))
    # PostgreSQL 18+ images keep data in /var/lib/postgresql/<major>/docker and refuse
    # to start on a volume mounted at the old /var/lib/postgresql/data.
    data_dir = "/var/lib/postgresql" if major >= 18 else "/var/lib/postgresql/data"
    mounts = [str(volume).split(":") for volume in spec.get("volumes", [])]
    named = [source for source, target, *_ in mounts if target == data_dir]
    assert named, f"{name}: mount a volume at {data_dir}"
    assert named[0] in COMPOSE["volumes"], f"{name}: {named[0]} is not a named volume"


def test_every_service_restarts_and_every_dependency_waits_for_a_healthy_database():
    for name, spec in COMPOSE["services"].items():
        assert spec.get("restart") in {"always", "unless-stopped", "on-failure"}, name
        for dependency, condition in spec.get("depends_on", {}).items():
            if dependency in DATABASES:
                assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}"
                assert "healthcheck" in COMPOSE["services"][dependency]
    for name in SERVICES:
        assert set(COMPOSE["services"][name]["depends_on"]) & DATABASES, name


def test_services_run_under_an_init_and_get_time_for_a_graceful_stop():
    supervisor_grace = inspect.signature(Supervisor).parameters["grace_seconds"].default
    for name in SERVICES:
        spec = COMPOSE["services"][name]
        assert spec.get("init") is True, f"{name}: init reaps zombies and forwards SIGTERM"
        grace = spec["stop_grace_period"]
        seconds = int(grace.removesuffix("s"))
        assert seconds > supervisor_grace, f"{name}: docker would SIGKILL a clean shutdown"


def test_only_the_rest_ports_are_published():
    for name, spec in COMPOSE["services"].items():
        mappings = published_ports(spec)
        if name not in SERVICES:
            assert not mappings, f"{name}: a database port must not be published"
            continue
        assert mappings == [(CONTRACT_HTTP_PORTS[name], CONTRACT_HTTP_PORTS[name])], (
            f"{name}: publish its REST port only (no gRPC port on the host)"
        )


@pytest.mark.parametrize(("name", "package"), sorted(SERVICES.items()))
def test_ports_agree_across_config_compose_and_dockerfile(name, package, monkeypatch):
    config = default_config(package, monkeypatch)
    spec = COMPOSE["services"][name]
    env = service_environment(spec)
    instructions = dockerfile_instructions(REPO_ROOT / spec["build"]["dockerfile"])
    exposed = {int(port) for i in instructions if i.keyword == "EXPOSE" for port in i.args.split()}

    assert CONTRACT_HTTP_PORTS[name] == config.HTTP_PORT
    assert env[f"{package.upper()}_HTTP_PORT"] == str(config.HTTP_PORT)
    assert env[f"{package.upper()}_GRPC_PORT"] == str(config.GRPC_PORT)
    assert exposed == {config.HTTP_PORT, config.GRPC_PORT}
    assert [container for _, container in published_ports(spec)] == [config.HTTP_PORT]
    assert env["BIND_HOST"] == "0.0.0.0", "inside a container the service must listen on all"


@pytest.mark.parametrize(("name", "package"), sorted(SERVICES.items()))
def test_grpc_peers_are_reached_by_service_name_on_their_grpc_port(name, package, monkeypatch):
    env = service_environment(COMPOSE["services"][name])
    peers = {var: value for var, value in env.items() if var.endswith("_GRPC_ADDR")}
    assert peers, f"{name} talks to its peer over gRPC"
    for variable, address in peers.items():
        host, _, port = address.rpartition(":")
        assert host in SERVICES, f"{variable}={address}: use the peer's compose service name"
        peer_config = default_config(SERVICES[host], monkeypatch)
        assert int(port) == peer_config.GRPC_PORT, f"{variable}: not the peer's gRPC port"
        peer_env = service_environment(COMPOSE["services"][host])
        assert peer_env[f"{SERVICES[host].upper()}_GRPC_PORT"] == port


@pytest.mark.parametrize(("name", "package"), sorted(SERVICES.items()))
def test_database_url_points_at_the_service_own_database(name, package):
    spec = COMPOSE["services"][name]
    for env_source in ({}, read_dotenv(), {"POSTGRES_USER": "alice", "POSTGRES_PASSWORD": "pw1"}):
        compose = load_compose(env_source)
        env = service_environment(compose["services"][name])
        url = urlsplit(env[f"{package.upper()}_DATABASE_URL"])
        database = compose["services"][url.hostname]
        db_env = service_environment(database)
        assert url.hostname in spec["depends_on"], f"{name} must wait for {url.hostname}"
        assert url.port == POSTGRES_PORT
        assert url.path == "/" + db_env["POSTGRES_DB"]
        assert url.username == db_env["POSTGRES_USER"]
        assert url.password == db_env["POSTGRES_PASSWORD"]


@pytest.mark.parametrize(("name", "package"), sorted(SERVICES.items()))
def test_every_setting_a_service_reads_is_set_or_defaulted_and_reaches_the_container(name, package):
    reads = reads_by_service(package)
    env = service_environment(COMPOSE["services"][name])
    documented = {entry.name for entry in dotenv_entries()}
    assert not TEST_ONLY_SETTINGS & (documented | set(env)), "a test-only switch is exposed"
    for variable, calls in sorted(reads.items()):
        where = ", ".join(call.location for call in calls)
        if not all(call.has_default for call in calls) and variable not in OFF_WHEN_UNSET:
            assert env.get(variable), f"{name}: {variable} is required ({where}); set it in compose"
        assert variable in env or all(call.has_default for call in calls), variable
        if variable in documented:
            assert variable in env, (
                f"{name} reads {variable} ({where}) and .env documents it, but compose does not "
                f"pass it on: add `{variable}: ${{{variable}:-}}` to {name}'s environment"
            )


@pytest.mark.parametrize(("name", "package"), sorted(SERVICES.items()))
def test_a_default_written_in_compose_is_the_code_default(name, package):
    """A pass-through may repeat a default (gunicorn's WEB_CONCURRENCY), never change it."""
    raw = service_environment(yaml.safe_load(COMPOSE_FILE.read_text())["services"][name])
    reads = reads_by_service(package)
    for variable, value in raw.items():
        match = re.fullmatch(r"\$\{(\w+):-([^}]*)\}", value)
        if match and match.group(1) == variable and match.group(2):
            defaults = {str(call.default) for call in reads[variable]}
            assert defaults == {match.group(2)}, f"{name}: {variable} defaults differ"


@pytest.mark.parametrize(("name", "package"), sorted(SERVICES.items()))
def test_no_local_address_default_survives_in_a_container(name, package):
    """A default like localhost:50052 is right for make run and wrong inside a container."""
    env = service_environment(COMPOSE["services"][name])
    for variable, calls in reads_by_service(package).items():
        defaults = [str(call.default) for call in calls if call.has_default]
        if any(address in default for default in defaults for address in LOCAL_ADDRESSES):
            assert env.get(variable), f"{name}: set {variable} in compose (default {defaults})"


@pytest.mark.parametrize(("name", "package"), sorted(SERVICES.items()))
def test_compose_sets_only_settings_the_service_reads(name, package):
    reads = reads_by_service(package)
    for variable in service_environment(COMPOSE["services"][name]):
        assert variable in reads, f"{name}: compose sets {variable}, which the code never reads"


def test_env_file_documents_every_setting_and_nothing_else():
    entries = dotenv_entries()
    names = [entry.name for entry in entries]
    assert len(names) == len(set(names)), "a variable appears twice in .env"
    for entry in entries:
        assert entry.documented, f".env: explain {entry.name} in a comment"

    read_by_services = {read.name for read in env_reads()}
    missing = read_by_services - set(names) - TEST_ONLY_SETTINGS
    assert not missing, f".env must document every setting the services read: {sorted(missing)}"
    used = read_by_services | compose_variables() | string_constants("devstack")
    unused = set(names) - used
    assert not unused, f".env documents settings nothing reads: {sorted(unused)}"


def test_env_file_keeps_the_seed_placeholders_and_no_other_active_value():
    # Uncommented values are read by make run too, so only these (valid for both) are active.
    assert read_dotenv() == {
        "OPENSKY_CLIENT_ID": "your_api_client_id",
        "OPENSKY_CLIENT_SECRET": "your_api_client_secret",
    }


def test_compose_runs_with_nothing_set_and_with_the_env_file():
    for env_source in ({}, read_dotenv()):
        compose = load_compose(env_source)
        for name in SERVICES:
            assert published_ports(compose["services"][name])
