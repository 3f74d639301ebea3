"""Shared fixtures: a fake clock, and binaries that skip locally but fail under CI."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from switchgear.testing import FakeClock

__all__ = [
    "ROOT",
    "clock",
    "free_port",
    "isolated_env",
    "require_binary",
    "stop_process",
    "wsgi_get",
]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


ROOT = Path(__file__).resolve().parent.parent

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


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    """SIGTERM ``proc``, SIGKILL it if it has not exited after ``timeout`` s; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    return proc.returncode


def wsgi_get(app: Any, path: str) -> tuple[str, bytes]:
    """One GET through a WSGI app, in the calling thread: ``(status line, body)``."""
    status: list[str] = []
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
    body = b"".join(app(environ, lambda s, headers, exc=None: status.append(s)))
    return status[0], body
