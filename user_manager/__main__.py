"""Run the User Manager: ``python -m user_manager`` (the roles: common.process.launcher)."""

import sys

from common.process.launcher import Service, Startable, main
from user_manager.config import Config

# Each function imports the app when called, in the process that runs the role: the
# launcher itself loads no Flask, SQLAlchemy or grpcio.


def migrate() -> int:
    """Apply the User Manager's migrations, waiting for its database."""
    from common.db.migrations import migrate_app
    from user_manager.app import MIGRATIONS_DIR, create_app

    migrate_app(create_app(process="migrate"), MIGRATIONS_DIR)
    return 0


def grpc() -> Startable:
    """Build the gRPC server (``UserService``)."""
    from user_manager.grpc_server import server

    return server()


def worker() -> Startable:
    """Build the background jobs (outbox relay, key reaper)."""
    from user_manager.worker import jobs

    return jobs()


USER_MANAGER = Service(
    name="user_manager",
    config=Config,
    web_app="user_manager.app:create_app(migrations=False)",
    roles={"grpc": grpc, "worker": worker},
    migrate=migrate,
)

if __name__ == "__main__":
    sys.exit(main(USER_MANAGER, sys.argv[1:]))
