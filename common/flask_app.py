"""The part of each service's app factory that both services share."""

from pathlib import Path

from flask import Blueprint, Flask
from flask_sqlalchemy import SQLAlchemy
from werkzeug.routing import PathConverter

from common import db_connections
from common.errors import register_error_handlers
from common.http_observability import install_request_observability
from common.logs import configure_logging


class AnyCharacterPathConverter(PathConverter):
    """``<path:...>`` that also matches line breaks.

    Werkzeug's path converter uses ``.``, which stops at a newline, so
    ``GET /users/a%0A`` matched no route and answered "URL not found" (404).
    With this converter it reaches the view, which says the email is invalid.
    """

    regex = "[^/](?s:.)*?"


def build_app(
    import_name: str,
    *,
    config: object,
    test_config: dict | None,
    db: SQLAlchemy,
    migrations_dir: Path | None,
    blueprints: list[Blueprint],
) -> Flask:
    """Create a Flask app: environment config, then the test's overrides, then extensions.

    Flask-Migrate (and with it Alembic, ~11 MB per process) is registered
    only when ``migrations_dir`` is given: for the ``migrate`` role, the
    ``flask db`` commands and tests, not for the processes that serve.
    """
    # No static folder: the services serve JSON only (Swagger UI brings its own assets).
    app = Flask(import_name, static_folder=None)
    app.url_map.converters["path"] = AnyCharacterPathConverter
    app.config.from_object(config)
    if test_config:
        app.config.update(test_config)
    configure_logging(app.config["LOG_LEVEL"])
    # Keep fields in the order the code writes them (seed shapes first).
    app.json.sort_keys = False
    db.init_app(app)
    db_connections.install(app, db)
    if migrations_dir is not None:
        from flask_migrate import Migrate

        Migrate(app, db, directory=str(migrations_dir))
    register_error_handlers(app)
    install_request_observability(app)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    return app
