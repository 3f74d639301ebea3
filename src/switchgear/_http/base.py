"""What both middleware classes are as objects: construction, introspection, the shadow check.

The adapters (``asgi.py``, ``wsgi.py``) subclass :class:`HttpMiddlewareBase`; the decisions
live in :class:`~switchgear._http.core.HttpCore`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

from .._breaker.breaker import CircuitBreaker
from .._metrics.facade import Metrics
from .core import HttpCore
from .log import log_once
from .options import HttpOptions

__all__ = ["HttpMiddlewareBase", "declared_paths"]

logger = logging.getLogger("switchgear")

AppT = TypeVar("AppT", bound=Callable[..., Any])


def declared_paths(app: object) -> set[str]:
    """The route paths ``app`` declares where its framework shows them; never raises.

    Starlette and FastAPI apps (and their routers) list ``routes``; a Flask app, also
    reached through its bound ``wsgi_app``, has a ``url_map``. Other middleware in between
    is followed through its ``app`` attribute, a few levels deep.
    """
    paths: set[str] = set()
    target: object = getattr(app, "__self__", app)
    try:
        for _ in range(8):
            url_map = getattr(target, "url_map", None)
            if url_map is not None and callable(getattr(url_map, "iter_rules", None)):
                paths.update(r.rule for r in url_map.iter_rules() if isinstance(r.rule, str))
                return paths
            routes = getattr(target, "routes", None)
            if isinstance(routes, (list, tuple)):
                for route in routes:
                    path = getattr(route, "path", None)
                    if isinstance(path, str):
                        paths.add(path)
                return paths
            inner = getattr(target, "app", None)
            if inner is None or inner is target:
                return paths
            target = getattr(inner, "__self__", inner)
    except Exception:  # an app whose introspection fails: no warning rather than an error
        log_once("declared_paths", "switchgear: reading the app's routes failed")
    return paths


class HttpMiddlewareBase(Generic[AppT]):
    """What the ASGI and WSGI middleware share: construction and introspection."""

    #: How the constructor's first parameter is named and what it must be (for errors).
    _app_param: ClassVar[str] = "app"
    _app_kind: ClassVar[str] = "an application"

    app: AppT
    _core: HttpCore

    def __init__(self, app: AppT, options: HttpOptions) -> None:
        if not callable(app):
            raise TypeError(
                f"{self._app_param} must be {self._app_kind} (callable), not {type(app).__name__}"
            )
        self.app = app
        self._core = HttpCore(options)
        self._shadow_checked = False
        self.check_shadowed()

    def check_shadowed(self) -> None:
        """Warn once if the app declares a route at ``metrics_path`` or ``status_path``.

        The middleware answers those paths itself, so such a route never runs. Checked when
        the middleware is built and again when one of its endpoints is first requested
        (Flask apps are often wrapped before their routes are declared). Only what the
        framework shows is seen: Starlette/FastAPI ``routes``, Flask's ``url_map``.
        """
        core = self._core
        ours = {p for p in (core.metrics_path, core.status_path) if p is not None}
        clash = sorted(ours & declared_paths(self.app))
        if clash:
            self._shadow_checked = True
            logger.warning(
                "switchgear: the wrapped app has its own route at %s; the middleware answers "
                "%s itself, so that route is never reached (set metrics_path/status_path to "
                "another path, or None)",
                " and ".join(clash),
                "this path" if len(clash) == 1 else "these paths",
            )

    def endpoint_requested(self) -> None:
        """The first request to ``metrics_path``/``status_path``: check for shadowing again."""
        if not self._shadow_checked:
            self._shadow_checked = True
            self.check_shadowed()

    def breakers(self) -> dict[str, CircuitBreaker]:
        """The breaker of each route key seen so far (one shared breaker when not per route)."""
        return {key: route.breaker for key, route in self._core.routes().items()}

    def metrics(self) -> dict[str, Metrics]:
        """The :class:`~switchgear.Metrics` of each route key seen so far."""
        return {key: route.metrics for key, route in self._core.routes().items()}
