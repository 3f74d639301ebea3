"""Django glue: hand the resolved URL pattern, and a view's exception, to the middleware.

Django keeps the matched pattern on ``request.resolver_match.route``, which is not reachable
from the WSGI environ or ASGI scope on its own. This one small Django middleware copies it
into ``environ["switchgear.route"]`` / ``scope["switchgear.route"]`` (the same dicts the
switchgear middleware passed down), which the middleware reads after the response. A view's
exception is left there too (Django turns it into a ``500`` before the switchgear middleware
sees it), and a switchgear rejection raised in a view is answered ``503`` with
``Retry-After``, as the Starlette and Flask handlers do. Importing this module does not
import Django.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._errors import Rejection
from .endpoints import rejection_answer
from .routes import EXCEPTION_KEY, ROUTE_KEY

__all__ = ["django_route_middleware"]


def _template(route: str) -> str:
    # Django patterns have no leading slash ("items/<int:id>/"); regex ones may start with ^.
    return "/" + route.removeprefix("^").lstrip("/")


def django_route_middleware(get_response: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A Django middleware that publishes the matched URL pattern (and a view's exception).

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
        target = _carrier(request)
        if isinstance(route, str) and target is not None:
            target[ROUTE_KEY] = _template(route)
        return response

    def process_exception(request: Any, exception: Exception) -> Any:
        target = _carrier(request)
        if target is not None:
            target[EXCEPTION_KEY] = exception
        if not isinstance(exception, Rejection):
            return None  # Django's own handling answers (a 500)
        from django.http import HttpResponse

        status, headers, body = rejection_answer(exception)
        answer = HttpResponse(body, status=status)
        for name, value in headers:
            answer[name] = value
        return answer

    middleware.process_exception = process_exception  # type: ignore[attr-defined]
    return middleware


def _carrier(request: Any) -> dict[str, Any] | None:
    """The WSGI environ (WSGIRequest) or ASGI scope (ASGIRequest) the request came in."""
    target = getattr(request, "environ", None)
    if not isinstance(target, dict):
        target = getattr(request, "scope", None)
    return target if isinstance(target, dict) else None
