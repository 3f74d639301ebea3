"""Exception handlers that let the middleware see what a framework hides from it.

Starlette, FastAPI and Flask turn an exception raised in a route into a ``500`` response
before the response reaches the switchgear middleware, which then sees only the status. Two
things go wrong with that: a rejection from a protection *inside* the route (a
``@protected`` dependency whose breaker is open, a full pool) becomes a ``500`` and a
failure of the route's own breaker, so one sick dependency opens every route that uses it;
and ``ignore_on``/``failure_on`` cannot apply, because the exception is gone.

The handlers installed here fix both: a rejection is answered ``503`` with ``Retry-After``
and the refusing protection's name, and every handled exception is left on the request's
scope/environ under :data:`~switchgear._http.routes.EXCEPTION_KEY`, where the middleware
classifies it as ``@protected`` would. Importing this module imports no framework.
"""

from __future__ import annotations

import inspect
from typing import Any

from .._errors import Rejection
from .endpoints import rejection_answer
from .options import int_option
from .routes import EXCEPTION_KEY

__all__ = ["install_flask", "install_starlette"]


def install_starlette(app: Any, *, pool_full_status: int = 503) -> None:
    """Install the handlers on a Starlette or FastAPI application (before it serves).

    Install it after your own handler for ``Exception``/``500``, if any: that handler keeps
    producing the response, this one only records the exception first.
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response

    if not isinstance(app, Starlette):
        raise TypeError(f"app must be a Starlette or FastAPI application, not {type(app).__name__}")
    status_for_pool = int_option("pool_full_status", pool_full_status, 400, 599)

    async def rejected(request: Request, exc: Exception) -> Response:
        request.scope[EXCEPTION_KEY] = exc
        assert isinstance(exc, Rejection)
        status, headers, body = rejection_answer(exc, status_for_pool)
        return Response(body, status_code=status, headers=dict(headers))

    handlers = app.exception_handlers
    previous = handlers.get(Exception, handlers.get(500))

    async def server_error(request: Request, exc: Exception) -> Any:
        request.scope[EXCEPTION_KEY] = exc
        if previous is None:
            return PlainTextResponse("Internal Server Error", status_code=500)
        answer = previous(request, exc)
        return await answer if inspect.isawaitable(answer) else answer

    app.add_exception_handler(Rejection, rejected)
    app.add_exception_handler(Exception, server_error)


def install_flask(app: Any, *, pool_full_status: int = 503) -> None:
    """Install the handlers on a Flask application."""
    from flask import Flask, got_request_exception, request

    if not isinstance(app, Flask):
        raise TypeError(f"app must be a Flask application, not {type(app).__name__}")
    status_for_pool = int_option("pool_full_status", pool_full_status, 400, 599)

    def rejected(exc: Rejection) -> Any:
        request.environ[EXCEPTION_KEY] = exc
        status, headers, body = rejection_answer(exc, status_for_pool)
        return app.response_class(body, status=status, headers=headers)

    def record(sender: object, exception: BaseException, **extra: object) -> None:
        # Flask sends this for an exception no handler took, before it answers 500.
        request.environ[EXCEPTION_KEY] = exception

    app.register_error_handler(Rejection, rejected)
    got_request_exception.connect(record, app, weak=False)
