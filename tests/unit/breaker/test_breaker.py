"""CircuitBreaker: the basic cycle, regressions for pitfalls of naive breakers, the options."""

from __future__ import annotations

import asyncio
import inspect
import logging
from datetime import timedelta
from typing import Any

import pytest

import switchgear as sg
from switchgear import BreakerState as S
from switchgear.testing import FakeClock


class Boom(Exception):
    pass


def ok() -> str:
    return "ok"


def fail() -> None:
    raise Boom("dependency down")


def run(br: sg.CircuitBreaker, fn: Any = ok) -> Any:
    try:
        return br.call(fn)
    except Boom as exc:
        return exc


def transitions(br: sg.CircuitBreaker) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    br.add_listener(lambda old, new: seen.append((old.value, new.value)))
    return seen


# -- the basic cycle ---------------------------------------------------------------------


def test_stays_closed_under_success() -> None:
    br = sg.CircuitBreaker("test")
    for _ in range(10):
        assert br.call(ok) == "ok"
    assert br.state is S.CLOSED


def test_opens_after_threshold_and_rejects(clock: FakeClock) -> None:
    br = sg.CircuitBreaker("test", failure_threshold=3, open_timeout=1.0, clock=clock)
    for _ in range(3):
        run(br, fail)
    assert br.state is S.OPEN
    with pytest.raises(sg.CircuitOpenError) as info:
        br.call(ok)
    assert info.value.name == "test"
    assert info.value.reason == "circuit_open"
    assert info.value.retry_after == pytest.approx(1.0)
    assert isinstance(info.value, sg.SwitchgearError)


def test_half_opens_after_timeout(clock: FakeClock) -> None:
    br = sg.CircuitBreaker(
        "test", failure_threshold=1, success_threshold=1, open_timeout=0.1, clock=clock
    )
    run(br, fail)
    assert br.state is S.OPEN
    clock.advance(0.15)
    assert br.allow_request() is True
    assert br.state is S.HALF_OPEN


def test_documented_defaults() -> None:
    br = sg.CircuitBreaker("defaults")
    assert (br.failure_threshold, br.success_threshold, br.open_timeout) == (5, 3, 30.0)
    assert br.half_open_max_calls == 3
    assert (br.window, br.minimum_calls) == (60.0, 10)


# -- regressions for naive-breaker pitfalls ------------------------------------------------


def test_defect_unlimited_half_open_admission(clock: FakeClock) -> None:
    """A naive breaker admits every caller in HALF_OPEN (a thundering herd); this one does not."""
    br = sg.CircuitBreaker(
        "herd", failure_threshold=1, success_threshold=2, open_timeout=1.0, clock=clock
    )
    run(br, fail)
    clock.advance(1.0)
    tokens = [br.admit(), br.admit()]
    with pytest.raises(sg.CircuitOpenError) as info:
        br.admit()
    assert info.value.reason == "half_open_full"
    assert all(t is not None and t < 0 for t in tokens)


def test_defect_lost_and_unordered_listener_calls(clock: FakeClock) -> None:
    """Listeners fired concurrently lose order and errors; these run in order, isolated."""
    calls: list[str] = []

    def broken(old: S, new: S) -> None:
        calls.append("broken")
        raise RuntimeError("listener bug")

    br = sg.CircuitBreaker(
        "order", failure_threshold=1, success_threshold=1, open_timeout=1.0, clock=clock
    )
    br.add_listener(broken)
    seen = transitions(br)
    run(br, fail)
    clock.advance(1.0)
    assert br.call(ok) == "ok"
    assert seen == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert calls == ["broken"] * 3


def test_defect_read_lock_upgrade_race_one_transition_per_trip() -> None:
    """Checking under a read lock and then upgrading lets several callers each
    move OPEN -> HALF_OPEN. Here each transition is made once (see the concurrency tests)."""
    clock = FakeClock()
    br = sg.CircuitBreaker("race", failure_threshold=1, open_timeout=1.0, clock=clock)
    seen = transitions(br)
    run(br, fail)
    clock.advance(5.0)
    for _ in range(10):
        br.allow_request()
        assert br.state is S.HALF_OPEN
    assert seen == [("closed", "open"), ("open", "half_open")]


