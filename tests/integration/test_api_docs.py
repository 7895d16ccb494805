"""The interactive API documentation works offline: every asset comes from the service."""

import re
from urllib.parse import urljoin, urlparse

import pytest

ASSET = re.compile(r'(?:src|href)="([^"]+)"')
ABSOLUTE_URL = re.compile(r"https?://[^\s\"'<>]+")


@pytest.mark.parametrize("service", ["um", "dc"])
def test_the_docs_page_and_all_its_assets_load_from_the_service(service, um, dc):
    api = um if service == "um" else dc
    page = api.get("/docs/")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    title = api.get("/openapi.json").json()["info"]["title"]
    assert f"<title>{title}</title>" in page.text

    assets = ASSET.findall(page.text)
    assert {"/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"} <= set(assets)
    for asset in assets:
        url = urljoin(page.url, asset)
        assert urlparse(url).netloc == urlparse(api.base_url).netloc, f"{asset} is not served here"
        loaded = api.get(urlparse(url).path)
        assert loaded.status_code == 200, asset
        assert len(loaded.content) > 0, asset
    # The page shows this service's document, and asks no online validator about it.
    assert '"url": "/openapi.json"' in page.text
    assert '"validatorUrl": null' in page.text
    for url in ABSOLUTE_URL.findall(page.text):
        assert urlparse(url).netloc == urlparse(api.base_url).netloc, f"{url} is elsewhere"


@pytest.mark.parametrize("service", ["um", "dc"])
def test_docs_without_the_trailing_slash_redirects_to_the_page(service, um, dc):
    api = um if service == "um" else dc
    response = api.get("/docs", allow_redirects=False)
    assert response.status_code in (301, 308)
    assert response.headers["Location"].endswith("/docs/")
