"""SLA detector settings, read from the environment with local-stack defaults."""

from typing import Annotated, ClassVar, Self

from pydantic import AfterValidator, Field, PrivateAttr, model_validator

from common.emails import normalize_email
from common.settings import BrokerSettings, Port, ServiceSettings, named_after, url_with
from sla_detector.inputs import MAX_CHECK_SECONDS, ConfigFile, SlaConfig, read_file

# Each check must see new samples: at least this many scrape intervals between two checks.
SCRAPES_PER_CHECK = 5


def minimum_check_seconds(scrape_seconds: int) -> int:
    """Return the shortest T_check allowed with this scrape interval."""
    return SCRAPES_PER_CHECK * scrape_seconds


def check_interval_refusal(check_seconds: int, scrape_seconds: int, *, name: str) -> str | None:
    """Say why ``check_seconds`` (named ``name``) is too short for the scrape interval, if it is."""
    if check_seconds >= minimum_check_seconds(scrape_seconds):
        return None
    return (
        f"{name} ({check_seconds}) must be at least {SCRAPES_PER_CHECK} x "
        f"PROMETHEUS_SCRAPE_SECONDS ({scrape_seconds}) = {minimum_check_seconds(scrape_seconds)}: "
        "a check closer to the last one would compare samples Prometheus has not refreshed."
    )


def alert_email(value: str) -> str:
    """Return the normalized ``SLA_ALERT_EMAIL`` (empty stays empty), or say why it is refused."""
    if not value:
        return value
    try:
        return normalize_email(value)
    except ValueError as error:
        raise ValueError(f"SLA_ALERT_EMAIL is not an email address: {error}.") from None


class Settings(ServiceSettings, BrokerSettings):
    """Everything the SLA detector reads from its environment, read when instantiated."""

    model_config = named_after("SLA_DETECTOR", http_port=5006)

    # Its REST port's variable is the shorter SLA_HTTP_PORT (its database's, for instance,
    # are SLA_DETECTOR_*).
    HTTP_PORT: Port = Field(5006, alias="SLA_HTTP_PORT")
    # The configuration document is a few KB at most (100 metrics).
    MAX_CONTENT_LENGTH: ClassVar[int] = 256 * 1024

    # Where the detector asks its queries (Prometheus's HTTP API), and how often that
    # Prometheus scrapes (the same variable configures the one make run and compose start).
    PROMETHEUS_URL: Annotated[
        str,
        url_with("http", "https", example="http://prometheus:9090"),
        AfterValidator(lambda url: url.rstrip("/")),
    ] = "http://localhost:9090"
    PROMETHEUS_SCRAPE_SECONDS: int = Field(15, ge=1, le=MAX_CHECK_SECONDS // SCRAPES_PER_CHECK)
    # T_check: five scrapes at the default interval, the most often the rule allows.
    SLA_CHECK_SECONDS: int = Field(75, ge=1, le=MAX_CHECK_SECONDS)
    # The metrics to watch at first start (YAML); empty: none until PUT /sla/config.
    SLA_CONFIG_FILE: str = ""
    # Who is emailed a breach; empty: breaches are recorded and shown, nobody is told.
    SLA_ALERT_EMAIL: Annotated[str, AfterValidator(alert_email)] = ""

    _sla_file: ConfigFile | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _check_interval_and_file(self) -> Self:
        refusal = check_interval_refusal(
            self.SLA_CHECK_SECONDS, self.PROMETHEUS_SCRAPE_SECONDS, name="SLA_CHECK_SECONDS"
        )
        if refusal:
            raise ValueError(refusal)
        if self.SLA_CONFIG_FILE:
            self._sla_file = read_file(self.SLA_CONFIG_FILE)
            given = self._sla_file.config.check_seconds
            if given is not None:
                refusal = check_interval_refusal(
                    given, self.PROMETHEUS_SCRAPE_SECONDS, name="check_seconds of SLA_CONFIG_FILE"
                )
                if refusal:
                    raise ValueError(refusal)
        return self

    # Upper case: Flask copies upper-case attributes into the app's configuration.
    @property
    def SLA_CONFIG(self) -> SlaConfig | None:  # noqa: N802
        """The document of ``SLA_CONFIG_FILE``, validated (None without a file)."""
        return self._sla_file.config if self._sla_file else None

    @property
    def SLA_CONFIG_DIGEST(self) -> str | None:  # noqa: N802
        """The SHA-256 of ``SLA_CONFIG_FILE`` as it was read (None without a file)."""
        return self._sla_file.digest if self._sla_file else None

    def startup_warnings(self) -> list[str]:
        """Return what the operator must know at start: nobody is emailed without an address."""
        warnings = super().startup_warnings()
        if not self.SLA_ALERT_EMAIL:
            warnings.append(
                "SLA_ALERT_EMAIL is not set: breaches are recorded and shown by GET "
                "/sla/breaches, but nobody is emailed."
            )
        return warnings
