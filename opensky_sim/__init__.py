"""OpenSky Network simulator: a local stand-in for the flights REST API and its OAuth2 server.

The Data Collector cannot reach OpenSky from every machine, and tests need an
OpenSky they can steer (failures, credits, clock, exact datasets). Point
``OPENSKY_API_URL`` at ``<base>/api`` and ``OPENSKY_TOKEN_URL`` at
``<base>/auth/realms/opensky-network/protocol/openid-connect/token``.
"""

from opensky_sim.app import create_app, run_in_thread
from opensky_sim.simulator import Settings

__all__ = ["Settings", "create_app", "run_in_thread"]
