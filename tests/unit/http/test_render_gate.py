"""Concurrent scrapes share renderings: bounded renderings per second, never a stale answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry

import switchgear as sg
from switchgear._http.render_gate import RenderGate
from tests.conftest import wsgi_get

SCRAPERS = 32
SECONDS = 1.0


def flood(call: Callable[[], Any], threads: int = SCRAPERS, seconds: float = SECONDS) -> int:
    """``threads`` threads call ``call`` back to back for ``seconds``; the number of calls."""
    done = [0] * threads
    deadline = time.monotonic() + seconds

    def work(i: int) -> None:
        while time.monotonic() < deadline:
            call()
            done[i] += 1

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(done)


def test_concurrent_callers_share_renderings_and_never_get_an_older_one() -> None:
    gate: RenderGate[float] = RenderGate(interval=0.1)
    stale: list[tuple[float, float]] = []

    def render() -> float:
        started = time.monotonic()
        time.sleep(0.005)  # the cost of a rendering
        return started

    def scrape() -> None:
        arrived = time.monotonic()
        started = gate.render("text", render)
        if started < arrived:
            stale.append((arrived, started))

    calls = flood(scrape)
    assert stale == []  # every answer was rendered after its request arrived
    # At most one rendering per interval (plus the first and one under way at the end),
    # while many more scrapes were answered.
    assert gate.renderings <= SECONDS / gate.interval + 2, gate.renderings
    assert calls > 3 * gate.renderings


def test_formats_are_rendered_apart_and_a_failure_reaches_its_sharers() -> None:
    gate: RenderGate[str] = RenderGate(interval=0.0)
    assert gate.render("text", lambda: "text body") == "text body"
    assert gate.render("openmetrics", lambda: "om body") == "om body"

    def broken() -> str:
        raise OSError("disk")

    errors = []
    try:
        gate.render("text", broken)
    except OSError as exc:
        errors.append(exc)
    assert len(errors) == 1
    assert gate.render("text", lambda: "recovered") == "recovered"


def _scrape_wsgi(app: Any, path: str = "/metrics") -> tuple[str, bytes]:
    return wsgi_get(app, path)


def test_a_scrape_flood_on_the_middleware_renders_at_most_ten_times_a_second() -> None:
    registry = CollectorRegistry()

    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    renderings = [0]

    class Counting:
        """A collector that counts how often the registry is rendered."""

        def collect(self) -> Iterable[Any]:
            renderings[0] += 1
            return []

    registry.register(Counting())
    wrapped = sg.WSGIMiddleware(app, registry=registry)
    assert _scrape_wsgi(wrapped, "/hello")[0].startswith("200")
    statuses: list[str] = []
    calls = flood(lambda: statuses.append(_scrape_wsgi(wrapped)[0]))
    assert set(statuses) == {"200 OK"}
    assert renderings[0] <= SECONDS / 0.1 + 2, renderings
    assert calls > 3 * renderings[0]
    # Sequential: a request is in the very next scrape.
    _scrape_wsgi(wrapped, "/hello")
    body = _scrape_wsgi(wrapped)[1].decode()
    assert 'switchgear_requests_total{name="<unmatched>",outcome="success"} 2.0' in body
