"""The ASGI adapter: admission, the app call and its I/O, per request one ticket.

Public as :mod:`switchgear.asgi`; the recording rule is in :mod:`.ticket`.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry

from .._breaker.protocol import FAILURE, NEUTRAL, NEVER_COUNTED
from .._errors import LimitExceededError, PoolFullError, PoolTimeoutError, Rejection
from .._limit.limiter import AdaptiveLimit
from .._pool.pool import DynamicPool
from .auth import Headers
from .base import HttpMiddlewareBase
from .endpoints import Response
from .log import log_once
from .operations import MAX_BODY, wants_page
from .options import HttpOptions, default_failure_status
from .routes import METHODS, ROUTE_KEY, asgi_template
from .ticket import Ticket

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


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None when it is longer than ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message.get("type") != "http.request":
            return b"".join(chunks)  # the client went away: what came is all there is
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class _Responder(Ticket):
    """One HTTP request through the middleware: its ticket, and the ``send`` the app gets."""

    __slots__ = ("downstream", "gone", "root", "scope", "status")

    scope: Scope
    root: object
    downstream: Send

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.status: Any = 0
        self.gone = False

    async def send(self, message: Message) -> None:
        if not self.done:
            mtype = message.get("type")
            if mtype == "http.response.start":
                self.status = message.get("status", 0)
            elif (
                mtype == "http.response.body" and not message.get("more_body", False)
            ) or mtype == "http.response.pathsend":
                # Recorded before the last chunk is handed over, so by the time the client
                # has the whole response, /metrics already counts it.
                outcome, rejected = self.core.response_outcome(self.status, self.scope)
                self.settle(outcome, True, rejected)
        try:
            await self.downstream(message)
        except OSError:
            self.gone = True  # the client went away; what the app does next is not its fault
            raise

    def settle(
        self, outcome: int, counted: bool, rejected: str | None = None, cause: object = None
    ) -> None:
        """Record the request (once) with what the scope says about its route.

        ``cause``: the exception the app raised, if it did (else the status is the cause).
        """
        scope = self.scope
        failure = None
        if outcome == FAILURE:
            failure = self.core.failure_of((self.status or 500) if cause is None else cause, scope)
        self.finish(
            outcome,
            counted,
            scope.get("route"),
            scope.get(ROUTE_KEY),
            scope.get("root_path", "") == self.root,
            answered=self.status != 0,
            rejected=rejected,
            failure=failure,
            status=self.status,
            raised=cause,
        )

    def failed(self, exc: BaseException) -> Response | None:
        """The app raised: record it once; the answer to send instead, if any.

        A switchgear rejection that escaped before a response started is answered here
        (``503`` with ``Retry-After``) rather than left to the server's ``500``.
        """
        if self.done:
            return None
        if self.gone or isinstance(exc, NEVER_COUNTED):
            self.settle(NEUTRAL, False)
            return None
        core = self.core
        outcome, rejected = core.exception_outcome(exc)
        self.settle(outcome, True, rejected, exc)
        if rejected is not None and self.status == 0 and isinstance(exc, Rejection):
            return core.inner_rejection(exc)
        return None

    def template(self) -> str | None:
        return asgi_template(self.scope, self.root, self.core.endpoints)


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
        route_breaker_options: Mapping[str, Mapping[str, Any]] | None = None,
        pool: DynamicPool[Any] | None = None,
        limit: AdaptiveLimit | None = None,
        route_limits: Mapping[str, AdaptiveLimit] | None = None,
        exclude_paths: Iterable[str | re.Pattern[str]] = (),
        endpoint_auth: str | Callable[[Headers], Any] | None = None,
        registry: CollectorRegistry | None = None,
        max_routes: int = 100,
        pool_full_status: int = 503,
        ready_path: str | None = "/switchgear/ready",
        critical: Iterable[str] | Callable[[str], bool] = (),
        control_plane: bool = False,
        exclude_methods: Iterable[str] = (),
        http_metrics: bool = True,
        exemplars: bool = True,
        meter_provider: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(app, HttpOptions.among(locals()))
        core = self._core
        # Bound once: every attribute hop saved here is saved on every request.
        self._special_kind = core.special_kind
        self._admit = core.admit
        self._pool = core.pool
        self._clock = core.clock
        self._exclude_methods = core.exclude_methods

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
                await self._endpoint(kind, scope, receive, send, route_path)
            return

        method = scope.get("method")
        if self._exclude_methods and method in self._exclude_methods:
            await self.app(scope, receive, send)  # excluded: not ours either
            return
        if type(method) is not str or method not in METHODS:
            method = "OTHER"
        r = self._admit(method, path, _Responder)
        if type(r) is tuple:
            await _respond(send, r, method == "HEAD")
            return
        assert isinstance(r, _Responder)
        r.scope, r.root, r.downstream = scope, root, send
        pool = self._pool
        if pool is not None and not r.take():
            try:
                resource, cold, _ = await pool.acquire_timed_async()
            except (PoolFullError, PoolTimeoutError, LimitExceededError) as exc:
                await _respond(send, r.refuse(exc), method == "HEAD")
                return
            except BaseException:
                r.abandon()
                raise
            r.lease(resource, cold)
        r.started(scope.get("method"), scope.get("scheme"), scope.get("http_version"))
        try:
            await self.app(scope, receive, r.send)
        except BaseException as exc:
            answer = r.failed(exc)
            if answer is None:
                raise
            await _respond(send, answer, method == "HEAD")
        else:
            if not r.done:
                # No response at all: the server answers 500 for it. Started but never
                # finished: the client went away mid-response (not counted).
                counted = r.status == 0
                if counted:
                    r.status = 500  # what the server answers for it
                r.settle(self._core.status_outcome(500) if counted else NEUTRAL, counted)
        finally:
            r.give_back()  # once the app is done, background work included

    async def _endpoint(
        self, kind: str, scope: Scope, receive: Receive, send: Send, path: str
    ) -> None:
        """Serve ``/metrics``, the status document, readiness or the control plane."""
        core = self._core
        if not self._shadow_checked:
            self.endpoint_requested()
        method = scope.get("method")
        head = method == "HEAD"
        if kind == "ready":  # no auth: load balancers and probes ask
            await _respond(send, core.operations.ready_answer(method), head)
            return
        headers = Headers.from_asgi(scope.get("headers"))
        if kind == "status" and wants_page(method, headers.get("accept", "")):
            await _respond(send, core.operations.page(), head)  # no data: the page asks
            return
        verdict = core.check_auth(headers)
        if inspect.isawaitable(verdict):
            try:
                verdict = await verdict
            except Exception:
                log_once("endpoint_auth", "switchgear: endpoint_auth raised; request denied")
                verdict = False
        if kind == "control":
            response = core.operations.control_refusal(method, verdict)
            if response is None:
                body = await _read_body(receive, MAX_BODY)
                response = core.operations.control(
                    path, headers.get("content-type", ""), body, verdict
                )
            await _respond(send, response, False)
            return
        response = core.endpoint_refusal(verdict, method)
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
