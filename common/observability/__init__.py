"""Logs, metrics and request ids: what every process of every service reports, and how.

``MULTIPROC_DIR_VARIABLE`` names the directory where all the processes of one
service instance write their metrics (prometheus_client's multiprocess mode);
the launcher sets it before any child starts.
"""

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
