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
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from common.observability import MULTIPROC_DIR_VARIABLE
from common.observability.metrics import NODE_NAME_VARIABLE
from common.process.supervisor import Supervisor
from devstack.__main__ import RunSettings
from tests.containers.deployment import (
    COMPOSE_FILE,
    GRPC_SETTINGS,
    REPO_ROOT,
    app_services,
    compose_variables,
    dotenv_entries,
    env_reads,
    http_port_variable,
    load_compose,
    migration_services,
    names_this_machine,
    read_dotenv,
    reads_by_service,
    required_environment,
    service_environment,
    settings_class,
    speaks_grpc,
    string_constants,
)

COMPOSE = load_compose(read_dotenv())
SETTINGS_TABLE = (REPO_ROOT / "docs" / "configuration.md").read_text()
INIT_SCRIPT = REPO_ROOT / "deploy" / "kubernetes" / "overlays" / "local" / "postgres-init.sh"
# What the init script reads from the database container's environment.
INIT_SCRIPT_SETTINGS = (
    "APP_DATABASE",
    "OWNER_ROLE",
    "OWNER_PASSWORD",
    "SERVING_ROLE",
    "SERVING_PASSWORD",
)
SERVICES = app_services(COMPOSE)
MIGRATIONS = migration_services(COMPOSE)
DATABASES = {
    name
    for name, spec in COMPOSE["services"].items()
    if spec.get("image", "").startswith("postgres")
}
# Names that scripts and tools outside the code rely on: a public contract.
GATEWAY = "gateway"
BROKER = "nats"
MAIL_CATCHER = "mail-catcher"
PROMETHEUS = "prometheus"
EXPECTED_SERVICES = {
    "user-manager-migrate",
    "user-manager",
    "user-db",
    "data-collector-migrate",
    "data-collector",
    "data-db",
    "alert-system-migrate",
    "alert-system",
    "alert-db",
    "alert-notifier-migrate",
    "alert-notifier",
    "notifier-db",
    "sla-detector-migrate",
    "sla-detector",
    "sla-db",
    BROKER,
    MAIL_CATCHER,
    GATEWAY,
    PROMETHEUS,
}
CONTRACT_HTTP_PORTS = {
    "user-manager": 5001,
    "data-collector": 5002,
    "alert-system": 5004,
    "alert-notifier": 5005,
    "sla-detector": 5006,
}
# Where the mail catcher shows what it caught (make run's port too): this machine only.
MAIL_CATCHER_PAGE_PORT = 8025
# How a peer is named in *_GRPC_ADDR: the client resolves every replica behind the name.
DNS_SCHEME = "dns:///"
POSTGRES_PORT = 5432
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
    "SMTP_USERNAME": "no SMTP login",
    "SMTP_PASSWORD": "no SMTP login",
}
# Defaults of compose's own, where the stack has something the code cannot assume: the
# notifier mails through the stack's mail catcher unless .env names a mail server (as make
# run starts a catcher when SMTP_HOST is unset).
# The SLA detector watches the shipped SLA file (mounted there) unless .env names another.
# Every container's metrics name the one machine compose runs on, not the container.
COMPOSE_DEFAULTS = {
    "SMTP_HOST": MAIL_CATCHER,
    "SLA_CONFIG_FILE": "/etc/flight-tracker/sla.yml",
    "NODE_NAME": "docker-host",
}
# Read by prometheus_client, the launcher and the metrics' labels, not through the services'
# settings classes; compose fixes the first so that the health check finds the worker's
# heartbeats, and names the machine for the second.
READ_OUTSIDE_CONFIG = {MULTIPROC_DIR_VARIABLE, NODE_NAME_VARIABLE}
# check-jsonschema ships the Compose Specification's schema: this works offline.
SCHEMA_CHECK = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]


def default_config(package: str, monkeypatch: pytest.MonkeyPatch):
    """Instantiate a service's settings with nothing set but what it requires (its database)."""
    for read in env_reads():
        monkeypatch.delenv(read.name, raising=False)
    for variable, value in required_environment(package).items():
        monkeypatch.setenv(variable, value)
    return settings_class(package)()


def published_addresses(spec: dict) -> list[str]:
    """Return the host address of each short-syntax mapping (none given: every interface)."""
    parts = [str(entry).split(":") for entry in spec.get("ports", [])]
    return [entry[-3] if len(entry) >= 3 else "0.0.0.0" for entry in parts]


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


