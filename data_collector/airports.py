"""ICAO airport codes: the syntax, and whether the airportsdata list knows the airport.

``airportsdata`` (PyPI, updated monthly) lists about 28,000 airports by ICAO
code, including some all-digit local codes that OpenSky also reports. Only
code → name is kept: the full records take ~27 MB per process, the names ~3 MB.
"""

import functools
import re

import airportsdata

ICAO_PATTERN = re.compile(r"[A-Z0-9]{4}")


@functools.cache
def _names() -> dict[str, str]:
    return {code: record["name"] for code, record in airportsdata.load("ICAO").items()}


def normalize_airport_code(value: str) -> str:
    """Return the upper-case ICAO code of a known airport, or raise ``ValueError`` saying why."""
    code = value.strip().upper()
    if not ICAO_PATTERN.fullmatch(code):
        raise ValueError("must be a 4-character ICAO airport code, e.g. LIRF")
    if code not in _names():
        raise ValueError(f"{code} is not a known ICAO airport code")
    return code


def airport_name(code: str) -> str | None:
    """Return the airport's name, or None for a code the list does not know."""
    return _names().get(code)
