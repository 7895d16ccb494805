"""The SLA breach detector, declared; the skeleton (common.service) builds its app and processes.

``create_app`` is what gunicorn serves and tests build.
"""

from common.service import Service

SERVICE = Service("sla_detector", jobs=True, publishes=True, checks=True, health="sla")
create_app = SERVICE.create_app
