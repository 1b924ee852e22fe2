"""Serve ASGI apps with uvicorn in background threads of this process, on chosen or free ports."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

__all__ = ["ServedApp", "serve"]


class ServedApp:
    """One app served by uvicorn in a daemon thread.

    Args:
        app: The ASGI app.
        host: Interface to bind.
        port: Port to bind; 0 picks a free one.
        log_level: uvicorn's log level.
    """

    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ) -> None:
        self.app = app
        self.host = host
        # IPPROTO_TCP, not 0: accepted sockets copy it, and asyncio sets TCP_NODELAY only on
        # sockets that name it. Without, every answer on a kept-alive connection waited 40 ms
        # for the client's delayed ACK (Nagle) before its body left, as no real server does.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = int(self._sock.getsockname()[1])
        config = uvicorn.Config(
            app, log_level=log_level, lifespan="off", access_log=False, timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            daemon=True,
            name=f"uvicorn-{self.port}",
        )

    @property
    def url(self) -> str:
        """Base URL of the served app."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> ServedApp:
        """Start serving and wait until uvicorn accepts connections.

        Raises:
            RuntimeError: uvicorn did not start in time.
        """
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.01)
        return self

    def request_stop(self) -> None:
        """Ask uvicorn to stop, without waiting (several apps then stop together)."""
        self._server.should_exit = True

    def stop(self) -> None:
        """Stop serving and release the port."""
        self.request_stop()
        if self._thread.is_alive():
            self._thread.join(10)
        self._sock.close()


@contextmanager
def serve(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` for the duration of the block; yield its base URL."""
    served = ServedApp(app, host=host, port=port).start()
    try:
        yield served.url
    finally:
        served.stop()