def test_defect_idle_open_breaker_reports_half_open(clock: FakeClock) -> None:
    br = sg.CircuitBreaker("idle", failure_threshold=1, open_timeout=2.0, clock=clock)
    run(br, fail)
    clock.advance(1.999)
    assert br.state is S.OPEN
    clock.advance(0.001)
    assert br.state is S.HALF_OPEN


# -- HALF_OPEN ------------------------------------------------------------------------------


def half_open(clock: FakeClock, **options: Any) -> sg.CircuitBreaker:
    options.setdefault("failure_threshold", 1)
    options.setdefault("open_timeout", 10.0)
    br = sg.CircuitBreaker("ho", clock=clock, **options)
    run(br, fail)
    clock.advance(br.open_timeout)
    assert br.state is S.HALF_OPEN
    return br


def test_success_threshold_closes(clock: FakeClock) -> None:
    br = half_open(clock, success_threshold=3)
    seen = transitions(br)
    for _ in range(2):
        br.call(ok)
        assert br.state is S.HALF_OPEN
    br.call(ok)
    assert br.state is S.CLOSED
    assert seen == [("half_open", "closed")]


def test_any_trial_failure_reopens(clock: FakeClock) -> None:
    br = half_open(clock, success_threshold=3)
    br.call(ok)
    run(br, fail)
    assert br.state is S.OPEN
    with pytest.raises(sg.CircuitOpenError) as info:
        br.call(ok)
    assert info.value.retry_after == pytest.approx(10.0)


def test_hung_trial_call_reopens_after_open_timeout(clock: FakeClock) -> None:
    br = half_open(clock, success_threshold=1)
    hung = br.admit()
    with pytest.raises(sg.CircuitOpenError):
        br.admit()
    clock.advance(9.0)
    assert br.state is S.HALF_OPEN
    clock.advance(1.0)
    assert br.state is S.OPEN  # the hung probe counted as a failure
    clock.advance(10.0)
    assert br.state is S.HALF_OPEN
    # The hung call finally finishes: it belongs to an earlier episode and changes nothing.
    br.finish(hung, 1, 25.0)
    assert br.state is S.HALF_OPEN
    assert br.call(ok) == "ok"
    assert br.state is S.CLOSED


def test_ignored_trial_returns_its_permit(clock: FakeClock) -> None:
    br = half_open(clock, success_threshold=1, ignore_on=KeyError)

    def missing() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        br.call(missing)
    assert br.state is S.HALF_OPEN
    assert br.call(ok) == "ok"
    assert br.state is S.CLOSED


def test_half_open_max_calls_larger_than_success_threshold(clock: FakeClock) -> None:
    br = half_open(clock, success_threshold=1, half_open_max_calls=3)
    tokens = [br.admit() for _ in range(3)]
    with pytest.raises(sg.CircuitOpenError):
        br.admit()
    br.finish(tokens[0], 1, 0.0)
    assert br.state is S.CLOSED
    # Late finishers of the closed episode change nothing.
    br.finish(tokens[1], 0, 0.0)
    br.finish(tokens[2], 0, 0.0)
    assert br.state is S.CLOSED


def test_retry_after_when_half_open_is_full(clock: FakeClock) -> None:
    br = half_open(clock, success_threshold=1)
    br.admit()
    with pytest.raises(sg.CircuitOpenError) as info:
        br.admit()
    assert 0 < info.value.retry_after <= 1.0


# -- generations ----------------------------------------------------------------------------


def test_result_from_earlier_generation_is_ignored(clock: FakeClock) -> None:
    br = sg.CircuitBreaker(
        "gen", failure_threshold=2, success_threshold=1, open_timeout=1.0, clock=clock
    )
    slow_call = br.admit()  # admitted while CLOSED
    run(br, fail)
    run(br, fail)
    assert br.state is S.OPEN
    clock.advance(1.0)
    assert br.call(ok) == "ok"
    assert br.state is S.CLOSED
    # The failure of the call admitted in the first CLOSED generation must not count now.
    run(br, fail)
    br.finish(slow_call, 0, 0.1)
    assert br.state is S.CLOSED


def test_success_resets_the_streak(clock: FakeClock) -> None:
    br = sg.CircuitBreaker("streak", failure_threshold=3, clock=clock)
    for _ in range(5):
        run(br, fail)
        run(br, fail)
        br.call(ok)
    assert br.state is S.CLOSED
    for _ in range(3):
        run(br, fail)
    assert br.state is S.OPEN


# -- rate rules ------------------------------------------------------------------------------


