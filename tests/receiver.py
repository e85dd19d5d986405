"""A real HTTP receiver on 127.0.0.1 for webhook and paging tests (never a patched client).

Each request is recorded (method, path, headers, body, parsed JSON). Responses can be
scripted per path: a list of status codes served in turn (the last one repeats), and an
optional delay, so tests can exercise retries, timeouts and outages over real sockets.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One request the receiver got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8") or "null")


@dataclass
class Script:
    """How the receiver answers one path."""

    statuses: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0
    served: int = 0

    def next_status(self) -> int:
        status = self.statuses[min(self.served, len(self.statuses) - 1)]
        self.served += 1
        return status


class Receiver:
    """A threaded HTTP server recording every request; use as a context manager."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.scripts: dict[str, Script] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                with receiver._lock:
                    receiver.requests.append(Received(self.command, path, dict(self.headers.items()), body,
                                                      time.time()))
                    script = receiver.scripts.get(path) or Script()
                    status = script.next_status()
                    delay = script.delay
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            do_POST = do_GET = do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://{self.base}{path}"

    def script(self, path: str, statuses: list[int], delay: float = 0.0) -> None:
        with self._lock:
            self.scripts[path] = Script(list(statuses), delay)

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 10.0) -> list[Received]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.at(path)
            if len(got) >= count:
                return got
            time.sleep(0.02)
        return self.at(path)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
