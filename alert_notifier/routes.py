"""Alert Notifier REST API: no routes of its own; the skeleton serves the operators' ones.

``/ping``, ``/health`` (with the mail server's reachability), ``/metrics``
and ``/openapi.json`` come from common.service.
"""

from flask import Blueprint

bp = Blueprint("alert_notifier", __name__)
