"""The sandbox's uvicorn servers answer like a real server on a kept-alive connection."""

from __future__ import annotations

import socket

import httpx
from fastapi import FastAPI

from sandbox.serving import ServedApp


def test_connections_are_accepted_with_nagle_off() -> None:
    # With Nagle on, an answer written in two parts (headers, then body) waits for the client's
    # delayed ACK: 40 ms a call on a kept-alive connection, which no real server costs.
    app = FastAPI()
    app.get("/ping")(lambda: {"ok": True})
    served = ServedApp(app).start()
    try:
        with httpx.Client(base_url=served.url) as client:
            for _ in range(2):
                assert client.get("/ping").json() == {"ok": True}
            connections = list(served._server.server_state.connections)
            assert connections
            for protocol in connections:
                sock = protocol.transport.get_extra_info("socket")
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        served.stop()