def test_the_stack_is_the_services_of_the_design_each_with_its_migration_step():
    assert set(COMPOSE["services"]) == EXPECTED_SERVICES
    assert SERVICES == {
        "user-manager": "user_manager",
        "data-collector": "data_collector",
        "alert-system": "alert_system",
        "alert-notifier": "alert_notifier",
        "sla-detector": "sla_detector",
    }
    expected = {f"{name}-migrate": package for name, package in SERVICES.items()}
    assert expected == MIGRATIONS
    for name, package in {**SERVICES, **MIGRATIONS}.items():
        build = COMPOSE["services"][name]["build"]
        assert build["context"] == ".", f"{name}: the image needs common/ from the repo root"
        assert (REPO_ROOT / build["dockerfile"]).is_file()
        assert (REPO_ROOT / package / "__main__.py").is_file()


@pytest.mark.parametrize(("name", "package"), sorted(SERVICES.items()))
def test_serving_containers_start_once_their_migrations_succeeded(name, package):
    """The schema is the new one before any replica serves, and a failed migration stops it."""
    migration = f"{name}-migrate"
    spec = COMPOSE["services"][name]
    assert spec["depends_on"][migration] == {"condition": "service_completed_successfully"}
    assert COMPOSE["services"][migration]["command"] == ["python", "-m", package, "migrate"]
    # Run once per `up` and left stopped: restarted in a loop, a failed migration would
    # keep the serving containers waiting without saying why.
    assert COMPOSE["services"][migration]["restart"] == "no"


@pytest.mark.parametrize("name", sorted(DATABASES))
def test_databases_are_official_postgres_pinned_by_major_with_pg_isready(name):
    spec = COMPOSE["services"][name]
    match = re.fullmatch(r"postgres:(\d+)(\.\d+)?(-[a-z0-9.]+)?", spec["image"])
    assert match, f"{name}: pin the official postgres image by major version, not {spec['image']}"
    check = spec["healthcheck"]["test"]
    assert check[0] in ("CMD", "CMD-SHELL") and "pg_isready" in " ".join(check)
    env = service_environment(spec)
    for variable in ("POSTGRES_USER", "POSTGRES_PASSWORD", *INIT_SCRIPT_SETTINGS):
        assert env.get(variable), f"{name}: {variable} is not set"


@pytest.mark.parametrize("name", sorted(DATABASES))
def test_each_database_runs_the_init_script_that_creates_its_two_roles(name):
    """The Kubernetes overlay's script: the same roles, names and privileges everywhere."""
    spec = COMPOSE["services"][name]
    mounts = [str(volume).split(":") for volume in spec.get("volumes", [])]
    scripts = [m for m in mounts if m[1].startswith("/docker-entrypoint-initdb.d/")]
    assert len(scripts) == 1, f"{name}: mount the init script"
    source, target, *options = scripts[0]
    assert (REPO_ROOT / source).resolve() == INIT_SCRIPT and options == ["ro"]
    assert target.endswith(".sh")
    # Executable: the official image then runs it rather than sourcing it into its own shell.
    assert INIT_SCRIPT.stat().st_mode & 0o111
    # Each setting as itself or as its file (<NAME>_FILE, as Kubernetes gives passwords).
    used = {
        name.removesuffix("_FILE")
        for name in re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", INIT_SCRIPT.read_text())
    }
    assert used <= set(service_environment(spec)), f"{name}: the script reads {sorted(used)}"


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
        if name in MIGRATIONS:
            continue
        assert spec.get("restart") in {"always", "unless-stopped", "on-failure"}, name
        for dependency, condition in spec.get("depends_on", {}).items():
            if dependency in DATABASES:
                assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}"
                assert "healthcheck" in COMPOSE["services"][dependency]
    for name in [*SERVICES, *MIGRATIONS]:
        assert set(COMPOSE["services"][name]["depends_on"]) & DATABASES, name


def test_services_run_under_an_init_and_get_time_for_a_graceful_stop():
    supervisor_grace = inspect.signature(Supervisor).parameters["grace_seconds"].default
    for name in SERVICES:
        spec = COMPOSE["services"][name]
        assert spec.get("init") is True, f"{name}: init reaps zombies and forwards SIGTERM"
        grace = spec["stop_grace_period"]
        seconds = int(grace.removesuffix("s"))
        assert seconds > supervisor_grace, f"{name}: docker would SIGKILL a clean shutdown"


