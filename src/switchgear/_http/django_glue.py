"""Django glue: hand the resolved URL pattern to the switchgear middleware.

Django keeps the matched pattern on ``request.resolver_match.route``, which is not reachable
from the WSGI environ or ASGI scope on its own. This one small Django middleware copies it
into ``environ["switchgear.route"]`` / ``scope["switchgear.route"]`` (the same dicts the
switchgear middleware passed down), which the middleware reads after the response.
Importing this module does not import Django.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .routes import ROUTE_KEY

__all__ = ["django_route_middleware"]


def _template(route: str) -> str:
    # Django patterns have no leading slash ("items/<int:id>/"); regex ones may start with ^.
    return "/" + route.removeprefix("^").lstrip("/")


def django_route_middleware(get_response: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A Django middleware that publishes the matched URL pattern to switchgear.

    Add ``"switchgear.wsgi.django_route_middleware"`` to ``MIDDLEWARE`` (anywhere), and wrap
    the WSGI application with :class:`switchgear.wsgi.WSGIMiddleware`; requests are then
    keyed ``"GET /items/<int:id>/"`` instead of ``<unmatched>``.

    Example::

        # settings.py
        MIDDLEWARE = [..., "switchgear.wsgi.django_route_middleware"]
        # wsgi.py
        application = WSGIMiddleware(get_wsgi_application())
    """

    def middleware(request: Any) -> Any:
        response = get_response(request)
        try:
            route = request.resolver_match.route
        except AttributeError:  # no match (404) or an unusual request object
            return response
        if isinstance(route, str):
            target = getattr(request, "environ", None)  # WSGIRequest: the WSGI environ itself
            if not isinstance(target, dict):
                target = getattr(request, "scope", None)  # ASGIRequest: the ASGI scope itself
            if isinstance(target, dict):
                target[ROUTE_KEY] = _template(route)
        return response

    return middleware
