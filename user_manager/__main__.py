"""Run the User Manager: ``python -m user_manager`` (the roles: common.process.launcher)."""

import sys

from common.process.launcher import Service, main
from user_manager.config import Config


def migrate() -> int:
    """Apply the User Manager's migrations, waiting for its database."""
    # Imported here, in the migrate process only: the launcher loads no Flask or SQLAlchemy.
    from common.db.migrations import migrate_app
    from user_manager.app import MIGRATIONS_DIR, create_app

    migrate_app(create_app(process="migrate"), MIGRATIONS_DIR)
    return 0


USER_MANAGER = Service(
    name="user_manager",
    config=Config,
    web_app="user_manager.app:create_app(migrations=False)",
    roles={"grpc": "user_manager.grpc_server", "worker": "user_manager.worker"},
    migrate=migrate,
)

if __name__ == "__main__":
    sys.exit(main(USER_MANAGER, sys.argv[1:]))
