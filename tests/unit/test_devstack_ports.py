"""``make run`` names the variable that moves a port something else already uses."""

import socket
from pathlib import Path

from devstack.stack import StackSettings, busy_ports, free_port


def test_a_taken_port_is_reported_with_the_variable_that_moves_it(tmp_path: Path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        settings = StackSettings.on_free_ports(tmp_path, user_manager_http_port=taken)
        assert busy_ports(settings) == [
            f"port {taken} (USER_MANAGER_HTTP_PORT) is already in use on 127.0.0.1: stop what "
            f"listens there (`ss -ltnp | grep :{taken}` names it), or choose another port: "
            f"USER_MANAGER_HTTP_PORT={taken + 1000} make run"
        ]
    settings = StackSettings.on_free_ports(tmp_path, simulator=True, simulator_port=free_port())
    assert busy_ports(settings) == []
