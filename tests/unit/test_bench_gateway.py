"""The benchmark measures the compose stack's own gateway, not a look-alike.

Whether nginx runs is up to the machine (a Docker engine, the image); what
is checked here is that the configuration it runs is the repository's,
pointed at the benchmark stack, and that a configuration which changed
shape stops the bench instead of measuring something else.
"""

import pytest

from bench.layers import GATEWAY_TEMPLATES, gateway_configuration, gateway_image, gateway_limits
from tests.containers.deployment import load_compose, service_environment

PORTS = {"user-manager": (18001, 19001), "data-collector": (18002, 19002)}


def test_the_gateway_image_is_the_compose_files(tmp_path):
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(
        "services:\n"
        "  user-manager:\n"
        "    image: python:3.11\n"
        "\n"
        "  gateway:\n"
        "    # the proxy\n"
        "    image: nginx:9.9\n"
        "    ports: []\n"
        "volumes: {}\n"
    )
    assert gateway_image(compose) == "nginx:9.9"
    compose.write_text("services:\n  user-manager:\n    image: python:3.11\n")
    assert gateway_image(compose) is None
    # The repository's own compose file names one.
    assert gateway_image().startswith("nginx:")


def test_the_repositorys_configuration_is_pointed_at_the_benchmark_stack(tmp_path):
    gateway_configuration(GATEWAY_TEMPLATES, tmp_path, PORTS)

    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == sorted(path.name for path in GATEWAY_TEMPLATES.glob("*.template"))
    server = (tmp_path / "default.conf.template").read_text()
    original = (GATEWAY_TEMPLATES / "default.conf.template").read_text()
    assert "listen 127.0.0.1:18001;" in server and "listen 127.0.0.1:18002;" in server
    assert "127.0.0.1:19001;" in server and "127.0.0.1:19002;" in server
    directives = [line for line in server.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in directives if "user-manager:" in line or "listen 5001" in line]
    # Everything else (buffering, limits, headers, error pages) is left as compose runs it.
    assert server.count("proxy_pass") == original.count("proxy_pass")
    assert server.count("client_max_body_size") == original.count("client_max_body_size")
    assert len(server.splitlines()) == len(original.splitlines())


def test_a_configuration_of_another_shape_stops_the_bench(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    text = (GATEWAY_TEMPLATES / "default.conf.template").read_text()
    (source / "default.conf.template").write_text(text.replace("listen 5001;", "listen 80;"))

    with pytest.raises(RuntimeError, match="listen 5001"):
        gateway_configuration(source, tmp_path / "target", PORTS)


def test_the_benchmark_lifts_every_limit_the_compose_gateway_is_given():
    """One client at full speed: any limit left at its default would refuse the benchmark."""
    given = service_environment(load_compose()["services"]["gateway"])
    assert set(gateway_limits()) == {name for name in given if name.startswith("GATEWAY_")}
