"""What an SLA configuration may say: the YAML of ``SLA_CONFIG_FILE``, the JSON of ``PUT``.

One model for both, so the file and the API accept and refuse exactly the
same documents. It imports no Flask: the settings read the file with it at
start (a bad file stops the service with one sentence).
"""

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common.broker.messages import one_line
from common.errors import ConfigError

# A name shows in emails, metric labels and logs: short, and no control characters.
NAME_MAX_LENGTH = 100
# PromQL of a dashboard panel is a few hundred characters; this leaves room.
QUERY_MAX_LENGTH = 2000
# Each metric is one query to Prometheus per check.
MAX_METRICS = 100
# A day: a check rarer than that would tell of a breach days after it began.
MAX_CHECK_SECONDS = 86_400
PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]+$"


class MetricSla(BaseModel):
    """One metric watched: a PromQL query giving gauges, and the range its values must stay in."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "name": "collection-credits",
                    "query": "max(opensky_credits_remaining)",
                    "min": 50,
                    "max": 4000,
                }
            ]
        },
    )

    name: str = Field(
        min_length=1,
        max_length=NAME_MAX_LENGTH,
        pattern=PRINTABLE,
        description="What the operator calls it (unique in the document).",
    )
    query: str = Field(
        min_length=1,
        max_length=QUERY_MAX_LENGTH,
        # PostgreSQL stores no NUL character, and a query needs none.
        pattern=r"^[^\x00]+$",
        description="A PromQL query Prometheus accepts, giving an instant vector or a scalar "
        "(with several series, the lowest is compared with `min`, the highest with `max`; an "
        "infinite value, such as a `histogram_quantile` above the top bucket, counts as the "
        "largest number there is).",
    )
    min: float | None = Field(None, description="Values below are out of range (none: no floor).")
    max: float | None = Field(None, description="Values above are out of range (none: no ceiling).")

    @field_validator("name")
    @classmethod
    def _one_line(cls, name: str) -> str:
        """Refuse what would break the Subject it goes into, as a breach event does."""
        return one_line(name)

    @model_validator(mode="after")
    def _limits(self) -> "MetricSla":
        for side, value in (("min", self.min), ("max", self.max)):
            # Below the largest float in size: an infinite value counts as that float.
            if value is not None and not abs(value) < sys.float_info.max:
                raise ValueError(f"{side} must be a finite number below {sys.float_info.max:g}")
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) must not be above max ({self.max:g})")
        return self


class SlaConfig(BaseModel):
    """The metrics the detector watches, and optionally how often it checks them."""

    model_config = ConfigDict(extra="forbid", strict=True)

    metrics: list[MetricSla] = Field(max_length=MAX_METRICS)
    check_seconds: int | None = Field(
        None,
        ge=1,
        le=MAX_CHECK_SECONDS,
        description="Seconds between checks (T_check); none: `SLA_CHECK_SECONDS`. At least 5 "
        "times `PROMETHEUS_SCRAPE_SECONDS`, so that each check sees new scrapes; at most a day.",
    )

    @field_validator("metrics")
    @classmethod
    def _unique_names(cls, metrics: list[MetricSla]) -> list[MetricSla]:
        names = [metric.name for metric in metrics]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"names must be unique: {', '.join(repeated)} given more than once")
        return metrics


def first_problem(error: ValidationError) -> tuple[str, str]:
    """Return where the first problem is (``metrics.0.max``) and what it is, in words."""
    problem = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in problem["loc"]) or "document"
    message = problem["msg"].removeprefix("Value error, ")
    return where, message[0].lower() + message[1:]


@dataclass(frozen=True)
class ConfigFile:
    """``SLA_CONFIG_FILE`` as read at start: its document, and the SHA-256 of those bytes.

    The digest tells a restarted detector whether the file changed. It is of the
    bytes read once, never of the file read again: the file may have changed or
    gone since, and the document is what the detector adopts.
    """

    config: SlaConfig
    digest: str


def read_file(path: str) -> ConfigFile:
    """Read and validate ``SLA_CONFIG_FILE``; raise ConfigError saying what is wrong."""
    try:
        content = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"SLA_CONFIG_FILE {path} cannot be read: {error.strerror}.") from None
    try:
        document = yaml.safe_load(content.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"SLA_CONFIG_FILE {path} is not UTF-8 text.") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"SLA_CONFIG_FILE {path} is not YAML: {error}") from None
    except RecursionError:
        raise ConfigError(f"SLA_CONFIG_FILE {path} nests deeper than YAML is read.") from None
    try:
        config = SlaConfig.model_validate(document)
    except ValidationError as error:
        where, message = first_problem(error)
        raise ConfigError(f"SLA_CONFIG_FILE {path}: {where}: {message}.") from None
    return ConfigFile(config, hashlib.sha256(content).hexdigest())
