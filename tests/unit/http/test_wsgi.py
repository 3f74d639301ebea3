"""WSGIMiddleware in process: Flask route keys, breaker, body-long latency, endpoints."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from flask import Blueprint, Flask, Response, stream_with_context
from prometheus_client import CollectorRegistry
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

from switchgear import BreakerState
from switchgear.testing import FakeClock
from switchgear.wsgi import WSGIMiddleware, install_exception_handlers

pytestmark = pytest.mark.timeout(30)

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


class State:
    def __init__(self) -> None:
        self.count = 0
        self.failing = False


def build_flask(state: State, clock: FakeClock) -> Flask:
    app = Flask("switchgear_test_wsgi")

    @app.get("/hello/<name>")
    def hello(name: str) -> str:
        state.count += 1
        return f"hi {name}"

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        state.count += 1
        return {"id": item_id}

    @app.get("/flaky")
    def flaky() -> tuple[str, int]:
        state.count += 1
        return ("down", 500) if state.failing else ("ok", 200)

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret detail")

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[bytes]:
            for _ in range(3):
                clock.advance(0.3)
                yield b"chunk\n"

        return Response(stream_with_context(chunks()))

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    bp = Blueprint("bp", "bp", url_prefix="/bp")

    @bp.get("/x/<int:i>")
    def x(i: int) -> str:
        return str(i)

    app.register_blueprint(bp)
    return app


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def state() -> State:
    return State()


def make(
    state: State, clock: FakeClock, registry: CollectorRegistry, **options: Any
) -> tuple[WSGIMiddleware, Client]:
    options.setdefault("breaker_options", {})
    options["breaker_options"].setdefault("clock", clock)
    flask_app = build_flask(state, clock)
    mw = WSGIMiddleware(flask_app.wsgi_app, registry=registry, clock=clock, **options)
    flask_app.wsgi_app = mw  # type: ignore[method-assign]
    return mw, Client(flask_app)


def value(registry: CollectorRegistry, metric: str, **labels: str) -> float:
    sample = registry.get_sample_value(metric, labels)
    return 0.0 if sample is None else sample


def requests(registry: CollectorRegistry, name: str, outcome: str = "success") -> float:
    return value(registry, "switchgear_requests_total", name=name, outcome=outcome)


def names(registry: CollectorRegistry) -> set[str]:
    found: set[str] = set()
    for metric in registry.collect():
        if metric.name == "switchgear_requests":
            found.update(s.labels["name"] for s in metric.samples)
    return found


def test_flask_rule_is_the_key(state: State, clock: FakeClock, registry: CollectorRegistry) -> None:
    _, c = make(state, clock, registry)
    for i in range(100):
        assert c.get(f"/items/{i}").status_code == 200
    c.get("/hello/bob")
    c.get("/bp/x/3")
    assert c.get("/nope").status_code == 404
    assert c.post("/hello/bob").status_code == 405
    assert requests(registry, "GET /items/<int:item_id>") == 100
    assert requests(registry, "GET /hello/<name>") == 1
    assert requests(registry, "GET /bp/x/<int:i>") == 1
    assert requests(registry, "<unmatched>") == 2
    assert names(registry) == {
        "GET /items/<int:item_id>",
        "GET /hello/<name>",
        "GET /bp/x/<int:i>",
        "<unmatched>",
    }


def test_dispatcher_mount_prefix(registry: CollectorRegistry) -> None:
    sub = Flask("sub")

    @sub.get("/q/<z>")
    def q(z: str) -> str:
        return z

    root = Flask("root")
    mw = WSGIMiddleware(DispatcherMiddleware(root, {"/sub": sub}), registry=registry)
    c = Client(mw)
    assert c.get("/sub/q/1").status_code == 200
    assert requests(registry, "GET /sub/q/<z>") == 1


def test_open_breaker_503_and_recovery(
    state: State, clock: FakeClock, registry: CollectorRegistry
) -> None:
    mw, c = make(
        state,
        clock,
        registry,
        breaker_options={"failure_threshold": 2, "open_timeout": 4.2, "success_threshold": 1},
    )
    state.failing = True
    assert c.get("/flaky").status_code == 500
    assert c.get("/flaky").status_code == 500
    before = state.count
    r = c.get("/flaky")
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "5"
    assert r.json == {"error": "circuit_open", "name": "GET /flaky", "retry_after": 5}
    assert state.count == before
    clock.advance(4.2)
    state.failing = False
    assert c.get("/flaky").status_code == 200
    assert mw.breakers()["GET /flaky"].state is BreakerState.CLOSED
    assert requests(registry, "GET /flaky", "error") == 2
    assert (
        value(registry, "switchgear_rejected_total", name="GET /flaky", reason="circuit_open") == 1
    )


def test_flask_handled_exception_is_a_500_failure(
    state: State, clock: FakeClock, registry: CollectorRegistry
) -> None:
    _, c = make(state, clock, registry)
    r = c.get("/boom")
    assert r.status_code == 500
    assert b"secret" not in r.data
    assert requests(registry, "GET /boom", "error") == 1


def test_exceptions_are_reraised_and_counted(registry: CollectorRegistry) -> None:
    def raising(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        raise ValueError("before the response")

    def raising_body(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        yield b"part"
        raise ValueError("mid body")

    with pytest.raises(ValueError, match="before"):
        Client(WSGIMiddleware(raising, registry=registry)).get("/")
    with pytest.raises(ValueError, match="mid body"):
        Client(WSGIMiddleware(raising_body, registry=registry)).get("/", buffered=True)
    assert requests(registry, "<unmatched>", "error") == 2


def test_a_404_shaped_like_a_route_counts_on_unmatched(registry: CollectorRegistry) -> None:
    app = Flask("ids")

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    c = Client(WSGIMiddleware(app, registry=registry))
    for path in ["/items/1", "/items/deadbeefdeadbeef", "/items/2", "/items/0123456789abcdef"]:
        c.get(path)
    assert requests(registry, "GET /items/<int:item_id>") == 2
    assert requests(registry, "<unmatched>") == 2


def test_a_propagated_exception_stays_on_the_admitted_route(registry: CollectorRegistry) -> None:
    """Flask re-raising (PROPAGATE_EXCEPTIONS) leaves no request behind: the guess stands."""
    app = Flask("propagating")
    app.config["PROPAGATE_EXCEPTIONS"] = True
    fail = [False]

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        if fail[0]:
            raise RuntimeError("db down")
        return {"id": item_id}

    c = Client(WSGIMiddleware(app, registry=registry))
    c.get("/items/1")
    fail[0] = True
    with pytest.raises(RuntimeError, match="db down"):
        c.get("/items/2")
    assert requests(registry, "GET /items/<int:item_id>", "error") == 1
    assert requests(registry, "<unmatched>", "error") == 0


def test_streaming_latency_runs_until_exhausted(
    state: State, clock: FakeClock, registry: CollectorRegistry
) -> None:
    _, c = make(state, clock, registry)
    assert c.get("/stream").data == b"chunk\n" * 3
    total = value(registry, "switchgear_request_duration_seconds_sum", name="GET /stream")
    assert total == pytest.approx(0.9)


def test_recorded_before_the_last_chunk_when_length_is_known(registry: CollectorRegistry) -> None:
    clock = FakeClock()

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", "6")])
        clock.advance(0.1)
        yield b"abc"
        clock.advance(0.1)
        yield b"def"
        clock.advance(9.0)  # after the body is complete: not the client's latency

    mw = WSGIMiddleware(app, registry=registry, clock=clock)
    body = iter(mw({"PATH_INFO": "/", "REQUEST_METHOD": "GET"}, lambda s, h, e=None: None))
    assert next(body) == b"abc"
    assert requests(registry, "<unmatched>") == 0
    assert next(body) == b"def"
    assert requests(registry, "<unmatched>") == 1  # visible before the server sends it
    assert list(body) == []
    body.close()  # type: ignore[attr-defined]
    assert requests(registry, "<unmatched>") == 1
    assert value(
        registry, "switchgear_request_duration_seconds_sum", name="<unmatched>"
    ) == pytest.approx(0.2)


def test_client_disconnect_is_not_recorded(registry: CollectorRegistry) -> None:
    closed = []

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        environ["switchgear.route"] = "/ticks"  # a route of its own, with a breaker that counts
        start_response("200 OK", [])
        try:
            while True:
                yield b"tick"
        finally:
            closed.append(True)

    mw = WSGIMiddleware(app, registry=registry, breaker_options={"failure_threshold": 1})
    for _ in range(3):
        body = mw({"PATH_INFO": "/", "REQUEST_METHOD": "GET"}, lambda s, h, e=None: None)
        it = iter(body)
        next(it)
        body.close()  # type: ignore[attr-defined]
    assert closed == [True] * 3
    assert requests(registry, "GET /ticks") == 0
    assert requests(registry, "GET /ticks", "error") == 0
    assert mw.breakers()["GET /ticks"].state is BreakerState.CLOSED


def test_start_response_exc_info_passes_through(registry: CollectorRegistry) -> None:
    seen: list[Any] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            raise KeyError("x")
        except KeyError:
            import sys

            start_response("500 Internal Server Error", [], sys.exc_info())
        return [b"err"]

    def server_start(status: str, headers: list[Any], exc_info: Any = None) -> None:
        seen.append(exc_info)

    body = WSGIMiddleware(app, registry=registry)({"PATH_INFO": "/"}, server_start)
    assert list(body) == [b"err"]
    assert seen[0][0] is KeyError
    assert requests(registry, "<unmatched>", "error") == 1


def test_endpoints_auth_and_exclusions(
    state: State, clock: FakeClock, registry: CollectorRegistry
) -> None:
    _, c = make(state, clock, registry, endpoint_auth="tok3n", exclude_paths=["/healthz"])
    c.get("/hello/x")
    c.get("/healthz")
    for path in ("/metrics", "/switchgear"):
        r = c.get(path)
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == "Bearer"
        r = c.get(path, headers={"Authorization": "Bearer tok3n"})
        assert r.status_code == 200
    r = c.get("/metrics", headers={"Authorization": "Bearer tok3n"})
    assert 'switchgear_requests_total{name="GET /hello/<name>",outcome="success"} 1.0' in r.text
    doc = c.get("/switchgear", headers={"Authorization": "Bearer tok3n"}).json
    assert doc is not None
    assert set(doc) == {"names", "pools", "limits", "memory", "metrics_errors"}
    assert doc["names"]["GET /hello/<name>"]["circuit_breaker"] == {"state": "closed"}
    assert doc["names"]["GET /hello/<name>"]["total"]["request_count"] == 1
    assert names(registry) == {"GET /hello/<name>"}
    om = c.get(
        "/metrics",
        headers={"Authorization": "Bearer tok3n", "Accept": "application/openmetrics-text"},
    )
    assert om.headers["Content-Type"].startswith("application/openmetrics-text")
    assert c.delete("/metrics", headers={"Authorization": "Bearer tok3n"}).status_code == 405


def test_async_auth_predicate_is_denied_under_wsgi(registry: CollectorRegistry) -> None:
    async def check(headers: Any) -> bool:
        return True

    mw = WSGIMiddleware(lambda e, s: [], registry=registry, endpoint_auth=check)
    assert Client(mw).get("/metrics").status_code == 401


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"PATH_INFO": None, "REQUEST_METHOD": None},
        {"PATH_INFO": "/Ã¼/%zz", "REQUEST_METHOD": "BREW"},
        {"PATH_INFO": "/" + "a" * 100_000, "REQUEST_METHOD": "GET"},
        {"PATH_INFO": "/metrics", "REQUEST_METHOD": "GET", "HTTP_AUTHORIZATION": "Bearer \udcff"},
        {"PATH_INFO": "/x", "SCRIPT_NAME": 5},
    ],
)
def test_malformed_environs_never_crash(environ: Environ, registry: CollectorRegistry) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    mw = WSGIMiddleware(app, registry=registry, endpoint_auth="t")
    statuses: list[str] = []
    body = mw(environ, lambda s, h, e=None: statuses.append(s))
    b"".join(body)
    close = getattr(body, "close", None)
    if close is not None:
        close()
    assert statuses


def test_pool_rejection_name_and_status_are_configurable() -> None:
    with pytest.raises(ValueError, match="pool_full_status"):
        WSGIMiddleware(lambda e, s: [], pool_full_status=302)


def test_invalid_options_name_the_argument() -> None:
    with pytest.raises(TypeError, match="wsgi_app"):
        WSGIMiddleware(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="breaker_options"):
        WSGIMiddleware(lambda e, s: [], breaker_options={"open_timeout": -1})
    with pytest.raises(TypeError, match="exclude_paths"):
        WSGIMiddleware(lambda e, s: [], exclude_paths="/x")


def test_rejection_body_is_json(
    state: State, clock: FakeClock, registry: CollectorRegistry
) -> None:
    _, c = make(state, clock, registry, breaker_options={"failure_threshold": 1})
    state.failing = True
    c.get("/flaky")
    r = c.get("/flaky")
    assert r.headers["Content-Type"] == "application/json"
    assert json.loads(r.data)["error"] == "circuit_open"


def test_full_pool_rejects_and_releases_on_close(registry: CollectorRegistry) -> None:
    from switchgear import DynamicPool

    runs = []

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        runs.append(1)
        start_response("200 OK", [])
        return [b"ok"]

    pool = DynamicPool(None, name="w-slots", min_size=0, max_size=1, max_waiting=0)
    try:
        mw = WSGIMiddleware(app, registry=registry, pool=pool, pool_full_status=429)
        held = mw({"PATH_INFO": "/a", "REQUEST_METHOD": "GET"}, lambda s, h, e=None: None)
        statuses: list[str] = []
        body = mw(
            {"PATH_INFO": "/a", "REQUEST_METHOD": "GET"}, lambda s, h, e=None: statuses.append(s)
        )
        assert statuses == ["429 Too Many Requests"]
        assert json.loads(b"".join(body))["error"] == "pool_full"
        assert len(runs) == 1
        assert pool.stats().in_use == 1
        assert list(held) == [b"ok"]
        held.close()  # type: ignore[attr-defined]
        assert pool.stats().in_use == 0
        assert value(registry, "switchgear_cold_starts_total", name="<unmatched>") == 1
        assert (
            value(registry, "switchgear_rejected_total", name="<unmatched>", reason="pool_full")
            == 1
        )
        doc = Client(mw).get("/switchgear").json
        assert doc is not None
        assert doc["pools"]["w-slots"]["in_use"] == 0
    finally:
        pool.close()


def test_a_route_breakers_trip_names_the_last_failure(
    state: State, clock: FakeClock, registry: CollectorRegistry
) -> None:
    """An error status, or the exception a framework turned into one, is the last failure."""
    options: dict[str, Any] = {"failure_threshold": 2, "clock": clock}
    flask_app = build_flask(state, clock)
    install_exception_handlers(flask_app)
    mw = WSGIMiddleware(flask_app.wsgi_app, registry=registry, clock=clock, breaker_options=options)
    flask_app.wsgi_app = mw  # type: ignore[method-assign]
    c = Client(flask_app)
    state.failing = True
    for _ in range(2):
        c.get("/flaky")
        c.get("/boom")
    flaky = mw.breakers()["GET /flaky"].transitions()[-1]
    assert (flaky.error_type, flaky.error_message) == (
        "HTTP 500",
        "the app answered 500 Internal Server Error",
    )
    boom = mw.breakers()["GET /boom"].transitions()[-1]
    assert (boom.error_type, boom.error_message) == ("RuntimeError", "secret detail")