def test_only_the_gateway_publishes_and_only_the_rest_ports_on_loopback_unless_asked():
    for name, spec in COMPOSE["services"].items():
        if name not in (GATEWAY, MAIL_CATCHER, PROMETHEUS):
            # A published port would stop `--scale`: every replica would claim it.
            assert not published_ports(spec), f"{name}: publish nothing; the gateway does"
    gateway = COMPOSE["services"][GATEWAY]
    rest_ports = len(CONTRACT_HTTP_PORTS)
    assert sorted(published_ports(gateway)) == sorted(
        (port, port) for port in CONTRACT_HTTP_PORTS.values()
    ), "the gateway publishes the REST ports only (no gRPC port on the host)"
    assert published_addresses(gateway) == ["127.0.0.1"] * rest_ports, "publish on loopback"
    opened = load_compose({**read_dotenv(), "PUBLISH_HOST": "0.0.0.0"})
    assert published_addresses(opened["services"][GATEWAY]) == ["0.0.0.0"] * rest_ports
    moved_ports = {name: 6000 + n for n, name in enumerate(SERVICES.values())}
    moved = load_compose(
        {
            **read_dotenv(),
            **{http_port_variable(package): str(port) for package, port in moved_ports.items()},
        }
    )
    assert sorted(published_ports(moved["services"][GATEWAY])) == sorted(
        (moved_ports[SERVICES[name]], port) for name, port in CONTRACT_HTTP_PORTS.items()
    )
    documented = {entry.name for entry in dotenv_entries()}
    assert "PUBLISH_HOST" in documented and "`PUBLISH_HOST`" in SETTINGS_TABLE


def test_the_mail_catcher_shows_its_page_on_this_machine_only():
    """Its page lists users' addresses: on loopback whatever PUBLISH_HOST opens, and no SMTP."""
    for env in (read_dotenv(), {**read_dotenv(), "PUBLISH_HOST": "0.0.0.0"}):
        catcher = load_compose(env)["services"][MAIL_CATCHER]
        assert published_addresses(catcher) == ["127.0.0.1"]
        assert published_ports(catcher) == [(MAIL_CATCHER_PAGE_PORT, MAIL_CATCHER_PAGE_PORT)]
    moved = load_compose({**read_dotenv(), "MAIL_CATCHER_HTTP_PORT": "6025"})
    assert published_ports(moved["services"][MAIL_CATCHER]) == [(6025, MAIL_CATCHER_PAGE_PORT)]
    catcher = COMPOSE["services"][MAIL_CATCHER]
    assert "MAIL_CATCHER_HTTP_PORT" in {entry.name for entry in dotenv_entries()}
    # The notifier mails it by its service name on SMTP's own port (its SMTP_PORT default).
    command = catcher["command"]
    smtp_port = int(command[command.index("--smtp-port") + 1])
    assert smtp_port == settings_class("alert_notifier").model_fields["SMTP_PORT"].default
    assert int(command[command.index("--http-port") + 1]) == MAIL_CATCHER_PAGE_PORT
    # Binding a port under 1024 without a capability: allowed in its network namespace.
    assert int(catcher["sysctls"]["net.ipv4.ip_unprivileged_port_start"]) <= smtp_port
    notifier = service_environment(COMPOSE["services"]["alert-notifier"])
    assert notifier["SMTP_HOST"] == MAIL_CATCHER and not notifier["SMTP_PORT"]
    assert set(catcher["networks"]) <= set(COMPOSE["services"]["alert-notifier"]["networks"])
    # A real mail server in .env replaces it.
    real = load_compose({**read_dotenv(), "SMTP_HOST": "smtp.example.com"})
    assert service_environment(real["services"]["alert-notifier"])["SMTP_HOST"] == (
        "smtp.example.com"
    )


def mebibytes(size: str) -> float:
    """Return a compose size (``512m``, ``1g``, ``1536m``) in MiB."""
    number, unit = re.fullmatch(r"(\d+)([kmg])?b?", str(size).lower()).groups()
    return int(number) * {"k": 1 / 1024, "m": 1, "g": 1024, None: 1 / 1024 / 1024}[unit]


