"""The Alert System, declared; the skeleton (common.service) builds its app and processes.

``create_app`` is what gunicorn serves and tests build.
"""

from common.service import Service

SERVICE = Service("alert_system", jobs=True, consumes=True, publishes=True, health="alerts")
create_app = SERVICE.create_app
