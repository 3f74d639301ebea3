"""A fallback whose signature cannot take the protected function's calls fails at decoration.

Otherwise the mistake surfaces only during the outage the fallback was written for, as a
``TypeError`` in place of the answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

import switchgear as sg


def unique() -> str:
    return f"fallback-sig-{uuid.uuid4().hex[:8]}"


def decorate(fn: Callable[..., Any], fallback: Callable[..., Any], **options: Any) -> Any:
    return sg.protected(unique(), fallback=fallback, **options)(fn)


def charge(order: str, amount: int = 1, *, currency: str = "EUR") -> str:
    return order


@pytest.mark.parametrize(
    "fallback",
    [
        lambda exc: "x",  # takes no arguments of the call
        lambda exc, order: "x",  # not amount or currency, which callers may pass
        lambda exc, order, amount: "x",  # not currency
        lambda order, amount, currency: "x",  # no room for the exception
        lambda exc, order, amount=1, *, other: "x",  # a required keyword the call never has
    ],
)
def test_a_fallback_that_cannot_take_the_call_is_refused(fallback: Callable[..., Any]) -> None:
    with pytest.raises(TypeError, match=r"fallback must accept \(exc, \*args, \*\*kwargs\)"):
        decorate(charge, fallback)


@pytest.mark.parametrize(
    "fallback",
    [
        lambda exc, *args, **kwargs: "x",
        lambda exc, order, amount=1, currency="EUR": "x",
        lambda exc, order, amount=1, **kw: "x",
        lambda exc, *a, currency="EUR": "x",
    ],
)
def test_a_fallback_that_takes_every_call_is_accepted(fallback: Callable[..., Any]) -> None:
    wrapped = decorate(charge, fallback)
    assert wrapped("o-1") == "o-1"


def test_methods_and_extra_arguments() -> None:
    class Client:
        @sg.protected(unique(), fallback=lambda exc, self, key: None)
        def get(self, key: str) -> str:
            return key

    assert Client().get("k") == "k"

    def variadic(*items: str, **flags: bool) -> int:
        return len(items)

    with pytest.raises(TypeError, match="fallback"):
        decorate(variadic, lambda exc, *items: 0)  # no **kwargs for the flags
    assert decorate(variadic, lambda exc, *items, **flags: 0)("a", "b") == 2


def test_the_leased_resource_is_not_expected_of_the_fallback() -> None:
    pool = sg.DynamicPool(None, name=unique(), min_size=0, max_size=1)

    def work(job: str, *, slot: Any) -> str:
        return job

    wrapped = decorate(work, lambda exc, job: "queued", pool=pool, resource_arg="slot")
    assert wrapped("j") == "j"
    pool.close()


def test_the_error_names_the_failing_call() -> None:
    with pytest.raises(TypeError) as info:
        decorate(charge, lambda exc, order: "x")
    message = str(info.value)
    assert "'charge'" in message
    assert "fallback(exc, order, amount, currency=...)" in message
