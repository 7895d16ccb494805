"""The local stack's databases on the embedded PostgreSQL: one per service, two roles each.

As in the containers and on Kubernetes, each service's database has an
owner, which the migrations connect as, and a serving role, which the
service's processes connect as: it reads and writes rows and can neither
change the schema nor connect to the other service's database. Whatever
works with ``make run`` then works with the real roles elsewhere, and a
change that needs more than that fails here first.

:func:`prepare` runs at every start, as the server's superuser, and is
idempotent: it creates what is missing (so a data directory made by older
code, whose databases and tables belong to the superuser, is brought to the
same state), gives each role a new random password, and writes the
server's client authentication:

- the server listens on its Unix socket only (the wheel starts it without
  TCP), so ``pg_hba.conf`` has only ``local`` lines;
- the two roles of a database may connect to that database only, with
  their password (``scram-sha-256``): a wrong URL fails here as it would
  against compose's or a managed server, instead of ``trust`` letting any
  password through;
- the superuser is let in by ``peer`` authentication, mapped from the
  operating-system user running the stack only: the wheel may put the
  socket in a world-writable directory, and ``trust`` would make every
  local account a superuser.

Passwords are not stored anywhere: a stack that restarts sets new ones.
"""

import os
import pwd
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from psycopg2 import sql

# The Kubernetes overlay's names (deploy/kubernetes/overlays/local/postgres.yaml).
OWNER_SUFFIX = "_owner"
SERVING_SUFFIX = "_app"
IDENT_MAP = "devstack"
# Objects of the public schema a data directory of older code left to the superuser, by
# the ALTER command that gives them to the owner (sequences owned by a column follow their
# table and are skipped).
RELATION_KINDS = {
    "r": "TABLE",
    "p": "TABLE",
    "v": "VIEW",
    "m": "MATERIALIZED VIEW",
    "S": "SEQUENCE",
    "f": "FOREIGN TABLE",
}


@dataclass(frozen=True)
class ServiceDatabase:
    """One service's database on the embedded server, and the URLs of its two roles."""

    name: str
    owner_url: str
    serving_url: str

    @property
    def owner(self) -> str:
        """The role that owns the schema (migrations)."""
        return self.name + OWNER_SUFFIX

    @property
    def serving(self) -> str:
        """The role the service's processes connect as."""
        return self.name + SERVING_SUFFIX


def role_url(server_uri: str, *, role: str, password: str, database: str) -> str:
    """Return the superuser's socket URI rewritten for ``role`` on ``database``."""
    parts = urlsplit(server_uri)
    netloc = f"{role}:{password}@{parts.hostname or ''}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, f"/{database}", parts.query, ""))


def prepare(superuser_uri: str, database_names: list[str]) -> list[ServiceDatabase]:
    """Create or repair each database and its roles; return their URLs (new passwords)."""
    prepared = []
    connection = psycopg2.connect(superuser_uri)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            for name in database_names:
                owner_password, serving_password = secrets.token_hex(16), secrets.token_hex(16)
                database = ServiceDatabase(
                    name=name,
                    owner_url=role_url(
                        superuser_uri,
                        role=name + OWNER_SUFFIX,
                        password=owner_password,
                        database=name,
                    ),
                    serving_url=role_url(
                        superuser_uri,
                        role=name + SERVING_SUFFIX,
                        password=serving_password,
                        database=name,
                    ),
                )
                _ensure_role(cursor, database.owner, owner_password)
                _ensure_role(cursor, database.serving, serving_password)
                # The owner may see (and end) the service's own sessions: the tests' SQL,
                # which runs as the owner, inspects them in pg_stat_activity.
                cursor.execute(
                    sql.SQL("GRANT {} TO {}").format(
                        sql.Identifier(database.serving), sql.Identifier(database.owner)
                    )
                )
                _ensure_database(cursor, database)
                _own_schema(_on_database(superuser_uri, name), database)
                prepared.append(database)
            _write_client_authentication(cursor, prepared)
    finally:
        connection.close()
    return prepared


