"""Fixtures of the manifest tests: each overlay rendered once per session."""

import pytest

from tests.deploy.kubernetes import OVERLAYS, kubectl, render


@pytest.fixture(params=OVERLAYS)
def overlay(request) -> str:
    """The name of one overlay under deploy/kubernetes/overlays."""
    return request.param


@pytest.fixture
def objects(overlay):
    """Every object ``kubectl kustomize`` renders for the overlay."""
    if kubectl() is None:
        pytest.skip("kubectl is not on PATH: the Kubernetes manifests cannot be rendered here")
    return render(overlay)
