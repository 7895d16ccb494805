"""ICAO airport codes: the syntax, and whether the airportsdata list knows the airport.

``airportsdata`` (PyPI, updated monthly) lists about 28,000 airports by ICAO
code, including some all-digit local codes that OpenSky also reports. Only
code → name is kept, read row by row from the package's CSV:
``airportsdata.load()`` builds every full record first, and a process's
memory does not shrink back after it: every web worker would stay many
times larger than the names need.
"""

import csv
import functools
import re
from importlib import resources

ICAO_PATTERN = re.compile(r"[A-Z0-9]{4}")


@functools.cache
def _names() -> dict[str, str]:
    with resources.files("airportsdata").joinpath("airports.csv").open(encoding="utf8") as rows:
        reader = csv.reader(rows)
        header = next(reader)
        code, name = header.index("icao"), header.index("name")
        return {row[code]: row[name] for row in reader if row[code]}


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