def tmpfs_mounts(spec: dict) -> dict[str, dict[str, str]]:
    """Map each tmpfs mount point of a service to its options (``size=64m`` -> size: 64m)."""
    mounts = {}
    for entry in spec.get("tmpfs", []):
        path, _, options = str(entry).partition(":")
        mounts[path] = dict(option.partition("=")[::2] for option in options.split(",") if option)
    return mounts


def test_every_container_is_locked_down_and_has_a_memory_limit():
    """As the Kubernetes manifests: read-only root, no capability, no setuid, a memory bound."""
    for name, spec in COMPOSE["services"].items():
        assert spec.get("read_only") is True, f"{name}: a read-only root filesystem"
        assert spec.get("cap_drop") == ["ALL"], f"{name}: drop every capability"
        assert "no-new-privileges:true" in spec.get("security_opt", []), name
        assert mebibytes(spec["mem_limit"]) >= 128, f"{name}: a memory limit"
        # Where it must write, in memory: sized, as it counts against that limit.
        mounts = tmpfs_mounts(spec)
        assert "/tmp" in mounts, f"{name}: a writable /tmp"
        for path, options in mounts.items():
            assert mebibytes(options["size"]) <= mebibytes(spec["mem_limit"]) / 4, (name, path)
    given_back = {name: set(spec.get("cap_add", [])) for name, spec in COMPOSE["services"].items()}
    # nginx's master switches to its workers' user and gives them its temporary directories.
    assert {name: caps for name, caps in given_back.items() if caps} == {
        GATEWAY: {"CHOWN", "SETGID", "SETUID"}
    }
    for database in DATABASES:
        # The image's postgres user from the start: no capability needed to switch to it.
        assert COMPOSE["services"][database]["user"] == "999:999", database


def test_no_mount_lies_inside_a_read_only_mount():
    """Its mount point cannot be made there: the container would not start."""
    for name, spec in COMPOSE["services"].items():
        volumes = [v.split(":") for v in spec.get("volumes", []) if isinstance(v, str)]
        read_only = [parts[1] for parts in volumes if parts[2:] == ["ro"]]
        for parts in volumes:
            target = parts[1]
            for outer in read_only:
                assert not target.startswith(outer.rstrip("/") + "/"), (name, target, outer)


def test_each_database_is_on_a_network_only_its_service_joins():
    networks = COMPOSE["networks"]
    joined = {name: set(spec.get("networks", [])) for name, spec in COMPOSE["services"].items()}
    for name in COMPOSE["services"]:
        assert joined[name], f"{name}: name its networks (the default one joins everything)"
    for database in DATABASES:
        (network,) = joined[database]
        members = {name for name, nets in joined.items() if network in nets}
        users = {
            name
            for name, spec in COMPOSE["services"].items()
            if database in spec.get("depends_on", {})
        }
        # The service and its migration step, nothing else.
        (service,) = users & set(SERVICES)
        assert members == {database, *users} == {database, service, f"{service}-migrate"}, (
            f"{network}: {members}"
        )
        assert (networks[network] or {}).get("internal") is True, f"{network}: no way out"
    # The services that speak gRPC reach each other's (and the collector reaches OpenSky).
    grpc = [name for name, package in SERVICES.items() if speaks_grpc(package)]
    shared = set.intersection(*(joined[name] for name in grpc))
    assert shared and not any((networks[n] or {}).get("internal") for n in shared)


def networks_of(name: str) -> set[str]:
    return set(COMPOSE["services"][name].get("networks", []))


def members(network: str) -> set[str]:
    return {name for name in COMPOSE["services"] if network in networks_of(name)}


