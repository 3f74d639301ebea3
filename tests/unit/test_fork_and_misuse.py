"""Programming errors are not dependency failures, and a fork never inherits a held lock."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import switchgear as sg
from switchgear.testing import FakeClock
from tests.conftest import wsgi_get


def test_a_non_callable_is_a_type_error_before_admission() -> None:
    breaker = sg.CircuitBreaker("misuse", failure_threshold=2)
    for _ in range(5):
        with pytest.raises(TypeError, match="fn must be callable, not NoneType"):
            breaker.call(None)  # type: ignore[arg-type]
    assert breaker.state is sg.BreakerState.CLOSED
    assert breaker.call(lambda: "still fine") == "still fine"


def test_a_non_callable_is_a_type_error_before_admission_async() -> None:
    breaker = sg.CircuitBreaker("misuse-async", failure_threshold=1)
    with pytest.raises(TypeError, match="fn must be callable"):
        asyncio.run(breaker.call_async("not a function"))  # type: ignore[arg-type]
    assert breaker.state is sg.BreakerState.CLOSED


def test_a_half_open_trial_permit_is_not_spent_on_a_non_callable() -> None:
    clock = FakeClock()
    breaker = sg.CircuitBreaker(
        "permit", failure_threshold=1, success_threshold=1, open_timeout=1.0, clock=clock
    )
    with pytest.raises(RuntimeError):
        breaker.call(_boom)
    clock.advance(1.0)
    with pytest.raises(TypeError):
        breaker.call(42)  # type: ignore[arg-type]
    assert breaker.call(lambda: "probe") == "probe"  # the one permit was still there
    assert breaker.state is sg.BreakerState.CLOSED


@pytest.mark.parametrize("value", ["no", 0, 1, None, "False"])
def test_record_result_takes_a_bool_only(value: object) -> None:
    breaker = sg.CircuitBreaker("record")
    with pytest.raises(TypeError, match="success must be a bool"):
        breaker.record_result(value)  # type: ignore[arg-type]


def _boom() -> None:
    raise RuntimeError("boom")


def fork_while_busy(
    step: Callable[[int], object], child: Callable[[], object], threads: int = 4
) -> list[int]:
    """Fork 20 children while ``threads`` threads run ``step(index)`` over and over.

    Each child runs ``child()`` and exits 0, or 2 if it raised. A child still running after
    15 s is hung (a lock the fork caught held): it is killed and reported as -9.
    """
    stop = threading.Event()
    # These tests are about switchgear's own locks. Transitions are logged, and a thread
    # writing to a buffered stream at the instant of a fork leaves the child's copy of that
    # stream's lock held (CPython resets logging's locks in a child, not buffered I/O's), so
    # the transition log is quiet here.
    quiet = logging.getLogger("switchgear.breaker")
    level = quiet.level
    quiet.setLevel(logging.ERROR)

    def loop(index: int) -> None:
        while not stop.is_set():
            step(index)

    workers = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(threads)]
    for t in workers:
        t.start()
    pids = []
    try:
        for _ in range(20):
            time.sleep(0.005)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                code = 0
                try:
                    child()
                except BaseException:
                    code = 2
                os._exit(code)
            pids.append(pid)
    finally:
        stop.set()
        for t in workers:
            t.join()
        quiet.setLevel(level)
    codes: dict[int, int] = {}
    deadline = time.monotonic() + 15.0
    while len(codes) < len(pids):
        for pid in pids:
            if pid in codes:
                continue
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                codes[pid] = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                codes[pid] = -9
        time.sleep(0.01)
    return [codes[pid] for pid in pids]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_children_forked_while_threads_hammer_a_breaker_never_hang() -> None:
    """20 forks while 4 threads keep a breaker's lock busy: every child runs to the end."""
    breaker = sg.CircuitBreaker("forked", failure_threshold=3, open_timeout=0.001)

    def step(index: int) -> None:
        with contextlib.suppress(RuntimeError, sg.CircuitOpenError):
            breaker.call(_boom)  # failures and trips: the lock is taken on every call
        _ = breaker.state

    def child() -> None:
        breaker.reset()
        for _ in range(3):
            with contextlib.suppress(RuntimeError):
                breaker.call(_boom)
        # Tripped (and, open_timeout being 1 ms, perhaps half-open already).
        assert breaker.state in (sg.BreakerState.OPEN, sg.BreakerState.HALF_OPEN)

    assert fork_while_busy(step, child) == [0] * 20


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_children_forked_while_threads_use_everything_never_hang() -> None:
    """20 forks while 4 threads call a @protected function with a pool, read its window
    figures, render its registry and go through a WSGIMiddleware: each child does all of
    that again."""
    registry = CollectorRegistry()
    name = "fork-everything"
    metrics = sg.Metrics(name, registry=registry)
    # Room for more than the four threads: a lease held by a thread that the fork does not
    # copy is never given back in the child, so a full pool would wait there by design.
    pool: sg.DynamicPool[Any] = sg.DynamicPool(None, name=name, min_size=1, max_size=8)
    breaker = sg.CircuitBreaker(name, failure_threshold=3, open_timeout=0.001)

    @sg.protected(name, breaker=breaker, metrics=metrics, pool=pool)
    def work(fail: bool) -> str:
        if fail:
            raise RuntimeError("boom")
        return "ok"

    def hello(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [work(False).encode()]

    web = sg.WSGIMiddleware(hello, registry=registry)
    calls = itertools.count()

    def step(index: int) -> None:
        with contextlib.suppress(RuntimeError, sg.SwitchgearError):
            work(next(calls) % 3 == 0)
        if index == 0:
            metrics.window_stats()
        elif index == 1:
            generate_latest(registry)
            _get(web, "/metrics")  # the middleware's rendering gate and route cache
            with contextlib.suppress(sg.SwitchgearError):  # the breaker may be open
                _get(web, "/hello")
        elif index == 2:
            pool.stats()

    def child() -> None:
        breaker.reset()
        assert work(False) == "ok"
        metrics.window_stats()
        assert b"switchgear_requests_total" in generate_latest(registry)
        assert _get(web, "/hello") == b"ok"
        assert b"switchgear_requests_total" in _get(web, "/metrics")
        with pool.lease(timeout=5):
            pass

    assert fork_while_busy(step, child) == [0] * 20
    pool.close()


def _get(app: Any, path: str) -> bytes:
    return wsgi_get(app, path)[1]
