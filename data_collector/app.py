"""Data Collector application factory (gunicorn serves ``create_app(migrations=False)``)."""

from pathlib import Path

from flask import Flask

from common.rpc.peers import UserDirectory
from common.web.factory import build_app
from common.web.observability import add_scrape_collector
from data_collector.config import Config
from data_collector.metrics import CollectionStateCollector
from data_collector.models import db
from data_collector.openapi import build_document
from data_collector.routes import bp

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def create_app(
    test_config: dict | None = None, *, migrations: bool = True, process: str = "web"
) -> Flask:
    """Build the app: configuration from the environment, then the test's overrides.

    The serving processes pass ``migrations=False``: only the ``migrate``
    role, the ``flask db`` commands and tests need Flask-Migrate. ``process``
    names the launcher's role the app runs in (its database limits and, for
    ``migrate``, the owner role; see ``common.web.factory.build_app``).
    """
    app = build_app(
        __name__,
        config=Config(),
        test_config=test_config,
        db=db,
        blueprints=[bp],
        api_document=build_document,
        migrations_dir=MIGRATIONS_DIR if migrations else None,
        process=process,
    )
    # Lazy: the channel is opened on first use, inside the gunicorn worker.
    app.extensions["user_manager"] = UserDirectory(
        app.config["USER_MANAGER_GRPC_ADDR"],
        timeout=app.config["GRPC_TIMEOUT_SECONDS"],
        security=app.config["GRPC_SECURITY"],
    )
    add_scrape_collector(app, CollectionStateCollector())
    return app