def test_only_the_services_that_publish_or_consume_reach_the_broker():
    broker = COMPOSE["services"][BROKER]
    (network,) = networks_of(BROKER)
    assert (COMPOSE["networks"][network] or {}).get("internal") is True
    talkers = {"data-collector", "alert-system", "alert-notifier", "sla-detector"}
    assert members(network) == {BROKER, *talkers}
    for name in talkers:
        env = service_environment(COMPOSE["services"][name])
        assert env["NATS_URL"] == f"nats://{BROKER}:4222", name
        assert COMPOSE["services"][name]["depends_on"][BROKER] == {"condition": "service_healthy"}
    # JetStream on, its store on a named volume: a restart keeps the streams.
    command = broker["command"]
    assert "--jetstream" in command
    store = command[command.index("--store_dir") + 1]
    mounts = [str(volume).split(":") for volume in broker["volumes"]]
    assert [source for source, target, *_ in mounts if target == store] == ["nats-data"]
    assert "nats-data" in COMPOSE["volumes"]
    assert re.fullmatch(r"nats:\d+\.\d+(\.\d+)?(-alpine)?", broker["image"]), broker["image"]
    assert "healthz" in " ".join(broker["healthcheck"]["test"])


def test_the_alert_services_reach_the_broker_their_database_and_the_gateway_only():
    """No gRPC for them, so no way to the other services: and the notifier the mail server."""
    rest = members("alerts")
    assert rest == {GATEWAY, "alert-system", "alert-notifier", "sla-detector"}
    assert COMPOSE["networks"]["alerts"].get("internal") is True
    assert networks_of("alert-system") == {
        *{"alerts", "broker", "alert-db", "monitoring-alert-system"}
    }
    assert networks_of("alert-notifier") == {
        *{"alerts", "broker", "notifier-db", "mail", "monitoring-alert-notifier"}
    }
    assert networks_of("sla-detector") == {
        *{"alerts", "broker", "sla-db", "monitoring-sla-detector"}
    }
    # The way to a real mail server: a network with a way out, shared with the catcher only.
    assert members("mail") == {"alert-notifier", MAIL_CATCHER}
    assert not (COMPOSE["networks"]["mail"] or {}).get("internal")
    for name in ("alert-system", "alert-notifier", "sla-detector"):
        assert "services" not in networks_of(name), f"{name} would reach the gRPC servers"


@pytest.mark.parametrize(("name", "package"), sorted(SERVICES.items()))
def test_ports_agree_across_config_and_compose(name, package, monkeypatch):
    config = default_config(package, monkeypatch)
    spec = COMPOSE["services"][name]
    env = service_environment(spec)

    assert CONTRACT_HTTP_PORTS[name] == config.HTTP_PORT
    assert env[http_port_variable(package)] == str(config.HTTP_PORT)
    if config.GRPC_PORT is None:
        assert f"{package.upper()}_GRPC_PORT" not in env, f"{name} serves no gRPC"
    else:
        assert env[f"{package.upper()}_GRPC_PORT"] == str(config.GRPC_PORT)
    # The gateway publishes the service's port as its own (tests/containers/test_gateway.py
    # checks that it proxies it to the service's).
    gateway_ports = [container for _, container in published_ports(COMPOSE["services"][GATEWAY])]
    assert config.HTTP_PORT in gateway_ports
    assert env["BIND_HOST"] == "0.0.0.0", "inside a container the service must listen on all"


@pytest.mark.parametrize(("name", "package"), sorted(SERVICES.items()))
def test_grpc_peers_are_reached_by_service_name_on_their_grpc_port(name, package, monkeypatch):
    env = service_environment(COMPOSE["services"][name])
    peers = {var: value for var, value in env.items() if var.endswith("_GRPC_ADDR")}
    if not speaks_grpc(package):
        # No gRPC server, no peer: nothing of gRPC, and never the token.
        assert not peers and not GRPC_SETTINGS & set(env), f"{name}: {sorted(env)}"
        return
    assert peers, f"{name} talks to its peer over gRPC"
    for variable, address in peers.items():
        assert address.startswith(DNS_SCHEME), f"{variable}={address}: dns:/// finds every replica"
        host, _, port = address.removeprefix(DNS_SCHEME).rpartition(":")
        assert host in SERVICES, f"{variable}={address}: use the peer's compose service name"
        peer_config = default_config(SERVICES[host], monkeypatch)
        assert int(port) == peer_config.GRPC_PORT, f"{variable}: not the peer's gRPC port"
        peer_env = service_environment(COMPOSE["services"][host])
        assert peer_env[f"{SERVICES[host].upper()}_GRPC_PORT"] == port


DATABASE_PASSWORD = re.compile(r"^(?P<db>[A-Z]+_DB)_(POSTGRES|OWNER|SERVING)_PASSWORD$")


