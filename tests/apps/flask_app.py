"""A Flask app behind WSGIMiddleware, for ``gunicorn tests.apps.flask_app:app``.

Configured like :mod:`tests.apps.starlette_app` (``SWITCHGEAR_TEST_TOKEN``,
``SWITCHGEAR_TEST_OPEN_TIMEOUT``). ``/control/*`` is excluded from the metrics. State that
must be shared by several workers (the failing switch) lives in a file,
``SWITCHGEAR_TEST_STATE_DIR/failing``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from flask import Flask, Response

from switchgear.wsgi import WSGIMiddleware

flask_app = Flask(__name__)
_state_dir = Path(os.environ.get("SWITCHGEAR_TEST_STATE_DIR", "/nonexistent"))


def _failing() -> bool:
    return (_state_dir / "failing").exists()


@flask_app.get("/items/<int:item_id>")
def item(item_id: int) -> dict[str, int]:
    delay = float(os.environ.get("SWITCHGEAR_TEST_ITEM_DELAY", "0"))
    if delay:
        time.sleep(delay)
    return {"id": item_id, "pid": os.getpid()}


@flask_app.get("/flaky")
def flaky() -> tuple[str, int]:
    return ("dependency down", 500) if _failing() else ("ok", 200)


@flask_app.get("/control/<action>")
def control(action: str) -> str:
    if action == "fail":
        (_state_dir / "failing").touch()
    elif action == "heal":
        (_state_dir / "failing").unlink(missing_ok=True)
    return action


@flask_app.get("/stream")
def stream() -> Response:
    def chunks() -> Iterator[bytes]:
        for i in range(3):
            time.sleep(0.1)
            yield f"chunk {i}\n".encode()

    return Response(chunks(), mimetype="text/plain")


app = WSGIMiddleware(
    flask_app.wsgi_app,
    breaker_options={
        "failure_threshold": 3,
        "success_threshold": 1,
        "open_timeout": float(os.environ.get("SWITCHGEAR_TEST_OPEN_TIMEOUT", "1.0")),
    },
    exclude_paths=("/control/*",),
    endpoint_auth=os.environ.get("SWITCHGEAR_TEST_TOKEN") or None,
)
