"""Programming errors are not dependency failures, and a fork never inherits a held lock."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import switchgear as sg
from switchgear.testing import FakeClock


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


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_children_forked_while_threads_hammer_a_breaker_never_hang() -> None:
    """20 forks while 4 threads keep a breaker's lock busy: every child runs to the end."""
    breaker = sg.CircuitBreaker("forked", failure_threshold=3, open_timeout=0.001)
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                breaker.call(_boom)  # failures and trips: the lock is taken on every call
            except (RuntimeError, sg.CircuitOpenError):
                pass
            _ = breaker.state

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    outcomes = []
    try:
        for _ in range(20):
            time.sleep(0.005)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                signal.alarm(10)  # watchdog: a deadlocked child dies of SIGALRM
                code = 0
                try:
                    breaker.reset()
                    for _ in range(3):
                        try:
                            breaker.call(_boom)
                        except RuntimeError:
                            pass
                    if breaker.state is not sg.BreakerState.OPEN:
                        code = 3
                except BaseException:
                    code = 2
                os._exit(code)
            outcomes.append(pid)
    finally:
        stop.set()
        for t in threads:
            t.join()
    codes = []
    for pid in outcomes:
        _, status = os.waitpid(pid, 0)
        codes.append(os.waitstatus_to_exitcode(status))
    assert codes == [0] * 20, codes


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_children_forked_while_threads_use_everything_never_hang() -> None:
    """20 forks while 4 threads call a @protected function with a pool, read its window
    figures and render its registry: each child does all of that again, within a watchdog."""
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
    stop = threading.Event()

    def hammer(index: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                work(i % 3 == 0)
            except (RuntimeError, sg.SwitchgearError):
                pass
            if index == 0:
                metrics.window_stats()
            elif index == 1:
                generate_latest(registry)
                _get(web, "/metrics")  # the middleware's rendering gate and route cache
                with contextlib.suppress(sg.SwitchgearError):  # the breaker may be open
                    _get(web, "/hello")
            elif index == 2:
                pool.stats()

    threads = [threading.Thread(target=hammer, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    pids = []
    try:
        for _ in range(20):
            time.sleep(0.005)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                signal.alarm(10)  # watchdog: a deadlocked child dies of SIGALRM
                code = 0
                try:
                    breaker.reset()
                    assert work(False) == "ok"
                    metrics.window_stats()
                    assert b"switchgear_requests_total" in generate_latest(registry)
                    assert _get(web, "/hello") == b"ok"
                    assert b"switchgear_requests_total" in _get(web, "/metrics")
                    with pool.lease(timeout=5):
                        pass
                except BaseException:
                    code = 2
                os._exit(code)
            pids.append(pid)
    finally:
        stop.set()
        for t in threads:
            t.join()
    codes = []
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        codes.append(os.waitstatus_to_exitcode(status))
    assert codes == [0] * 20, codes
    pool.close()


def _get(app: Any, path: str) -> bytes:
    """One GET through a WSGI app, in this thread: the body."""
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
    }
    return b"".join(app(environ, lambda status, headers, exc=None: None))