def role_passwords() -> dict[str, str]:
    """A distinct password for every role of every database (none of them a placeholder)."""
    return {
        variable: f"pw-{variable.lower()}"
        for variable in compose_variables()
        if DATABASE_PASSWORD.match(variable)
    }


@pytest.mark.parametrize(("name", "package"), sorted(SERVICES.items()))
def test_a_service_serves_as_its_serving_role_and_migrates_as_its_owner(name, package):
    for env_source in (read_dotenv(), role_passwords()):
        compose = load_compose(env_source)
        env = service_environment(compose["services"][name])
        migration_env = service_environment(compose["services"][f"{name}-migrate"])
        serving = urlsplit(env[f"{package.upper()}_DATABASE_URL"])
        owner = urlsplit(migration_env[f"{package.upper()}_MIGRATION_DATABASE_URL"])
        database = compose["services"][serving.hostname]
        db_env = service_environment(database)
        assert serving.hostname in compose["services"][name]["depends_on"], name
        # The migrations grant the serving role (the user of this URL) its tables.
        assert migration_env[f"{package.upper()}_DATABASE_URL"] == urlunsplit(serving)
        for url in (serving, owner):
            assert (url.hostname, url.port) == (serving.hostname, POSTGRES_PORT)
            assert url.path == "/" + db_env["APP_DATABASE"]
            # Never the container's superuser.
            assert url.username != db_env["POSTGRES_USER"], f"{name}: a superuser URL"
        assert (serving.username, serving.password) == (
            db_env["SERVING_ROLE"],
            db_env["SERVING_PASSWORD"],
        )
        assert (owner.username, owner.password) == (db_env["OWNER_ROLE"], db_env["OWNER_PASSWORD"])
        assert serving.username != owner.username
        # Nothing of the other databases reaches this service or its migrations.
        other_passwords = {
            value
            for other in DATABASES - {serving.hostname}
            for key, value in service_environment(compose["services"][other]).items()
            if "PASSWORD" in key
        }
        for values in (env.values(), migration_env.values()):
            assert not any(secret in value for value in values for secret in other_passwords)


def test_only_the_migration_steps_hold_an_owner_password():
    """A serving container's environment, readable by any of its processes, has none."""
    compose = load_compose(role_passwords())
    owner_passwords = {
        service_environment(compose["services"][database])["OWNER_PASSWORD"]
        for database in DATABASES
    }
    for name, spec in compose["services"].items():
        if name in MIGRATIONS or name in DATABASES:
            continue
        for variable, value in service_environment(spec).items():
            assert "MIGRATION_DATABASE_URL" not in variable, f"{name}: {variable}"
            assert not any(password in value for password in owner_passwords), (
                f"{name}: {variable} holds a database owner's password"
            )


@pytest.mark.parametrize(("name", "package"), sorted(MIGRATIONS.items()))
def test_a_migration_step_gets_its_own_database_and_nothing_else(name, package):
    spec = COMPOSE["services"][name]
    (database,) = set(spec["depends_on"]) & DATABASES
    assert spec["networks"] == [database], f"{name}: its database's network only"
    assert spec["depends_on"][database] == {"condition": "service_healthy"}
    reads = reads_by_service(package)
    for variable in service_environment(spec):
        assert variable in reads, f"{name}: compose sets {variable}, which the code never reads"
    assert not {"GRPC_AUTH_TOKEN", "OPENSKY_CLIENT_SECRET"} & set(service_environment(spec))


def test_every_database_role_has_its_own_password_and_compose_requires_them():
    roles = {}
    for database in DATABASES:
        env = service_environment(COMPOSE["services"][database])
        for role, password in (
            (env["POSTGRES_USER"], "POSTGRES_PASSWORD"),
            (env["OWNER_ROLE"], "OWNER_PASSWORD"),
            (env["SERVING_ROLE"], "SERVING_PASSWORD"),
        ):
            roles[f"{database}/{role}"] = env[password]
    assert len(set(roles.values())) == len(roles) == 3 * len(DATABASES), roles
    # The shipped values say what they are: placeholders to replace.
    assert all("placeholder" in password for password in roles.values())
    # And none has a default in compose: without .env it refuses to start, naming one.
    with pytest.raises(ValueError, match=r"_PASSWORD is missing"):
        load_compose({})