def test_failure_rate_rule(clock: FakeClock) -> None:
    br = sg.CircuitBreaker(
        "rate",
        failure_threshold=100,
        failure_rate_threshold=0.5,
        minimum_calls=10,
        window=60.0,
        clock=clock,
    )
    # Alternating results never reach the streak, but the rate is 50%.
    for i in range(9):
        run(br, fail if i % 2 == 0 else ok)
        clock.advance(1.0)
    assert br.state is S.CLOSED  # 9 calls < minimum_calls
    run(br, fail)  # 10 calls, 6 failures
    assert br.state is S.OPEN


def test_failure_rate_forgets_old_calls(clock: FakeClock) -> None:
    br = sg.CircuitBreaker(
        "rate-old",
        failure_threshold=100,
        failure_rate_threshold=0.5,
        minimum_calls=4,
        window=10.0,
        clock=clock,
    )
    for _ in range(3):
        run(br, fail)
    clock.advance(11.0)  # the failures leave the window
    for _ in range(3):
        br.call(ok)
    run(br, fail)
    assert br.state is S.CLOSED  # 1 failure in 4 calls


def test_slow_call_rate_rule(clock: FakeClock) -> None:
    br = sg.CircuitBreaker(
        "slow",
        slow_call_duration=timedelta(seconds=2),
        slow_call_rate_threshold=0.8,
        minimum_calls=5,
        clock=clock,
    )

    def slow() -> str:
        clock.advance(2.5)
        return "slow"

    br.call(ok)
    for _ in range(3):
        assert br.call(slow) == "slow"
    assert br.state is S.CLOSED  # 4 calls < minimum_calls
    br.call(slow)  # 4 slow of 5 = 0.8
    assert br.state is S.OPEN


def test_slow_calls_are_not_failures(clock: FakeClock) -> None:
    br = sg.CircuitBreaker("slow-only", failure_threshold=1, slow_call_duration=0.5, clock=clock)

    def slow() -> None:
        clock.advance(1.0)

    for _ in range(5):
        br.call(slow)
    assert br.state is S.CLOSED


# -- classification -----------------------------------------------------------------------


def test_failure_on_and_ignore_on_types_and_predicates(clock: FakeClock) -> None:
    br = sg.CircuitBreaker(
        "cls",
        failure_threshold=1,
        failure_on=(Boom, TimeoutError),
        ignore_on=lambda exc: isinstance(exc, Boom) and "ignore" in str(exc),
        clock=clock,
    )

    def raise_(exc: BaseException) -> None:
        raise exc

    with pytest.raises(ValueError, match="not a failure"):
        br.call(raise_, ValueError("not a failure"))  # counts as a success
    with pytest.raises(Boom):
        br.call(raise_, Boom("please ignore"))
    assert br.state is S.CLOSED
    with pytest.raises(TimeoutError):
        br.call(raise_, TimeoutError())
    assert br.state is S.OPEN


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_interpreter_exit_exceptions_never_count(exc_type: type[BaseException]) -> None:
    br = sg.CircuitBreaker("exit", failure_threshold=1, failure_on=BaseException)

    def raise_() -> None:
        raise exc_type

    with pytest.raises(exc_type):
        br.call(raise_)
    assert br.state is S.CLOSED


def test_user_exception_passes_through_unchanged() -> None:
    br = sg.CircuitBreaker("same")
    original = Boom("the one")
    try:

        def raise_() -> None:
            raise original

        br.call(raise_)
    except Boom as caught:
        assert caught is original
        tb = caught.__traceback__
        assert tb is not None
        while tb.tb_next is not None:
            tb = tb.tb_next
        assert tb.tb_frame.f_code.co_name == "raise_"
    else:
        pytest.fail("no exception")


# -- async --------------------------------------------------------------------------------


def test_call_async_counts_and_cancellation_never_does(clock: FakeClock) -> None:
    br = sg.CircuitBreaker(
        "async", failure_threshold=1, success_threshold=1, open_timeout=1.0, clock=clock
    )

    async def main() -> None:
        async def forever() -> None:
            await asyncio.Event().wait()

        task = asyncio.ensure_future(br.call_async(forever))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert br.state is S.CLOSED

        async def bad() -> None:
            raise Boom

        with pytest.raises(Boom):
            await br.call_async(bad)
        assert br.state is S.OPEN
        clock.advance(1.0)

        async def good() -> int:
            return 7

        # A cancelled trial call returns its permit: the next trial can close the breaker.
        task = asyncio.ensure_future(br.call_async(forever))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await br.call_async(good) == 7
        assert br.state is S.CLOSED

    asyncio.run(main())


