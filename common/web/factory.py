"""The Flask app of a declared service: settings, extensions, probes, routes, API document."""

from typing import TYPE_CHECKING

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import PathConverter

from common.db import connections
from common.observability.logs import configure_logging
from common.settings import ConfigError, sqlalchemy_url
from common.web import auth, health
from common.web.errors import register_error_handlers
from common.web.observability import add_scrape_collector, install_request_observability
from common.web.openapi import install_api_docs

if TYPE_CHECKING:
    from common.service import Service


class AnyCharacterPathConverter(PathConverter):
    """``<path:...>`` that also matches line breaks.

    Werkzeug's path converter uses ``.``, which stops at a newline, so
    ``GET /users/a%0A`` matched no route and answered "URL not found" (404).
    With this converter it reaches the view, which says the email is invalid.
    """

    regex = "[^/](?s:.)*?"


def build_app(service: "Service", *, test_config: dict | None, process: str) -> Flask:
    """Create a service's Flask app: its settings, then the test's overrides, then the rest.

    Flask-Migrate (and with it Alembic, a sizeable import) is registered
    only for the ``migrate`` role and for apps built by tests and the
    ``flask db`` commands (``process="migrate"``), not for the processes that serve.

    ``process`` is the launcher's role the app runs in (``web``, ``grpc``,
    ``worker``, ``migrate``): it sets the connections' limits
    (:func:`common.db.connections.session_limits`), and ``migrate`` alone
    connects as the owner role (``MIGRATION_DATABASE_URL``); the serving
    URL stays in ``SERVING_DATABASE_URI``, naming the role it grants.
    """
    config = service.settings_class()
    db: SQLAlchemy = service.part("models", "db")
    # No static folder: the services serve JSON only (Swagger UI brings its own assets).
    app = Flask(service.name, static_folder=None)
    app.url_map.converters["path"] = AnyCharacterPathConverter
    app.config.from_object(config)
    if test_config:
        app.config.update(test_config)
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        raise ConfigError(
            f"{config.DATABASE_URL_VARIABLE} is not set: the service cannot start without it."
        )
    serving_url = sqlalchemy_url(app.config["SQLALCHEMY_DATABASE_URI"])
    app.config["SERVING_DATABASE_URI"] = serving_url
    if process == connections.MIGRATE_PROCESS and app.config.get("MIGRATION_DATABASE_URL"):
        app.config["SQLALCHEMY_DATABASE_URI"] = sqlalchemy_url(app.config["MIGRATION_DATABASE_URL"])
    else:
        app.config["SQLALCHEMY_DATABASE_URI"] = serving_url
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = connections.engine_options(
        pool_size=app.config["DB_POOL_SIZE"],
        limits=connections.session_limits(process, app.config),
    )
    proxies = app.config["TRUSTED_PROXIES"]
    if proxies:
        # Only the addresses the proxies in front of us forwarded, and only theirs.
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies
        )
    configure_logging(app.config["LOG_LEVEL"])
    # Keep fields in the order the code writes them, not sorted by name.
    app.json.sort_keys = False
    db.init_app(app)
    connections.install(app, db)
    if process == connections.MIGRATE_PROCESS:
        from common.db.migrations import install_migrations

        install_migrations(app, db, service.migrations_dir)
    register_error_handlers(app)
    install_request_observability(app)
    auth.install(app)
    if service.peer is not None:
        from common.rpc.peers import CLIENTS

        # Lazy: the channel is opened on first use, inside the process that calls.
        app.extensions[service.peer] = CLIENTS[service.peer](
            app.config[f"{service.peer.upper()}_GRPC_ADDR"],
            timeout=app.config["GRPC_TIMEOUT_SECONDS"],
            security=app.config["GRPC_SECURITY"],
        )
    if service.uses_broker:
        from common.broker.connection import Broker

        # Lazy: the connection is opened on first use, inside the process that publishes.
        app.extensions["broker"] = Broker(
            app.config["NATS_URL"],
            name=f"{service.name}-{process}",
            stream_replicas=app.config["NATS_STREAM_REPLICAS"],
        )
    for collector in service.part("metrics", "SCRAPE_COLLECTORS"):
        add_scrape_collector(app, collector)
    app.register_blueprint(health.probes(service, db))
    app.register_blueprint(service.part("routes", "bp"))
    install_api_docs(app, service.overview, service.part("routes", "TAGS", {}))
    return app
