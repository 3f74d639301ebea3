"""A FastAPI app (``asgi_app``, for uvicorn) and a Flask app (``wsgi_app``, for gunicorn),
each behind the switchgear middleware with the framework exception handlers installed.

``/dep`` calls a ``@protected`` dependency whose breaker opens after one failure and stays
open for a minute; ``/control/fail`` makes the dependency fail. ``/ignored`` raises an
exception the route breakers are told to ignore. ``/control/*`` is not measured.
"""

from __future__ import annotations

from fastapi import FastAPI
from flask import Flask

import switchgear as sg
from switchgear.asgi import ASGIMiddleware
from switchgear.asgi import install_exception_handlers as install_starlette
from switchgear.wsgi import WSGIMiddleware
from switchgear.wsgi import install_exception_handlers as install_flask

state = {"failing": False}


class Ignored(Exception):
    """Named in the route breakers' ``ignore_on``."""


@sg.protected(
    "inventory",
    breaker=sg.CircuitBreaker("inventory", failure_threshold=1, open_timeout=60.0),
)
def inventory() -> dict[str, str]:
    if state["failing"]:
        raise ConnectionError("inventory is down")
    return {"inventory": "ok"}


def control(action: str) -> str:
    state["failing"] = action == "fail"
    return action


OPTIONS = {"failure_threshold": 3, "open_timeout": 60.0, "ignore_on": Ignored}

api = FastAPI()
install_starlette(api)


@api.get("/dep")
def fastapi_dep() -> dict[str, str]:
    return inventory()


@api.get("/ignored")
def fastapi_ignored() -> None:
    raise Ignored("not the route's fault")


@api.get("/control/{action}")
def fastapi_control(action: str) -> str:
    return control(action)


asgi_app = ASGIMiddleware(api, breaker_options=OPTIONS, exclude_paths=("/control/*",))

flask_app = Flask(__name__)
install_flask(flask_app)


@flask_app.get("/dep")
def flask_dep() -> dict[str, str]:
    return inventory()


@flask_app.get("/ignored")
def flask_ignored() -> str:
    raise Ignored("not the route's fault")


@flask_app.get("/control/<action>")
def flask_control(action: str) -> str:
    return control(action)


wsgi_app = WSGIMiddleware(
    flask_app.wsgi_app, breaker_options=OPTIONS, exclude_paths=("/control/*",)
)