# -- manual control -----------------------------------------------------------------------


def test_force_open_disable_reset(clock: FakeClock) -> None:
    br = sg.CircuitBreaker("manual", failure_threshold=1, clock=clock)
    seen = transitions(br)
    br.force_open()
    with pytest.raises(sg.CircuitOpenError) as info:
        br.call(ok)
    assert info.value.retry_after == 0.0
    clock.advance(1000.0)
    assert br.state is S.FORCED_OPEN  # no timeout leaves FORCED_OPEN
    br.disable()
    for _ in range(10):
        run(br, fail)
    assert br.state is S.DISABLED
    br.reset()
    assert br.state is S.CLOSED
    br.reset()  # no-op: no transition reported
    assert seen == [("closed", "forced_open"), ("forced_open", "disabled"), ("disabled", "closed")]


def test_reset_forgets_the_streak(clock: FakeClock) -> None:
    br = sg.CircuitBreaker("reset", failure_threshold=2, clock=clock)
    run(br, fail)
    br.reset()
    run(br, fail)
    assert br.state is S.CLOSED


def test_token_less_protocol(clock: FakeClock) -> None:
    br = sg.CircuitBreaker(
        "tokenless", failure_threshold=2, success_threshold=1, open_timeout=1.0, clock=clock
    )
    assert br.allow_request()
    br.record_result(False)
    assert br.allow_request()
    br.record_result(False)
    assert br.state is S.OPEN
    assert br.allow_request() is False
    clock.advance(1.0)
    assert br.allow_request() is True
    assert br.allow_request() is False  # one trial permit
    br.record_result(True)
    assert br.state is S.CLOSED


def test_state_durations(clock: FakeClock) -> None:
    br = sg.CircuitBreaker("time", failure_threshold=1, open_timeout=5.0, clock=clock)
    clock.advance(3.0)
    run(br, fail)
    clock.advance(7.0)  # 5 s OPEN, then 2 s HALF_OPEN
    d = br.state_durations()
    assert d[S.CLOSED] == pytest.approx(3.0)
    assert d[S.OPEN] == pytest.approx(5.0)
    assert d[S.HALF_OPEN] == pytest.approx(2.0)
    assert set(d) == set(S)


def test_listener_can_call_back_into_the_breaker(clock: FakeClock) -> None:
    br = sg.CircuitBreaker("reentrant", failure_threshold=1, clock=clock)
    states: list[S] = []

    def listener(old: S, new: S) -> None:
        states.append(br.state)
        if new is S.OPEN:
            br.reset()

    br.add_listener(listener)
    run(br, fail)
    assert br.state is S.CLOSED
    # The listener saw OPEN, reset from inside it, and was then told of open -> closed.
    assert states == [S.OPEN, S.CLOSED]


def test_failing_listener_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    br = sg.CircuitBreaker("logged", failure_threshold=1)

    def broken(old: S, new: S) -> None:
        raise RuntimeError("listener bug")

    br.add_listener(broken)
    with caplog.at_level(logging.ERROR, logger="switchgear"):
        run(br, fail)
    assert "listener" in caplog.text
    assert "logged" in caplog.text


def test_remove_listener() -> None:
    br = sg.CircuitBreaker("rm", failure_threshold=1)
    seen = []

    def listener(old: S, new: S) -> None:
        seen.append(new)

    br.add_listener(listener)
    br.remove_listener(listener)
    run(br, fail)
    assert seen == []


def test_repr_and_state_str() -> None:
    br = sg.CircuitBreaker("shown")
    assert repr(br) == "<CircuitBreaker 'shown' state=closed>"
    assert str(S.HALF_OPEN) == "half_open"


