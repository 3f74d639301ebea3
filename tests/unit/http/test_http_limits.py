"""The middlewares' concurrency limits: one shared by every request, or one per route."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import pytest
from flask import Flask
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from werkzeug.test import Client

import switchgear as sg
from switchgear.asgi import ASGIMiddleware
from switchgear.testing import FakeClock
from switchgear.wsgi import WSGIMiddleware

pytestmark = [pytest.mark.timeout(30), pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def fixed(n: int, name: str) -> sg.AdaptiveLimit:
    return sg.AdaptiveLimit(name, initial_limit=n, min_limit=n, max_limit=n)


def sample(registry: CollectorRegistry, metric: str, **labels: str) -> float | None:
    return registry.get_sample_value(metric, labels)


class Gate:
    """Holds the ``/slow`` handler until released, and tells when it is inside."""

    def __init__(self) -> None:
        self.inside = asyncio.Event()
        self.leave = asyncio.Event()


def starlette_app(gate: Gate) -> Starlette:
    async def slow(request: Request) -> Response:
        gate.inside.set()
        await gate.leave.wait()
        return PlainTextResponse("slow")

    async def fast(request: Request) -> Response:
        return PlainTextResponse("fast")

    async def fail(request: Request) -> Response:
        return PlainTextResponse("down", status_code=500)

    return Starlette(routes=[Route("/slow", slow), Route("/fast", fast), Route("/fail", fail)])


async def test_a_shared_limit_answers_503_with_retry_after_and_counts_a_limit_rejection() -> None:
    registry = CollectorRegistry()
    limit = fixed(1, "app")
    gate = Gate()
    mw = ASGIMiddleware(starlette_app(gate), limit=limit, registry=registry)
    transport = httpx.ASGITransport(app=mw)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/fast")).status_code == 200  # the route is learned
        held = asyncio.create_task(client.get("/slow"))
        await gate.inside.wait()
        assert limit.in_flight == 1
        refused = await client.get("/fast")
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert json.loads(refused.content) == {
            "error": "limit",
            "name": "GET /fast",
            "retry_after": 1,
        }
        gate.leave.set()
        assert (await held).status_code == 200
        assert (await client.get("/fast")).status_code == 200
        metrics = (await client.get("/metrics")).text
        status = (await client.get("/switchgear")).json()
    assert status["limits"] == {
        "app": {
            "algorithm": "gradient",
            "limit": 1,
            "in_flight": 0,
            "min_limit": 1,
            "max_limit": 1,
            "baseline": None,
            "recent": None,
            "probing": False,
        }
    }
    assert limit.in_flight == 0
    assert sample(registry, "switchgear_rejected_total", name="GET /fast", reason="limit") == 1
    assert sample(registry, "switchgear_requests_total", name="GET /fast", outcome="success") == 2
    assert 'switchgear_limit_current{name="app"} 1.0' in metrics
    # A refusal is not the route's failure: its breaker never saw it.
    assert sample(registry, "switchgear_circuit_state", name="GET /fast", state="closed") == 1


async def test_route_limits_apply_to_their_route_and_the_rest_share_the_other() -> None:
    registry = CollectorRegistry()
    slow_limit, shared = fixed(1, "slow-route"), fixed(5, "shared")
    gate = Gate()
    mw = ASGIMiddleware(
        starlette_app(gate),
        limit=shared,
        route_limits={"GET /slow": slow_limit},
        registry=registry,
    )
    transport = httpx.ASGITransport(app=mw)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.get("/fast")
        gate.leave.set()
        await client.get("/slow")  # learn both routes
        gate.leave.clear()
        gate.inside.clear()
        held = asyncio.create_task(client.get("/slow"))
        await gate.inside.wait()
        assert (slow_limit.in_flight, shared.in_flight) == (1, 0)
        assert (await client.get("/slow")).status_code == 503
        assert (await client.get("/fast")).status_code == 200  # its own limit has room
        gate.leave.set()
        await held
    assert sample(registry, "switchgear_rejected_total", name="GET /slow", reason="limit") == 1
    assert (slow_limit.in_flight, shared.in_flight) == (0, 0)


async def test_failed_responses_lower_the_limit_and_successes_do_not() -> None:
    clock = FakeClock()
    limit = sg.AdaptiveLimit(
        "learns", algorithm="aimd", initial_limit=10, min_limit=1, max_limit=10, clock=clock
    )
    mw = ASGIMiddleware(starlette_app(Gate()), limit=limit, registry=CollectorRegistry())
    transport = httpx.ASGITransport(app=mw)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for _ in range(12):
            await client.get("/fast")
        clock.advance(0.2)
        await client.get("/fast")
        assert limit.limit == 10
        await client.get("/fail")  # a 500: dropped
        clock.advance(0.2)
        await client.get("/fast")
    assert limit.limit == 9


async def test_a_pool_bounded_by_a_limit_answers_503_for_the_limit() -> None:
    registry = CollectorRegistry()
    limit = fixed(1, "pool-bound")
    pool = sg.DynamicPool(None, name="workers", min_size=0, max_size=4, limit=limit)
    gate = Gate()
    mw = ASGIMiddleware(starlette_app(gate), pool=pool, registry=registry)
    transport = httpx.ASGITransport(app=mw)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.get("/fast")
        held = asyncio.create_task(client.get("/slow"))
        await gate.inside.wait()
        refused = await client.get("/fast")
        assert refused.status_code == 503
        assert json.loads(refused.content)["error"] == "limit"
        gate.leave.set()
        await held
    assert limit.in_flight == 0
    assert pool.stats().in_use == 0
    assert sample(registry, "switchgear_rejected_total", name="GET /fast", reason="limit") == 1


def test_wsgi_applies_the_limit_to_concurrent_requests() -> None:
    registry = CollectorRegistry()
    limit = fixed(1, "flask")
    inside, leave = threading.Event(), threading.Event()
    flask = Flask(__name__)

    @flask.get("/slow")
    def slow() -> str:
        inside.set()
        leave.wait(10)
        return "slow"

    @flask.get("/fast")
    def fast() -> str:
        return "fast"

    mw = WSGIMiddleware(flask.wsgi_app, limit=limit, registry=registry)
    assert Client(mw).get("/fast").status_code == 200
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(Client(mw).get("/slow").status_code))
    worker.start()
    assert inside.wait(10)
    refused = Client(mw).get("/fast")
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    leave.set()
    worker.join(10)
    assert results == [200]
    assert limit.in_flight == 0
    assert sample(registry, "switchgear_rejected_total", name="GET /fast", reason="limit") == 1


def test_limit_options_are_checked_and_name_what_is_wrong() -> None:
    def app(*args: Any) -> Any:
        return None

    reg = CollectorRegistry()
    with pytest.raises(TypeError, match=r"limit must be a switchgear\.AdaptiveLimit, not int"):
        ASGIMiddleware(app, limit=5, registry=reg)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"route_limits keys .*got '/search'"):
        WSGIMiddleware(app, route_limits={"/search": fixed(1, "x")}, registry=reg)
    with pytest.raises(TypeError, match=r"route_limits\['GET /x'\] must be a switchgear"):
        ASGIMiddleware(app, route_limits={"GET /x": 3}, registry=reg)  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="route_limits must be a mapping"):
        ASGIMiddleware(app, route_limits=[("GET /x", fixed(1, "y"))], registry=reg)  # type: ignore[arg-type]
    bound = fixed(2, "bound")
    pool = sg.DynamicPool(None, name="bounded-pool", min_size=0, limit=bound)
    with pytest.raises(ValueError, match="bounded by the same AdaptiveLimit"):
        ASGIMiddleware(app, pool=pool, limit=bound, registry=reg)