@pytest.mark.parametrize(("name", "package"), sorted(SERVICES.items()))
def test_every_setting_a_service_reads_is_set_or_defaulted_and_reaches_the_container(name, package):
    reads = reads_by_service(package)
    env = service_environment(COMPOSE["services"][name])
    documented = {entry.name for entry in dotenv_entries()}
    assert not TEST_ONLY_SETTINGS & (documented | set(env)), "a test-only switch is exposed"
    for variable, calls in sorted(reads.items()):
        where = ", ".join(call.location for call in calls)
        if variable.endswith("_MIGRATION_DATABASE_URL"):
            # The owner's URL: for the migration step only (checked above).
            continue
        if variable in GRPC_SETTINGS and not speaks_grpc(package):
            # Read with every service's settings, used by none of its roles (checked above).
            continue
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
            if COMPOSE_DEFAULTS.get(variable) == match.group(2):
                continue
            defaults = {str(call.default) for call in reads[variable]}
            assert defaults == {match.group(2)}, f"{name}: {variable} defaults differ"


@pytest.mark.parametrize(("name", "package"), sorted(SERVICES.items()))
def test_no_local_address_default_survives_in_a_container(name, package):
    """A default like localhost:50052 is right for make run and wrong inside a container."""
    env = service_environment(COMPOSE["services"][name])
    for variable, calls in reads_by_service(package).items():
        defaults = [str(call.default) for call in calls if call.has_default]
        if any(names_this_machine(default) for default in defaults):
            assert env.get(variable), f"{name}: set {variable} in compose (default {defaults})"


def test_every_container_labels_its_metrics_with_the_one_machine_compose_runs_on():
    """Without it each replica's `node` would be its container's id, a new one per restart."""
    nodes = {
        service_environment(COMPOSE["services"][name]).get(NODE_NAME_VARIABLE) for name in SERVICES
    }
    assert nodes == {COMPOSE_DEFAULTS[NODE_NAME_VARIABLE]}


@pytest.mark.parametrize(("name", "package"), sorted(SERVICES.items()))
def test_compose_sets_only_settings_the_service_reads(name, package):
    reads = reads_by_service(package)
    for variable in service_environment(COMPOSE["services"][name]):
        assert variable in reads or variable in READ_OUTSIDE_CONFIG, (
            f"{name}: compose sets {variable}, which the code never reads"
        )


def test_env_file_documents_every_setting_and_nothing_else():
    entries = dotenv_entries()
    names = [entry.name for entry in entries]
    assert len(names) == len(set(names)), "a variable appears twice in .env"
    for entry in entries:
        assert entry.documented, f".env: explain {entry.name} in a comment"

    read_by_services = {read.name for read in env_reads()}
    missing = read_by_services - set(names) - TEST_ONLY_SETTINGS
    assert not missing, f".env must document every setting the services read: {sorted(missing)}"
    make_run = set(RunSettings.variables()) | string_constants("devstack")
    used = read_by_services | compose_variables() | make_run
    unused = set(names) - used
    assert not unused, f".env documents settings nothing reads: {sorted(unused)}"


def test_env_file_keeps_the_opensky_placeholders_and_no_other_active_value():
    # Uncommented values are read by make run too, so only these (valid for both) are active:
    # the OpenSky placeholders (anonymous access), and the database passwords compose
    # requires, which nothing but compose reads.
    active = read_dotenv()
    passwords = {name for name in active if name.endswith("_PASSWORD")}
    assert {name: active[name] for name in set(active) - passwords} == {
        "OPENSKY_CLIENT_ID": "your_api_client_id",
        "OPENSKY_CLIENT_SECRET": "your_api_client_secret",
    }
    assert passwords and passwords <= compose_variables()
    read_elsewhere = {read.name for read in env_reads()} | string_constants("devstack")
    assert not passwords & read_elsewhere


def test_compose_runs_with_the_env_file():
    compose = load_compose(read_dotenv())
    assert len(published_ports(compose["services"][GATEWAY])) == len(CONTRACT_HTTP_PORTS)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_the_services_trust_exactly_the_gateway_as_their_proxy(name):
    """Fixed, not a pass-through: compose puts exactly one proxy in front of the services."""
    raw = service_environment(yaml.safe_load(COMPOSE_FILE.read_text())["services"][name])
    assert raw["TRUSTED_PROXIES"] == "1"