def _on_database(superuser_uri: str, database: str) -> str:
    parts = urlsplit(superuser_uri)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


def _ensure_role(cursor, role: str, password: str) -> None:
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    verb = "ALTER" if cursor.fetchone() else "CREATE"
    # LOGIN and nothing else: no superuser, no CREATEDB, no CREATEROLE.
    cursor.execute(
        sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
            sql.SQL(verb), sql.Identifier(role), sql.Literal(password)
        )
    )


def _ensure_database(cursor, database: ServiceDatabase) -> None:
    name, owner = sql.Identifier(database.name), sql.Identifier(database.owner)
    cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database.name,))
    if cursor.fetchone() is None:
        cursor.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(name, owner))
    else:
        cursor.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(name, owner))
    # Only its two roles (and the superuser) may connect; nobody may create temporary tables.
    cursor.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(name))
    cursor.execute(
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}").format(
            name, owner, sql.Identifier(database.serving)
        )
    )


def _own_schema(superuser_on_database: str, database: ServiceDatabase) -> None:
    """Give the owner the public schema and everything in it; the serving role its usage."""
    owner, serving = sql.Identifier(database.owner), sql.Identifier(database.serving)
    connection = psycopg2.connect(superuser_on_database)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(owner))
            cursor.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            cursor.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(serving))
            cursor.execute(
                """
                SELECT c.relkind, c.oid::regclass::text
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind = ANY(%s)
                  AND c.relowner <> %s::regrole
                  AND NOT EXISTS (
                      SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                        AND d.deptype IN ('a', 'i'))
                """,
                (list(RELATION_KINDS), database.owner),
            )
            for kind, relation in cursor.fetchall():
                cursor.execute(
                    sql.SQL("ALTER {} {} OWNER TO {}").format(
                        sql.SQL(RELATION_KINDS[kind]), sql.SQL(relation), owner
                    )
                )
            cursor.execute(
                """
                SELECT p.oid::regprocedure::text FROM pg_proc p
                JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = 'public' AND p.proowner <> %s::regrole
                """,
                (database.owner,),
            )
            for (routine,) in cursor.fetchall():
                cursor.execute(
                    sql.SQL("ALTER ROUTINE {} OWNER TO {}").format(sql.SQL(routine), owner)
                )
            # The migrations grant what exists; these cover what the owner creates later.
            cursor.execute(
                sql.SQL(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
                    "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
                ).format(owner, serving)
            )
            cursor.execute(
                sql.SQL(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
                    "GRANT USAGE, SELECT ON SEQUENCES TO {}"
                ).format(owner, serving)
            )
    finally:
        connection.close()


def _write_client_authentication(cursor, databases: list[ServiceDatabase]) -> None:
    """Rewrite pg_hba.conf and pg_ident.conf (see the module docstring), check, reload."""
    cursor.execute("SHOW hba_file")
    hba_file = Path(cursor.fetchone()[0])
    cursor.execute("SHOW ident_file")
    ident_file = Path(cursor.fetchone()[0])
    cursor.execute("SELECT current_user")
    superuser = cursor.fetchone()[0]
    os_user = pwd.getpwuid(os.geteuid()).pw_name
    header = (
        "# Written by devstack/databases.py at every start of the local stack; edits are lost.\n"
    )
    hba = [
        header,
        "# The server listens on its socket only: no host lines.\n",
        f"local all {superuser} peer map={IDENT_MAP}\n",
    ]
    for database in databases:
        hba.append(f"local {database.name} {database.owner},{database.serving} scram-sha-256\n")
    hba_file.write_text("".join(hba))
    ident_file.write_text(f"{header}{IDENT_MAP} {os_user} {superuser}\n")
    cursor.execute("SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL")
    errors = cursor.fetchall()
    cursor.execute("SELECT line_number, error FROM pg_ident_file_mappings WHERE error IS NOT NULL")
    errors += cursor.fetchall()
    if errors:
        raise RuntimeError(f"the client authentication devstack wrote is invalid: {errors}")
    cursor.execute("SELECT pg_reload_conf()")
