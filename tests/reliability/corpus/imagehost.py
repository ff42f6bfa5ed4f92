"""An image host on 127.0.0.1 that misbehaves on purpose, in a thread, for one test.

Every handler ends by itself: the slow one after ``slow_s``, the stalled one when
:attr:`ImageHost.release` is set or after ``stall_s`` (then 404), the endless one
when the client hangs up or after ``endless_s`` / ``endless_bytes``, whichever
comes first. :meth:`ImageHost.stop` (or leaving the ``with``) shuts the server down.
"""

from __future__ import annotations

import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

__all__ = ["ImageHost"]

_PAGE = b"<!doctype html><html><body>not an image</body></html>"


class ImageHost:
    """Routes: /ok.jpg, /page.html, /slow.jpg, /stall.jpg, /endless.jpg, /huge-length.jpg,
    /error.jpg, /missing.jpg (404) and /redirect/{ok,metadata,loopback-ip,file,loop}.
    """

    def __init__(
        self,
        image: bytes,
        *,
        slow_s: float,
        stall_s: float = 120.0,
        endless_s: float = 20.0,
        endless_bytes: int = 1 << 28,
    ) -> None:
        self.image = image
        self.slow_s = slow_s
        self.endless_s = endless_s
        self.endless_bytes = endless_bytes
        self.stall_s = stall_s
        self.release = threading.Event()
        self.stopping = threading.Event()
        self.requests: list[str] = []
        self.endless_sent: list[int] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                host.requests.append(self.path)
                # The fetcher hanging up is what it should do on a bad answer.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    host.route(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def route(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path
        redirects = {
            "/redirect/ok": "/ok.jpg",
            "/redirect/metadata": "http://169.254.169.254/latest/meta-data/",
            "/redirect/loopback-ip": f"http://127.0.0.1:{self.port}/ok.jpg",
            "/redirect/file": "file:///etc/passwd",
            "/redirect/loop": "/redirect/loop",
        }
        if path in redirects:
            self._send(h, 302, b"", {"Location": redirects[path]})
        elif path == "/ok.jpg":
            self._send(h, 200, self.image, {"Content-Type": "image/jpeg"})
        elif path == "/page.html":
            self._send(h, 200, _PAGE, {"Content-Type": "text/html"})
        elif path == "/slow.jpg":
            self.stopping.wait(self.slow_s)
            self._send(h, 200, self.image, {"Content-Type": "image/jpeg"})
        elif path == "/stall.jpg":
            self.release.wait(self.stall_s)
            self._send(h, 404, b"gone", {})
        elif path == "/huge-length.jpg":
            h.send_response(200)
            h.send_header("Content-Length", str(1 << 40))
            h.end_headers()  # and no body: the length alone must be refused
        elif path == "/endless.jpg":
            self._endless(h)
        elif path == "/error.jpg":
            self._send(h, 500, b"boom", {})
        else:
            self._send(h, 404, b"not found", {})

    def _send(
        self, h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]
    ) -> None:
        h.send_response(status)
        for name, value in headers.items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _endless(self, h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"\xff" * 65536
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        sent = 0
        deadline = time.monotonic() + self.endless_s
        try:
            # Never the closing 0-length chunk: the body has no end.
            while (
                not self.stopping.is_set()
                and time.monotonic() < deadline
                and sent < self.endless_bytes
            ):
                h.wfile.write(frame)
                sent += len(chunk)
        finally:
            self.endless_sent.append(sent)
            h.close_connection = True
