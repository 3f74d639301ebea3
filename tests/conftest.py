"""Shared fixtures: a fake clock, and binaries that skip locally but fail under CI."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest


class FakeClock:
    """A monotonic clock the test moves by hand: ``clock()`` reads, ``clock.advance(s)`` moves."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, "a monotonic clock never goes back"
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_binary(name: str) -> str:
    """Return the path of ``name``; skip the test on a laptop, fail it under ``CI=true``."""
    path = shutil.which(name)
    if path is None:
        message = (
            f"{name!r} is not installed (Debian package: see scripts/test); "
            "scripts/test installs it when run as root"
        )
        if IN_CI:
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)
    return path


@pytest.fixture
def isolated_env() -> Iterator[None]:
    """Restore os.environ after the test."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
