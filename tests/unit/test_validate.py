"""Absurd arguments are refused where they are given, naming the argument (not later)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis

import switchgear as sg
from switchgear.redis import RedisStorage


@pytest.mark.parametrize(
    ("build", "argname"),
    [
        (lambda: sg.CircuitBreaker("b", open_timeout=1e300), "open_timeout"),
        (lambda: sg.CircuitBreaker("b", window=timedelta(days=400)), "window"),
        (lambda: sg.CircuitBreaker("b", failure_threshold=10**12), "failure_threshold"),
        (lambda: sg.DynamicPool(None, scale_interval=1e10, name="engines"), "scale_interval"),
        (lambda: sg.DynamicPool(None, max_size=10**10, name="engines"), "max_size"),
        (lambda: RedisStorage(redis.Redis(socket_timeout=0.1), key_ttl=1e17), "key_ttl"),
        (lambda: sg.Metrics("m", window=1e12), "window"),
    ],
)
def test_times_and_sizes_have_finite_upper_bounds(build: object, argname: str) -> None:
    with pytest.raises(ValueError, match=argname):
        build()  # type: ignore[operator]


def test_a_year_is_still_accepted() -> None:
    breaker = sg.CircuitBreaker("b", open_timeout=timedelta(days=365))
    assert breaker.open_timeout == 365 * 24 * 3600.0


@pytest.mark.parametrize(
    "build",
    [
        lambda clock: sg.CircuitBreaker("b", clock=clock),
        lambda clock: sg.DynamicPool(None, min_size=0, clock=clock, name="engines"),
        lambda clock: sg.Metrics("m", registry=None, clock=clock),
    ],
)
@pytest.mark.parametrize(
    ("clock", "error"),
    [
        (lambda: "x", TypeError),
        (lambda: float("nan"), ValueError),
        (lambda: 1 / 0, ValueError),
    ],
)
def test_a_clock_that_does_not_give_seconds_is_refused_at_construction(
    build: object, clock: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="clock"):
        build(clock)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("pay\udc80ments", "surrogate"),
        ("x" * 1_000_000, "at most 200 characters"),
        ("a\nb", "control"),
        ("a\x00b", "control"),
    ],
)
@pytest.mark.parametrize(
    "build",
    [
        lambda name: sg.CircuitBreaker(name),
        lambda name: sg.Metrics(name),
        lambda name: sg.DynamicPool(None, name=name, min_size=0),
    ],
)
def test_names_must_be_label_values_every_format_can_carry(
    build: object, value: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build(value)  # type: ignore[operator]


def test_the_longest_allowed_and_non_ascii_names_are_accepted() -> None:
    assert sg.CircuitBreaker("z" * 200).name == "z" * 200
    assert sg.CircuitBreaker("paiements-é-支付").name == "paiements-é-支付"
