"""A webhook receiver for the tests: a real HTTP server on a free loopback port that records every POST, can be
stopped and started again on the same port (an outage), and answers a fixed status."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional

from mosquitto import free_port


@dataclass(frozen=True)
class Post:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """`start()`, `stop()` (connections refused until the next start), context manager; `.url`; `.posts` in order.
    `status`: the answer to every POST (200 unless a test wants a refusal)."""

    def __init__(self, port: Optional[int] = None, status: int = 200):
        self.port = port or free_port()
        self.status = status
        self.posts: list[Post] = []
        self._cond = threading.Condition()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with recv._cond:
                    if recv.status < 300:
                        recv.posts.append(Post(self.path, dict(self.headers.items()), body))
                    recv._cond.notify_all()
                self.send_response(recv.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def start(self) -> "Receiver":
        deadline = time.monotonic() + 10
        while True:
            try:
                self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
                break
            except OSError:  # the port of the last start may linger a moment
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def snapshot(self) -> list[Post]:
        with self._cond:
            return list(self.posts)

    def wait_for(self, pred: Callable[[list[Post]], bool], timeout: float = 10.0) -> list[Post]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(list(self.posts)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"not within {timeout:g} s; {len(self.posts)} posts")
                self._cond.wait(min(left, 0.2))
            return list(self.posts)

    def __enter__(self) -> "Receiver":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
