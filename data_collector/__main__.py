"""Run the Data Collector: ``python -m data_collector`` (the roles: common.process.launcher)."""

import sys

from common.process.launcher import Service, Startable, main
from data_collector.config import Config

# Each function imports the app when called, in the process that runs the role: the
# launcher itself loads no Flask, SQLAlchemy or grpcio.


def migrate() -> int:
    """Apply the Data Collector's migrations, waiting for its database."""
    from common.db.migrations import migrate_app
    from data_collector.app import MIGRATIONS_DIR, create_app

    migrate_app(create_app(process="migrate"), MIGRATIONS_DIR)
    return 0


def grpc() -> Startable:
    """Build the gRPC server (``DataCollectorService``)."""
    from data_collector.grpc_server import server

    return server()


def worker() -> Startable:
    """Build the background jobs (collection, interest reconciliation)."""
    from data_collector.worker import jobs

    return jobs()


DATA_COLLECTOR = Service(
    name="data_collector",
    config=Config,
    web_app="data_collector.app:create_app(migrations=False)",
    roles={"grpc": grpc, "worker": worker},
    migrate=migrate,
)

if __name__ == "__main__":
    sys.exit(main(DATA_COLLECTOR, sys.argv[1:]))
