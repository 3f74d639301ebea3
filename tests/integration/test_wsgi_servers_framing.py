"""Wrapped or not, a WSGI app's responses are framed the same by real servers.

wsgiref and waitress add ``Content-Length`` to a one-item body they can count, and serve a
``wsgi.file_wrapper`` result with their own file path (waitress: with a length). The
middleware must keep both possible, or waitress falls back to chunked encoding and
``Connection: close``. Real servers on real sockets; two requests per connection.
"""

from __future__ import annotations

import http.client
import io
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from switchgear.wsgi import WSGIMiddleware

pytestmark = pytest.mark.timeout(60)

waitress_server = pytest.importorskip("waitress.server")

BODY = b"hello, framing"
FILE = b"0123456789" * 500


class Body(list[bytes]):
    """A one-item list body that counts its close() calls."""

    closed = 0

    def close(self) -> None:
        Body.closed += 1


class CountingFile(io.BytesIO):
    closed_calls = 0

    def close(self) -> None:
        CountingFile.closed_calls += 1
        super().close()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ["PATH_INFO"] == "/file":
        wrapper: Callable[[Any], Iterable[bytes]] = environ["wsgi.file_wrapper"]
        return wrapper(CountingFile(FILE))
    return Body([BODY])


Serve = Callable[[Any], tuple[int, Callable[[], None]]]


def serve_wsgiref(target: Any) -> tuple[int, Callable[[], None]]:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, target, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(10)

    return server.server_port, stop


def serve_waitress(target: Any) -> tuple[int, Callable[[], None]]:
    server = waitress_server.create_server(target, host="127.0.0.1", port=0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def stop() -> None:
        server.close()
        thread.join(10)

    return int(server.effective_port), stop


def exchange(port: int, paths: list[str]) -> Iterator[tuple[str, Any, bytes, bool]]:
    """GET each path in turn, on one connection while the server keeps it open."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        for path in paths:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            framing = (
                response.getheader("Content-Length"),
                response.getheader("Transfer-Encoding"),
                response.getheader("Connection"),
            )
            yield path, framing, body, response.will_close
            if response.will_close:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    finally:
        conn.close()


PATHS = ["/", "/", "/file", "/file", "/"]


@pytest.mark.parametrize("serve", [serve_wsgiref, serve_waitress], ids=["wsgiref", "waitress"])
def test_wrapped_app_keeps_the_bare_apps_framing(serve: Serve) -> None:
    port, stop = serve(app)
    try:
        bare = list(exchange(port, PATHS))
    finally:
        stop()
    registry = CollectorRegistry()
    Body.closed = CountingFile.closed_calls = 0
    middleware = WSGIMiddleware(app, registry=registry)
    port, stop = serve(middleware)
    try:
        wrapped = list(exchange(port, PATHS))
    finally:
        stop()

    assert wrapped == bare
    assert [body for _, _, body, _ in wrapped] == [BODY, BODY, FILE, FILE, BODY]
    assert bare[0][1][0] == str(len(BODY))  # the servers do count a one-item body
    # Every response recorded once, and each body closed exactly once.
    assert registry.get_sample_value(
        "switchgear_requests_total", {"name": "<unmatched>", "outcome": "success"}
    ) == len(PATHS)
    assert (Body.closed, CountingFile.closed_calls) == (3, 2)


def test_waitress_keeps_the_connection_alive_through_the_middleware() -> None:
    port, stop = serve_waitress(WSGIMiddleware(app, registry=CollectorRegistry()))
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        lengths = []
        for path in ("/", "/file"):
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            assert not response.will_close
            lengths.append(response.getheader("Content-Length"))
        sock = conn.sock
        conn.request("GET", "/")
        conn.getresponse().read()
        assert conn.sock is sock  # the same socket served all three requests
        conn.close()
    finally:
        stop()
    assert lengths == [str(len(BODY)), str(len(FILE))]
