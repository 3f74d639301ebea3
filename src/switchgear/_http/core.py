"""What the ASGI and WSGI middleware share: options, per-route components, recording.

The adapters (``asgi.py``, ``wsgi.py``) do the I/O; this module decides. Per request they
call :meth:`HttpCore.lookup` (one dict lookup: the route learned for this path), admit on
the breaker it names, run the app, then :meth:`HttpCore.complete` once with the outcome.

Why recording is split the way it is:

* The breaker must decide *before* the app runs, but the route is only known *after* the
  framework matched it. Paths seen before are admitted on their route's breaker with the
  breaker's token protocol, exactly like ``@protected``.
* A path seen for the first time is admitted without a breaker decision (there is no route
  to ask yet). Its result is then counted on the route's breaker only if that breaker is
  CLOSED, as if it had been admitted at that moment: in HALF_OPEN it did not take a trial
  permit, so it must not spend one or close the breaker; in OPEN nothing is counted anyway.
  Its metrics are recorded normally. The next request to the path (or to any path of the
  same shape, e.g. ``/items/<another id>``) goes through the breaker.
* A failure inside recording (a metrics backend error, a user ``failure_status`` that
  raises) is logged once and never reaches the user's request.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client.exposition import choose_encoder

from .. import _validate as v
from .._breaker.breaker import CircuitBreaker
from .._breaker.events import describe_error, describe_status
from .._breaker.protocol import FAILURE, NEUTRAL, SUCCESS
from .._breaker.registry import configuration_mismatch, peek, shared_breaker
from .._errors import (
    CircuitOpenError,
    LimitExceededError,
    PoolFullError,
    PoolTimeoutError,
    Rejection,
)
from .._metrics.facade import (
    Metrics,
    observe_limit,
    observe_pool,
)
from .._metrics.prefork import check_server
from .._pool.pool import DynamicPool
from .._protected_fast import limit_steps
from .auth import Auth, Headers, make_auth
from .endpoints import (
    Response,
    error_response,
    rejection_answer,
    rejection_response,
)
from .log import log_once
from .operations import Operations, critical_option
from .options import (
    HttpOptions,
    exclude_option,
    int_option,
    limits_option,
    methods_option,
    path_option,
    probe_breaker,
)
from .options import breaker_options as breaker_options_
from .options import route_breaker_options as route_breaker_options_
from .render_gate import RenderGate
from .routes import EXCEPTION_KEY, METHODS, OTHER, UNMATCHED, EndpointIndex, RouteCache
from .standard import standard_options
from .status import status_answer
from .ticket import Route, Ticket

__all__ = ["ENDPOINT_METHODS", "GLOBAL_BREAKER_NAME", "HttpCore"]

logger = logging.getLogger("switchgear")

_T = TypeVar("_T", bound=Ticket)

#: The name of the one breaker used with ``breaker_per_route=False``.
GLOBAL_BREAKER_NAME = "http"
#: The methods ``metrics_path`` and ``status_path`` answer.
ENDPOINT_METHODS = ("GET", "HEAD")


def _valid_name(key: str) -> bool:
    try:
        v.name("name", key)
    except (TypeError, ValueError):
        return False
    return True


def _bucket_breaker(key: str, clock: Callable[[], float]) -> CircuitBreaker:
    breaker = CircuitBreaker(key, clock=clock)
    breaker.disable()
    return breaker


class HttpCore:
    """Validated middleware options plus the live per-route components."""

    def __init__(self, options: HttpOptions) -> None:
        o = options
        metrics_path, status_path = o.metrics_path, o.status_path
        breaker_per_route = o.breaker_per_route
        failure_status, breaker_options, pool = o.failure_status, o.breaker_options, o.pool
        exclude_paths, endpoint_auth, registry = o.exclude_paths, o.endpoint_auth, o.registry
        max_routes, pool_full_status, clock = o.max_routes, o.pool_full_status, o.clock
        self.clock: Callable[[], float] = v.clock(clock)
        # A pre-fork server's mistakes are found here, at startup, not per request.
        check_server()
        self.metrics_path = path_option("metrics_path", metrics_path)
        self.status_path = path_option("status_path", status_path)
        if self.metrics_path is not None and self.metrics_path == self.status_path:
            raise ValueError("metrics_path and status_path must differ")
        self.breaker_per_route = v.boolean("breaker_per_route", breaker_per_route)
        self.failure_status: Callable[[Any], object] = v.callable_("failure_status", failure_status)
        self.breaker_options = breaker_options_(breaker_options, self.clock)
        self.route_breaker_options = route_breaker_options_(
            o.route_breaker_options, self.breaker_options, METHODS
        )
        if self.route_breaker_options and not breaker_per_route:
            raise ValueError("route_breaker_options needs breaker_per_route=True")
        # Every route's breaker has these options, so this one classifies exceptions for all.
        self.classify = probe_breaker(self.breaker_options).classify
        if pool is not None and not isinstance(pool, DynamicPool):
            raise TypeError(f"pool must be a switchgear.DynamicPool, not {type(pool).__name__}")
        self.pool: DynamicPool[Any] | None = pool
        self.limit, self.route_limits = limits_option(o.limit, o.route_limits, pool, METHODS)
        self.settle_limit = None if self.limit is None else limit_steps(self.limit, self.clock)[1]
        self.exclude_exact, self.exclude_prefixes, self.patterns = exclude_option(exclude_paths)
        self.exclude_methods = methods_option(o.exclude_methods)
        self.auth: Auth | None = make_auth(endpoint_auth)
        if registry is not None:
            from prometheus_client import CollectorRegistry

            if not isinstance(registry, CollectorRegistry):
                raise TypeError(
                    "registry must be a prometheus_client.CollectorRegistry or None, "
                    f"not {type(registry).__name__}"
                )
        self.registry = registry
        # /metrics renderings, shared by concurrent scrapes (at most ten a second).
        self.render_gate: RenderGate[tuple[bytes, str]] = RenderGate(interval=0.1)
        self.max_routes = int_option("max_routes", max_routes, 1, 100_000)
        self.pool_full_status = int_option("pool_full_status", pool_full_status, 400, 599)
        self.exemplars, self.meter_provider, self.standard = standard_options(o, registry)

        self.operations = self._operations(o)
        # Paths answered by the middleware itself, or passed through untouched.
        self.special: dict[str, str] = dict.fromkeys(self.exclude_exact, "exclude")
        for path, kind in (
            (self.metrics_path, "metrics"),
            (self.status_path, "status"),
            (self.operations.ready_path, "ready"),
        ):
            if path is not None:
                self.special[path] = kind
        control = self.operations.control_prefix
        self.prefixes = self.exclude_prefixes + ((control,) if control else ())

        self.cache: RouteCache[Route] = RouteCache(10_000)
        self.endpoints = EndpointIndex()
        self._routes: dict[str, Route] = {}
        self._counted = 0  # keys counted against max_routes
        self._lock = threading.Lock()
        _live.add(self)
        self.global_breaker: CircuitBreaker | None = None
        if not breaker_per_route:
            self.global_breaker = self._global_breaker()
            self._global_metrics = self._new_metrics(GLOBAL_BREAKER_NAME)
            self._global_metrics.attach(self.global_breaker)
        self._pool_attached = False
        if self.pool is not None:
            # Observed from now on, so the first requests' waits are in the histogram too.
            observe_pool(self.pool, self.registry)
        for limit in (self.limit, *self.route_limits.values()):
            observe_limit(limit, self.registry)  # each once: attaching twice does nothing

    def forked(self) -> None:
        """In a forked child (``gunicorn --preload``): fresh locks for every part."""
        self._lock = threading.Lock()
        self.cache.forked()
        self.endpoints.forked()
        self.render_gate.forked()

    # -- admission ---------------------------------------------------------------------------

    def _operations(self, o: HttpOptions) -> Operations:
        """Readiness and the control plane, their options checked."""
        ready_path = path_option("ready_path", o.ready_path)
        if ready_path is not None and ready_path in (self.metrics_path, self.status_path):
            raise ValueError("ready_path must differ from metrics_path and status_path")
        control = None
        if v.boolean("control_plane", o.control_plane):
            if self.auth is None:
                raise ValueError(
                    "control_plane=True needs endpoint_auth: anyone who can reach the app "
                    "could otherwise open its breakers"
                )
            if self.status_path is None:
                raise ValueError("control_plane=True needs a status_path to live under")
            control = self.status_path.rstrip("/") + "/breakers/"
        return Operations(
            self.registry, critical_option(o.critical), ready_path, control, self.auth is not None
        )

    def special_kind(self, path: str) -> str | None:
        """``"metrics"``/``"status"``/``"ready"``/``"control"`` for our endpoints,
        ``"exclude"`` for excluded paths (exact, prefixes, patterns)."""
        kind = self.special.get(path)
        if kind is None and self.prefixes and path.startswith(self.prefixes):
            control = self.operations.control_prefix
            return "control" if control and path.startswith(control) else "exclude"
        if kind is None and self.patterns and any(p.fullmatch(path) for p in self.patterns):
            return "exclude"
        return kind

    def admit(self, method: str, path: str, ticket: type[_T]) -> _T | Response:
        """Admit one request: a ``ticket`` for it, or the ``503`` to answer (counted).

        The breaker asked is the one of the route learned for this path, else the global one
        (``breaker_per_route=False``), else none: a path seen for the first time is admitted
        and decided when its route is known (see :meth:`complete`).
        """
        route = self.cache.get(method, path)
        breaker = route.breaker if route is not None else self.global_breaker
        token: int | None = None
        if breaker is not None:
            try:
                token = breaker.admit()
            except CircuitOpenError as exc:
                return self.circuit_rejection(route, exc)
        limit = route.limit if route is not None else self.limit
        if limit is None:
            return ticket(self, route, breaker, token, method, path)
        try:
            limit.acquire()
        except LimitExceededError as exc:
            return self.refusal(route, breaker, token, exc)
        settle = route.settle_limit if route is not None else self.settle_limit
        return ticket(self, route, breaker, token, method, path, limit, settle)

    def circuit_rejection(self, route: Route | None, exc: CircuitOpenError) -> Response:
        """Count a breaker rejection; the ``503`` answer (with ``Retry-After``) to send."""
        self.reject(route, exc.reason)
        return rejection_response(503, exc.reason, exc.name, exc.retry_after)

    def refusal(
        self,
        route: Route | None,
        breaker: CircuitBreaker | None,
        token: int | None,
        exc: PoolFullError | PoolTimeoutError | LimitExceededError,
    ) -> Response:
        """Give the breaker's permit back (the app never ran), count the rejection, answer.

        A pool's refusal answers ``pool_full_status``; a concurrency limit's ``503`` with its
        ``retry_after`` (about one recent round trip).
        """
        if breaker is not None:
            breaker.finish(token, NEUTRAL, 0.0)
        self.reject(route, exc.reason)
        if isinstance(exc, LimitExceededError):
            name = route.key if route is not None else exc.name
            return rejection_response(503, exc.reason, name, exc.retry_after)
        pool_name = self.pool.name if self.pool is not None else ""
        name = route.key if route is not None else pool_name
        return rejection_response(self.pool_full_status, exc.reason, name, 1.0)

    # -- routes ----------------------------------------------------------------------------

    def _new_metrics(self, key: str) -> Metrics:
        return Metrics(
            key,
            registry=self.registry,
            meter_provider=self.meter_provider,
            clock=self.clock,
            exemplars=self.exemplars,
        )

    def _global_breaker(self) -> CircuitBreaker:
        """The breaker ``http``, shared with whatever already exports one under that name.

        One name, one exported breaker per metrics registry: a ``@protected("http")``
        function or another middleware on the same registry shares it, so ``/metrics`` shows
        the state of the breaker that answers ``503``. Sharing one that was built with other
        options would silently change this middleware's, so that is refused here.
        """
        wanted = probe_breaker(self.breaker_options)
        existing = peek(GLOBAL_BREAKER_NAME, self.registry)
        if existing is not None:
            mismatch = configuration_mismatch(existing, wanted)
            if mismatch is not None:
                raise ValueError(
                    f"breaker_per_route=False: a breaker named {GLOBAL_BREAKER_NAME!r} is "
                    "already live in this metrics registry (a @protected function or another "
                    f"middleware) with a different {mismatch}; one name has one breaker, so "
                    "give both the same options, rename the other one, or pass this "
                    "middleware a registry of its own"
                )
        options = self.breaker_options
        return shared_breaker(
            GLOBAL_BREAKER_NAME,
            lambda: CircuitBreaker(GLOBAL_BREAKER_NAME, **options),
            self.registry,
        )

    def lookup(self, method: str, path: str) -> Route | None:
        """The route learned for this request's path, if any (one dict lookup on a hit)."""
        return self.cache.get(method, path)

    def route_for(self, method: str, template: str | None) -> Route:
        """The route of ``method template`` (``<unmatched>`` for None), created on first use.

        Beyond ``max_routes`` distinct keys, and for a key that cannot be a metrics name
        (too long, control characters), new ones share ``<other>``.
        """
        key = UNMATCHED if template is None else f"{method} {template}"
        route = self._routes.get(key)
        if route is not None:
            return route
        with self._lock:
            route = self._routes.get(key)
            if route is not None:
                return route
            if template is not None and (self._counted >= self.max_routes or not _valid_name(key)):
                key, template = OTHER, None
                route = self._routes.get(key)
                if route is not None:
                    return route
            route = self._create(key, method if template is not None else "", template)
            if template is not None:
                self._counted += 1
            self._routes[key] = route
            return route

    def _create(self, key: str, method: str, template: str | None) -> Route:
        metrics = self._new_metrics(key)
        if self.global_breaker is not None:
            breaker = self.global_breaker
        elif template is None:
            # <unmatched> and <other> gather many routes: a breaker tripped by one of them
            # would answer 503 for all the others. Theirs admits everything and counts
            # nothing (DISABLED, also what /metrics shows). Local even with shared storage.
            breaker = shared_breaker(key, lambda: _bucket_breaker(key, self.clock), self.registry)
            metrics.attach(breaker)
        else:
            # Shared by name with another middleware on this registry (or @protected on the
            # default one): one name, one breaker, whose state is the one exported.
            options = self.route_breaker_options.get(key, self.breaker_options)
            breaker = shared_breaker(key, lambda: CircuitBreaker(key, **options), self.registry)
            metrics.attach(breaker)
        if self.pool is not None and not self._pool_attached:
            # The pool reports through one Metrics (its gauges are keyed by pool name).
            metrics.attach(self.pool)
            self._pool_attached = True
        limit = self.route_limits.get(key, self.limit)
        return Route(key, method, template, breaker, metrics, self.clock, limit)

    def routes(self) -> dict[str, Route]:
        """A snapshot of the live routes by key."""
        with self._lock:
            return dict(self._routes)

    # -- outcomes ----------------------------------------------------------------------------

    def status_outcome(self, status: object) -> int:
        """FAILURE if ``failure_status(status)`` holds, else SUCCESS; never raises."""
        try:
            failed = bool(self.failure_status(status))
        except Exception:
            log_once("failure_status", "switchgear: failure_status(%r) raised", status)
            failed = not isinstance(status, int) or status >= 500
        return FAILURE if failed else SUCCESS

    def exception_outcome(self, exc: BaseException) -> tuple[int, str | None]:
        """How an exception from the app counts: ``(outcome, rejection reason or None)``.

        A switchgear rejection raised inside the route (an inner breaker, pool or limit
        refused) is not the route's failure: the route's breaker gets its permit back and the
        request counts as a rejection with the inner reason. Anything else is classified by
        the breaker options, as with ``@protected``.
        """
        if isinstance(exc, Rejection):
            return NEUTRAL, exc.reason
        return self.classify(exc), None

    def response_outcome(self, status: object, carrier: Any) -> tuple[int, str | None]:
        """How a response counts, given the scope/environ it answered.

        An error status (a failure, or any ``4xx``: a pool's ``429``) whose request carries
        the exception the framework turned into it (left there by the exception handlers)
        counts as that exception; see :meth:`exception_outcome`. Other statuses never look
        further.
        """
        outcome = self.status_outcome(status)
        if outcome == FAILURE or (type(status) is int and status >= 400):
            exc = carrier.get(EXCEPTION_KEY)
            if isinstance(exc, BaseException):
                return self.exception_outcome(exc)
        return outcome, None

    def failure_of(self, cause: object, carrier: Any) -> tuple[str, str]:
        """A failed request as its breaker's last failure (for the trip's event and log).

        ``cause`` is the exception the app raised, or the status it answered; a status that
        a framework made from an exception (left on the scope/environ) names the exception.
        """
        if not isinstance(cause, BaseException):
            carried = carrier.get(EXCEPTION_KEY)
            if not isinstance(carried, BaseException):
                return describe_status(cause)
            cause = carried
        return describe_error(cause)

    def inner_rejection(self, exc: Rejection) -> Response:
        """The answer to a rejection that escaped the app before it started a response."""
        return rejection_answer(exc, self.pool_full_status)

    def reject(self, route: Route | None, reason: str) -> None:
        """Count one rejection (on ``<unmatched>`` when the route is not known yet)."""
        try:
            if route is None:
                route = self.route_for("", None)
            route.reject(reason)
        except Exception:
            log_once("reject", "switchgear: recording a rejection failed")

    def complete(
        self,
        admitted: Route | None,
        breaker: CircuitBreaker | None,
        token: int | None,
        method: str,
        path: str,
        template: str | None,
        outcome: int,
        duration: float,
        cold_start: bool,
        counted: bool,
        *,
        answered: bool = True,
        rejected: str | None = None,
        failure: tuple[str, str] | None = None,
    ) -> Route | None:
        """Record one finished request exactly once; never raises. The route it counted on.

        ``admitted``/``breaker``/``token`` are what admission used (the learned route and its
        breaker, the global breaker, or nothing); ``template`` is what the framework matched
        (None = no route: ``<unmatched>``, even when admission guessed a route from the
        path's shape — a 404 must not count on, or close the breaker of, the route it looked
        like). ``answered=False``: the app raised before it started a response; then no
        template means "cannot tell" and the admitted route stands (Flask propagating an
        error leaves no request behind). ``counted=False`` (client gone, cancelled) still
        returns the breaker's permit but records no metrics. ``rejected``: a protection
        inside the route refused (its reason); counted as a rejection of the route.
        ``failure``: what failed (see :meth:`failure_of`), kept by the breaker that counts it.
        """
        if template is None and not answered and admitted is not None:
            template = admitted.template
        try:
            if not counted and admitted is not None:
                # Client gone / cancelled: give the breaker's permit back, record nothing.
                if breaker is not None:
                    breaker.finish(token, NEUTRAL, 0.0)
                return None
            if admitted is not None and template == admitted.template:
                route = admitted  # the common case: the path's route did not change
            else:
                route = self.route_for(method, template)
                # A path no route matched is remembered as itself only: its shape must keep
                # leading to the real route (/items/abcdef0123456789 a 404, /items/7 not).
                self.cache.learn(method, path, route, shape=template is not None)
            if failure is not None:
                route.breaker.note_failure(*failure)
            if breaker is not None and route.breaker is breaker:
                breaker.finish(token, outcome, duration)
            else:
                if breaker is not None:
                    breaker.finish(token, NEUTRAL, 0.0)  # give a trial permit back
                late = route.breaker
                gen = late.closed_token()
                if gen is not None and outcome != NEUTRAL:
                    late.finish(gen, outcome, duration)
            if rejected is not None:
                route.reject(rejected)
            elif counted:
                route.record(self.clock(), duration, outcome != FAILURE, cold_start)
            return route
        except Exception:
            log_once("record", "switchgear: recording an HTTP request failed")
            return None

    # -- endpoints ---------------------------------------------------------------------------

    def check_auth(self, headers: Headers) -> object:
        """The auth predicate's verdict (maybe an awaitable); True when there is no auth."""
        if self.auth is None:
            return True
        try:
            return self.auth(headers)
        except Exception:
            log_once("endpoint_auth", "switchgear: endpoint_auth raised; request denied")
            return False

    def endpoint_refusal(self, verdict: object, method: object) -> Response | None:
        """``401`` without a positive auth verdict, ``405`` for a method other than GET/HEAD."""
        if not verdict:
            return error_response(401, "unauthorized", [("WWW-Authenticate", "Bearer")])
        if method not in ENDPOINT_METHODS:
            return error_response(405, "method_not_allowed", [("Allow", "GET, HEAD")])
        return None

    def metrics_response(self, accept: str) -> Response:
        """``/metrics``: Prometheus text, or OpenMetrics when ``accept`` asks for it."""
        from .._metrics import render_latest

        registry = self.registry
        # One rendering per format, shared by the scrapes that arrive while it is made.
        _, key = choose_encoder(accept)
        try:
            body, content_type = self.render_gate.render(
                key, lambda: render_latest(registry, accept=accept)
            )
        except Exception:
            log_once("render", "switchgear: rendering metrics failed")
            return error_response(500, "internal_error")
        return (
            200,
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
            body,
        )

    def status_response(self) -> Response:
        """The status endpoint: every name in this registry (routes first), pools, limits."""
        return status_answer(self.routes(), self.registry, self.pool)


# Every middleware core of this process, for the fork handler: a fork taken while another
# thread held one of their locks must not leave the child waiting on it.
_live: weakref.WeakSet[HttpCore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for core in list(_live):
        core.forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
