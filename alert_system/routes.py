"""Alert System REST API: no routes of its own; the skeleton serves the operators' ones.

``/ping``, ``/health``, ``/metrics`` and ``/openapi.json`` come from
common.service. Users set their thresholds at the Data Collector, which
sends them here with its events.
"""

from flask import Blueprint

bp = Blueprint("alert_system", __name__)
