"""A Flask app behind switchgear's WSGI middleware, ready for gunicorn with several workers.

Run it (several workers, metrics aggregated across them)::

    rm -rf /tmp/app-metrics && mkdir /tmp/app-metrics
    PROMETHEUS_MULTIPROC_DIR=/tmp/app-metrics \\
        gunicorn -c examples/gunicorn_conf.py -w 2 -b 127.0.0.1:8000 examples.flask_app:app

then try::

    curl localhost:8000/hello/ada
    curl -i localhost:8000/stock/anvil      # 502: no warehouse service is running...
    curl -i localhost:8000/stock/anvil      # ...and after 3 failures in a worker: 503
    curl localhost:8000/metrics

``WAREHOUSE_URL`` says where the (imaginary) warehouse service lives; ``METRICS_TOKEN``, if
set, protects ``/metrics`` and ``/switchgear`` with a bearer token.
"""

from __future__ import annotations

import os

import httpx
from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

from switchgear.wsgi import WSGIMiddleware

WAREHOUSE_URL = os.environ.get("WAREHOUSE_URL", "http://127.0.0.1:9")

app = Flask(__name__)


@app.get("/hello/<name>")
def hello(name: str) -> dict[str, object]:
    return {"greeting": f"hello, {name}", "worker": os.getpid()}


@app.get("/stock/<sku>")
def stock(sku: str) -> ResponseReturnValue:
    try:
        reply = httpx.get(f"{WAREHOUSE_URL}/stock/{sku}", timeout=1.0)
        reply.raise_for_status()
    except httpx.HTTPError:
        # A 5xx response is a failure for this route's breaker.
        return jsonify(error="warehouse unavailable"), 502
    return jsonify(reply.json()), 200


@app.get("/healthz")
def healthz() -> str:
    return "ok"


# Wrap the WSGI callable, not the Flask object: `app` stays a Flask app (test_client, CLI).
app.wsgi_app = WSGIMiddleware(  # type: ignore[method-assign]
    app.wsgi_app,
    breaker_options={"failure_threshold": 3, "open_timeout": 10.0},
    exclude_paths=("/healthz",),
    endpoint_auth=os.environ.get("METRICS_TOKEN") or None,
)