def test_circuit_open_error_pickles() -> None:
    import pickle

    err = sg.CircuitOpenError("p", 1.5, "half_open_full")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.name, copy.retry_after, copy.reason) == ("p", 1.5, "half_open_full")


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "argname"),
    [
        ({"name": ""}, ValueError, "name"),
        ({"name": 3}, TypeError, "name"),
        ({"failure_threshold": 0}, ValueError, "failure_threshold"),
        ({"failure_threshold": -1}, ValueError, "failure_threshold"),
        ({"failure_threshold": 2.5}, TypeError, "failure_threshold"),
        ({"failure_threshold": True}, TypeError, "failure_threshold"),
        ({"success_threshold": 0}, ValueError, "success_threshold"),
        ({"open_timeout": 0}, ValueError, "open_timeout"),
        ({"open_timeout": -1.0}, ValueError, "open_timeout"),
        ({"open_timeout": float("inf")}, ValueError, "open_timeout"),
        ({"open_timeout": "30"}, TypeError, "open_timeout"),
        ({"open_timeout": timedelta(seconds=-1)}, ValueError, "open_timeout"),
        ({"half_open_max_calls": 0}, ValueError, "half_open_max_calls"),
        ({"half_open_max_calls": 2, "success_threshold": 3}, ValueError, "half_open_max_calls"),
        ({"failure_rate_threshold": 0.0}, ValueError, "failure_rate_threshold"),
        ({"failure_rate_threshold": 1.5}, ValueError, "failure_rate_threshold"),
        ({"failure_rate_threshold": -0.1}, ValueError, "failure_rate_threshold"),
        ({"slow_call_rate_threshold": 0.5}, ValueError, "slow_call_duration"),
        (
            {"slow_call_rate_threshold": 1.01, "slow_call_duration": 1},
            ValueError,
            "slow_call_rate_threshold",
        ),
        ({"slow_call_duration": 0}, ValueError, "slow_call_duration"),
        ({"window": 0}, ValueError, "window"),
        ({"minimum_calls": 0}, ValueError, "minimum_calls"),
        ({"failure_on": "Exception"}, TypeError, "failure_on"),
        ({"failure_on": (ValueError, 3)}, TypeError, "failure_on"),
        ({"ignore_on": 42}, TypeError, "ignore_on"),
        ({"on_state_change": "print"}, TypeError, "on_state_change"),
        ({"clock": 1.0}, TypeError, "clock"),
        ({"storage": object()}, ValueError, "storage"),
    ],
)
def test_bad_constructor_arguments(
    kwargs: dict[str, Any], exc: type[Exception], argname: str
) -> None:
    kwargs.setdefault("name", "bad")
    name = kwargs.pop("name")
    with pytest.raises(exc, match=argname):
        sg.CircuitBreaker(name, **kwargs)


def test_add_listener_rejects_non_callable() -> None:
    br = sg.CircuitBreaker("l")
    with pytest.raises(TypeError, match="listener"):
        br.add_listener(None)  # type: ignore[arg-type]


def test_record_result_rejects_negative_duration() -> None:
    br = sg.CircuitBreaker("d")
    with pytest.raises(ValueError, match="duration"):
        br.record_result(True, duration=-1.0)


def test_memory_is_constant_in_the_number_of_calls() -> None:
    import tracemalloc

    br = sg.CircuitBreaker("mem", failure_rate_threshold=0.9, failure_threshold=10**9)
    clock = FakeClock()
    br.clock = clock

    def churn(n: int) -> None:
        for i in range(n):
            clock.advance(0.01)
            run(br, fail if i % 3 == 0 else ok)

    churn(20_000)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    churn(100_000)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    # Only what the breaker's own code allocated: other tests' background threads (a Redis
    # storage's listener, say) may still be running and allocating meanwhile.
    mine = [
        tracemalloc.Filter(True, "*switchgear/_breaker/*"),
        tracemalloc.Filter(True, "*switchgear/_window.py"),
        tracemalloc.Filter(True, __file__),
    ]
    diff = after.filter_traces(mine).compare_to(before.filter_traces(mine), "filename")
    grown = sum(stat.size_diff for stat in diff)
    assert grown < 16_384, grown


def test_asyncio_timeout_cancellation_is_not_counted() -> None:
    br = sg.CircuitBreaker("t", failure_threshold=1)

    async def main() -> None:
        async def forever() -> None:
            await asyncio.Event().wait()

        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(br.call_async(forever), 0.01)

    asyncio.run(main())
    assert br.state is S.CLOSED


def test_signature_shows_the_real_options() -> None:
    params = inspect.signature(sg.CircuitBreaker).parameters
    assert list(params)[:2] == ["name", "failure_threshold"]
    assert params["open_timeout"].default == 30.0
    assert {"storage", "clock"} <= set(params)
