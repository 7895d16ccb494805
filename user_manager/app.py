"""The User Manager, declared; the skeleton (common.service) builds its app and processes.

``create_app`` is what gunicorn serves and tests build.
"""

from common.service import Service

SERVICE = Service(
    "user_manager", servicer="UserServicer", jobs=True, peer="data_collector", health="outbox"
)
create_app = SERVICE.create_app
