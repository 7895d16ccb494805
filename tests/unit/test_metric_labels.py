"""Every sample of every service names its service and its node."""

import importlib
import os
from unittest import mock

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from common.observability.metrics import IDENTITY_LABELS
from devstack.stack import SERVICES

SERVICE_PACKAGES = sorted(SERVICES)
# Nothing listens there: building the app and scraping it need no database.
NO_DATABASE = "postgresql://nobody@127.0.0.1:1/none"


def scrape(package: str, **environment: str) -> list:
    """Return the metric families ``package``'s /metrics renders in this process."""
    settings = importlib.import_module(f"{package}.config").Settings
    # The notifier refuses to start without a mail server; nothing is sent here.
    variables = {
        settings.DATABASE_URL_VARIABLE: NO_DATABASE,
        "SMTP_HOST": "127.0.0.1",
        **environment,
    }
    with mock.patch.dict(os.environ, variables):
        app = importlib.import_module(f"{package}.app").create_app()
        response = app.test_client().get("/metrics")
    assert response.status_code == 200
    return list(text_string_to_metric_families(response.get_data(as_text=True)))


@pytest.mark.parametrize("package", SERVICE_PACKAGES)
def test_every_sample_carries_the_service_and_the_node(package):
    families = scrape(package, NODE_NAME="node-7")

    samples = [sample for family in families for sample in family.samples]
    assert samples
    for sample in samples:
        assert sample.labels["service"] == package, sample
        assert sample.labels["node"] == "node-7", sample


def test_the_node_is_the_host_name_when_not_given():
    import socket

    families = scrape("user_manager")

    nodes = {sample.labels["node"] for family in families for sample in family.samples}
    assert nodes == {socket.gethostname()}


def test_no_metric_declares_a_label_the_rendering_adds():
    # A metric's own "service" label would be overwritten by the service's name.
    for package in SERVICE_PACKAGES:
        importlib.import_module(f"{package}.metrics")
    for family in REGISTRY.collect():
        for sample in family.samples:
            assert not set(IDENTITY_LABELS) & sample.labels.keys(), sample
