"""Shared fixtures: a fake clock, and binaries that skip locally but fail under CI."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from switchgear.testing import FakeClock

__all__ = ["FakeClock", "clock", "isolated_env", "require_binary"]


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
