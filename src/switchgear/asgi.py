"""Pure ASGI middleware: a breaker and metrics per route, plus ``/metrics`` and a status page.

Example::

    from starlette.applications import Starlette
    from switchgear.asgi import ASGIMiddleware

    app = ASGIMiddleware(Starlette(routes=routes), endpoint_auth=os.environ["METRICS_TOKEN"])

See ``docs/middleware.md`` for every option, framework notes and pre-fork servers.
"""

from ._http.asgi import ASGIMiddleware

__all__ = ["ASGIMiddleware"]
