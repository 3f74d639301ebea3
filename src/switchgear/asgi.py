"""Pure ASGI middleware: a breaker and metrics per route, plus ``/metrics`` and a status page.

Example::

    from starlette.applications import Starlette
    from switchgear.asgi import ASGIMiddleware

    app = ASGIMiddleware(Starlette(routes=routes), endpoint_auth=os.environ["METRICS_TOKEN"])

Starlette and FastAPI: ``install_exception_handlers(app)`` lets the middleware see the
exceptions the framework turns into responses. See ``docs/middleware.md`` for every option,
framework notes and pre-fork servers.
"""

from ._http.asgi import ASGIMiddleware
from ._http.frameworks import install_starlette as install_exception_handlers

__all__ = ["ASGIMiddleware", "install_exception_handlers"]
