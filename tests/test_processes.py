"""The ports the tests and the native stack pick for their services (inferwatch.stack.processes)."""

from __future__ import annotations

import socket

from inferwatch.stack.processes import LOWEST_PORT, _ephemeral_start, free_port


def test_free_ports_are_distinct_bindable_and_outside_the_range_outgoing_connections_take():
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(LOWEST_PORT <= port < _ephemeral_start() for port in ports)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:  # an outgoing connection's local port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", free_port()))
            server.listen()
            client.connect(server.getsockname())
            assert client.getsockname()[1] >= _ephemeral_start()
    for port in ports[:20]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
