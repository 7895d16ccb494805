"""Run the Data Collector: ``python -m data_collector`` (the roles: common.process.launcher)."""

import sys

from common.process.launcher import Service, main
from data_collector.config import Config


def migrate() -> int:
    """Apply the Data Collector's migrations, waiting for its database."""
    # Imported here, in the migrate process only: the launcher loads no Flask or SQLAlchemy.
    from common.db.migrations import migrate_app
    from data_collector.app import MIGRATIONS_DIR, create_app

    migrate_app(create_app(process="migrate"), MIGRATIONS_DIR)
    return 0


DATA_COLLECTOR = Service(
    name="data_collector",
    config=Config,
    web_app="data_collector.app:create_app(migrations=False)",
    roles={"grpc": "data_collector.grpc_server", "worker": "data_collector.worker"},
    migrate=migrate,
)

if __name__ == "__main__":
    sys.exit(main(DATA_COLLECTOR, sys.argv[1:]))
