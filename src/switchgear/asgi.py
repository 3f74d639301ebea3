"""Pure ASGI middleware: a breaker and metrics per route, plus ``/metrics`` and a status page.

Example::

    from starlette.applications import Starlette
    from switchgear.asgi import ASGIMiddleware

    app = ASGIMiddleware(Starlette(routes=routes), endpoint_auth=os.environ["METRICS_TOKEN"])

See ``docs/middleware.md`` for every option, framework notes and pre-fork servers.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry

from ._breaker.breaker import CircuitBreaker
from ._breaker.protocol import FAILURE, NEUTRAL, NEVER_COUNTED, SUCCESS
from ._errors import CircuitOpenError, PoolFullError, PoolTimeoutError
from ._http.auth import Headers
from ._http.core import HttpMiddlewareBase, Route, log_once
from ._http.endpoints import Response
from ._http.options import HttpOptions, default_failure_status
from ._http.routes import METHODS, ROUTE_KEY, asgi_template
from ._pool.pool import MISSING as _NO_RESOURCE
from ._pool.pool import DynamicPool

__all__ = ["ASGIMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _respond(send: Send, response: Response, head: bool) -> None:
    status, headers, body = response
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


class ASGIMiddleware(HttpMiddlewareBase[ASGIApp]):
    """Protect and measure every HTTP route of an ASGI app (Starlette, FastAPI, ...).

    Each request is keyed ``"METHOD template"`` by the route the framework matched
    (``GET /items/{id}``; ``<unmatched>`` when none, ``<other>`` beyond ``max_routes`` keys).
    Each key has a :class:`~switchgear.CircuitBreaker` (built with ``breaker_options``) and a
    :class:`~switchgear.Metrics`. An open breaker answers ``503`` with ``Retry-After`` without
    calling the app; a full ``pool`` answers ``pool_full_status``. Responses whose status
    satisfies ``failure_status``, and exceptions, are failures. Latency runs to the last body
    chunk. ``metrics_path`` serves Prometheus/OpenMetrics text and ``status_path`` a JSON
    status document, both guarded by ``endpoint_auth``. Lifespan and websocket scopes pass
    straight through.

    Example::

        app = FastAPI()
        app = ASGIMiddleware(
            app,
            breaker_options={"failure_threshold": 5, "open_timeout": 30.0},
            exclude_paths=("/healthz",),
            endpoint_auth="s3cret-token",
        )

    Every option is described in ``docs/middleware.md``.
    """

    _app_kind = "an ASGI application"

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics_path: str | None = "/metrics",
        status_path: str | None = "/switchgear",
        breaker_per_route: bool = True,
        failure_status: Callable[[int], bool] = default_failure_status,
        breaker_options: Mapping[str, Any] | None = None,
        pool: DynamicPool[Any] | None = None,
        exclude_paths: Iterable[str] = (),
        endpoint_auth: str | Callable[[Headers], Any] | None = None,
        registry: CollectorRegistry | None = None,
        max_routes: int = 100,
        pool_full_status: int = 503,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(app, HttpOptions.among(locals()))
        core = self._core
        # Bound once: every attribute hop saved here is saved on every request.
        self._special_kind = core.special_kind
        self._lookup = core.cache.get
        self._pool = core.pool
        self._clock = core.clock
        self._failure_status = core.failure_status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)  # lifespan, websocket: not ours
            return
        path = scope.get("path")
        if type(path) is not str:
            path = ""
        root = scope.get("root_path", "")
        route_path = path
        if root and type(root) is str and path.startswith(root):
            route_path = path[len(root) :] or "/"
        kind = self._special_kind(route_path)
        if kind is not None:
            if kind == "exclude":
                await self.app(scope, receive, send)
            else:
                await self._endpoint(kind, scope, send)
            return

        core = self._core
        method = scope.get("method")
        if type(method) is not str or method not in METHODS:
            method = "OTHER"
        route = self._lookup(method, path)
        breaker = route.breaker if route is not None else core.global_breaker
        token: int | None = None
        if breaker is not None:
            try:
                token = breaker.admit()
            except CircuitOpenError as exc:
                await _respond(send, core.circuit_rejection(route, exc), method == "HEAD")
                return
        pool = self._pool
        resource: Any = None
        cold = False
        if pool is not None:
            try:
                # An idle resource needs no await: skip creating a coroutine for it.
                resource = pool.take()
                if resource is _NO_RESOURCE:
                    resource, cold, _ = await pool.acquire_timed_async()
            except (PoolFullError, PoolTimeoutError) as exc:
                rejection = core.pool_rejection(route, breaker, token, exc)
                await _respond(send, rejection, method == "HEAD")
                return
            except BaseException:
                if breaker is not None:
                    breaker.finish(token, NEUTRAL, 0.0)
                raise

        clock = self._clock
        status: Any = 0
        done = False
        gone = False
        start = clock()

        async def send_wrapper(message: Message) -> None:
            nonlocal status, done, gone
            if not done:
                mtype = message.get("type")
                if mtype == "http.response.start":
                    status = message.get("status", 0)
                elif (
                    mtype == "http.response.body" and not message.get("more_body", False)
                ) or mtype == "http.response.pathsend":
                    # Recorded before the last chunk is handed over, so by the time the
                    # client has the whole response, /metrics already counts it.
                    done = True
                    now = clock()
                    duration = now - start
                    if (
                        route is not None
                        and scope.get("route") is route.matched
                        and scope.get("root_path", "") == root
                        and ROUTE_KEY not in scope
                    ):
                        # The common case: the route the framework matched last time for
                        # this route key, no mount in between.
                        try:
                            failed = self._failure_status(status)
                        except Exception:
                            failed = core.status_outcome(status) == FAILURE
                        try:
                            route.breaker.finish(token, FAILURE if failed else SUCCESS, duration)
                            route.record(now, duration, not failed, cold)
                        except Exception:
                            log_once("record", "switchgear: recording an HTTP request failed")
                    else:
                        self._complete(
                            scope, root, route, breaker, token, method, path, status, duration, cold
                        )
            try:
                await send(message)
            except OSError:
                gone = True  # the client went away; what the app does next is not its fault
                raise

        outcome: int = NEUTRAL
        counted = False
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            if not done:
                counted = not (gone or isinstance(exc, NEVER_COUNTED))
                outcome = core.classify(exc) if counted else NEUTRAL
            raise
        else:
            if not done:
                # No response at all: the server answers 500 for it. Started but never
                # finished: the client went away mid-response (not counted).
                counted = status == 0
                outcome = core.status_outcome(500) if counted else NEUTRAL
        finally:
            if not done:
                done = True
                template = asgi_template(scope, root, core.endpoints)
                duration = clock() - start
                core.complete(
                    route,
                    breaker,
                    token,
                    method,
                    path,
                    template,
                    outcome,
                    duration,
                    cold,
                    counted,
                    answered=status != 0,
                )
            if pool is not None:
                try:
                    pool.give_back(resource)  # ours: never foreign, never twice
                except Exception:
                    log_once("release", "switchgear: returning a resource to the pool failed")

    def _complete(
        self,
        scope: Scope,
        root: object,
        route: Route | None,
        breaker: CircuitBreaker | None,
        token: int | None,
        method: str,
        path: str,
        status: object,
        duration: float,
        cold: bool,
    ) -> None:
        """Record a finished response whose route is new, changed or not yet confirmed."""
        core = self._core
        template = asgi_template(scope, root, core.endpoints)
        matched = scope.get("route")
        if (
            route is not None
            and template == route.template
            and (matched is not None or template is None)
            and scope.get("root_path", "") == root
            and ROUTE_KEY not in scope
        ):
            # The framework's route object for this key: next time, one identity check
            # replaces reading the template. A route named from its endpoint has no such
            # object (None would also be what a 404 leaves), so it keeps this slower path.
            route.matched = matched
        outcome = core.status_outcome(status)
        core.complete(route, breaker, token, method, path, template, outcome, duration, cold, True)

    async def _endpoint(self, kind: str, scope: Scope, send: Send) -> None:
        """Serve ``/metrics`` or the status document (after auth); never counted."""
        core = self._core
        if not self._shadow_checked:
            self.endpoint_requested()
        head = scope.get("method") == "HEAD"
        headers = Headers.from_asgi(scope.get("headers"))
        verdict = core.check_auth(headers)
        if inspect.isawaitable(verdict):
            try:
                verdict = await verdict
            except Exception:
                log_once("endpoint_auth", "switchgear: endpoint_auth raised; request denied")
                verdict = False
        response = core.endpoint_refusal(verdict, scope.get("method"))
        if response is None and kind == "metrics":
            accept = headers.get("accept", "")
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # another event loop (trio): render inline
                response = core.metrics_response(accept)
            else:
                # Multiprocess aggregation reads files: keep it off the event loop.
                response = await loop.run_in_executor(None, core.metrics_response, accept)
        elif response is None:
            response = core.status_response()
        await _respond(send, response, head)
