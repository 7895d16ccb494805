"""The Data Collector, declared; the skeleton (common.service) builds its app and processes.

``create_app`` is what gunicorn serves and tests build.
"""

from common.service import Service

SERVICE = Service(
    "data_collector",
    servicer="DataCollectorServicer",
    jobs=True,
    consumes=True,
    publishes=True,
    peer="user_manager",
    health="opensky",
)
create_app = SERVICE.create_app
