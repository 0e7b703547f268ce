"""A free TCP port on 127.0.0.1 for the tests that start servers or rendezvous (closed again before use: another
process may take it in between, a race the tests accept)."""
import socket


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
