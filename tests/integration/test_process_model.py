"""REST under gunicorn with several workers, gRPC beside it, schema from migrations."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc
import psutil
import pytest
from flask_migrate import check
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.utils import SERVICES, create_user, run_sql, settings_class

pytestmark = pytest.mark.local_stack


def test_each_service_runs_several_gunicorn_workers(local_stack):
    for package in ("user_manager", "data_collector"):
        launcher = psutil.Process(local_stack.supervisor.children[package].pid)
        masters = [p for p in launcher.children() if "gunicorn" in " ".join(p.cmdline())]
        assert len(masters) == 1
        assert len(masters[0].children()) >= 2, f"{package} should run several workers"


def test_grpc_health_service_reports_serving(local_stack):
    settings = local_stack.settings
    for port, service in (
        (settings.user_manager_grpc_port, "flighttracker.v1.UserService"),
        (settings.data_collector_grpc_port, "flighttracker.v1.DataCollectorService"),
    ):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_user_checks_work_from_every_worker_concurrently(um, dc):
    email = create_user(um)
    airports = ["LIRF", "LIMC", "LIME", "LIPZ", "LIRN", "LICC", "EGLL", "EGKK"] * 3

    def follow(airport):
        return dc.post("/interests", json={"email": email, "airport_code": airport}).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(follow, airports))
    assert set(statuses) <= {200, 201}
    assert statuses.count(201) == 8
    assert len(dc.get(f"/interests/{email}").json()) == 8


@pytest.mark.parametrize("package", ["user_manager", "data_collector"])
def test_models_and_migrations_agree(local_stack, monkeypatch, package):
    """The schema comes from migrations; a model change without one fails here."""
    import importlib

    variable = f"{package.upper()}_DATABASE_URL"
    monkeypatch.setenv(variable, local_stack.database_urls[variable])
    from common.db.migrations import ALEMBIC_DIR

    app = importlib.import_module(f"{package}.app").create_app(process="migrate")
    with app.app_context():
        check(directory=str(ALEMBIC_DIR))


@pytest.mark.parametrize("package", ["user_manager", "data_collector"])
def test_the_readiness_check_asks_the_service_own_database(local_stack, package):
    from devstack.stack import free_port

    def healthcheck(database_url: str) -> subprocess.CompletedProcess:
        env = {**local_stack.env, f"{package.upper()}_DATABASE_URL": database_url}
        return subprocess.run(
            [sys.executable, "-m", package, "healthcheck", "web", "database"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    assert healthcheck(local_stack.env[f"{package.upper()}_DATABASE_URL"]).returncode == 0
    nobody = healthcheck(f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    assert nobody.returncode == 1
    assert f"{package} is unhealthy" in nobody.stderr


def test_grpc_and_the_worker_share_one_process_beside_gunicorn(local_stack):
    for package in ("user_manager", "data_collector"):
        launcher = psutil.Process(local_stack.supervisor.children[package].pid)
        commands = [" ".join(p.cmdline()) for p in launcher.children()]
        assert len(commands) == 2, commands
        assert any("gunicorn" in command for command in commands)
        assert any(command.endswith(f"-m {package} grpc worker") for command in commands)


@pytest.mark.parametrize("package", SERVICES)
def test_migrate_runs_where_the_metrics_directory_does_not_exist_yet(
    local_stack, scratch_database, tmp_path, package
):
    """A pod's init container has the service's settings but an empty /tmp, as here."""
    variable = settings_class(package).DATABASE_URL_VARIABLE
    metrics = tmp_path / "not-yet" / "prometheus"
    env = {
        **local_stack.env,
        variable: scratch_database,
        variable.replace("_DATABASE_URL", "_MIGRATION_DATABASE_URL"): scratch_database,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }
    migrated = subprocess.run(
        [sys.executable, "-m", package, "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert run_sql(scratch_database, "SELECT count(*) FROM alembic_version") == [(1,)]
