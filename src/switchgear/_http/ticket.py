"""One request through the middleware, from admission to its one recording. No I/O.

:meth:`HttpCore.admit <switchgear._http.core.HttpCore.admit>` gives a :class:`Ticket` (or the
``503`` to send); the adapter leases a pool resource for it when there is a pool (waiting is
I/O, so the adapter does it), runs the app, and calls :meth:`Ticket.finish` once with what
it saw. ``finish`` is the recording rule of both middlewares: which route counts the
request, on which breaker token, and the fast path for a route confirmed before.

The adapters' per-request objects (the ASGI responder, the WSGI exchange) are tickets, so a
request costs one object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .._breaker.breaker import CircuitBreaker
from .._breaker.protocol import FAILURE, NEUTRAL
from .._errors import LimitExceededError, PoolFullError, PoolTimeoutError, Rejection
from .._limit.limiter import AdaptiveLimit
from .._metrics.facade import Metrics
from .._metrics.series import TimedSink
from .._pool.pool import MISSING, DynamicPool
from .._protected_fast import limit_steps
from .endpoints import Response
from .log import log_once
from .routes import OTHER, EndpointIndex
from .standard import Opened, Standard

__all__ = ["Recorder", "Route", "Ticket"]


_NOT_SEEN = object()


class Route:
    """The components of one route key: its breaker and metrics, methods pre-bound."""

    __slots__ = (
        "breaker",
        "http_route",
        "key",
        "limit",
        "matched",
        "method",
        "metrics",
        "record",
        "reject",
        "settle_limit",
        "template",
    )

    def __init__(
        self,
        key: str,
        method: str,
        template: str | None,
        breaker: CircuitBreaker,
        metrics: Metrics,
        clock: Callable[[], float],
        limit: AdaptiveLimit | None = None,
    ) -> None:
        self.key = key
        self.limit = limit  # the concurrency limit its requests go through, if any
        # How a finished request settles that limit (the rule @protected uses too).
        self.settle_limit = None if limit is None else limit_steps(limit, clock)[1]
        self.method = method
        self.template = template
        # ``http.route`` in the standard series: none when no route matched (<unmatched>).
        self.http_route = template if template is not None else (OTHER if key == OTHER else "")
        self.breaker = breaker
        self.metrics = metrics
        # Called with the end time the middleware has just read: (now, duration, ok, cold).
        self.record: TimedSink = metrics.series.recorder_for(clock)
        self.reject: Callable[[str], None] = metrics.series.reject
        # The framework's route object last seen to yield ``template`` with no mount in
        # between (ASGI), or Flask's rule (WSGI): a later request that matched the same
        # object has the same key. Nothing, not even None (no route), until one was seen.
        self.matched: object = _NOT_SEEN

    def __repr__(self) -> str:
        return f"<Route {self.key!r}>"


class Recorder(Protocol):
    """What a ticket needs of the middleware core (:class:`~switchgear._http.core.HttpCore`)."""

    clock: Callable[[], float]
    pool: DynamicPool[Any] | None
    endpoints: EndpointIndex
    standard: Standard | None

    def status_outcome(self, status: object) -> int: ...

    def response_outcome(self, status: object, carrier: Any) -> tuple[int, str | None]: ...

    def exception_outcome(self, exc: BaseException) -> tuple[int, str | None]: ...

    def inner_rejection(self, exc: Rejection) -> Response: ...

    def refusal(
        self,
        route: Route | None,
        breaker: CircuitBreaker | None,
        token: int | None,
        exc: PoolFullError | PoolTimeoutError | LimitExceededError,
    ) -> Response: ...

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
    ) -> Route | None: ...

    def failure_of(self, cause: object, carrier: Any) -> tuple[str, str]: ...


class Ticket:
    """What admission decided for one request, and the rule that records it."""

    __slots__ = (
        "breaker",
        "cold",
        "core",
        "done",
        "limit",
        "method",
        "opened",
        "path",
        "resource",
        "route",
        "settle_limit",
        "start",
        "token",
    )

    def __init__(
        self,
        core: Recorder,
        route: Route | None,
        breaker: CircuitBreaker | None,
        token: int | None,
        method: str,
        path: str,
        limit: AdaptiveLimit | None = None,
        settle_limit: Callable[[float, float, int], None] | None = None,
    ) -> None:
        self.core = core
        self.route = route  # the route learned for this path, if any
        self.breaker = breaker  # the breaker that admitted it (route's or global), if any
        self.token = token
        self.limit = limit  # the concurrency limit that admitted it, if any
        self.settle_limit = settle_limit  # how the request's end settles that limit
        self.method = method
        self.path = path
        self.resource: Any = MISSING  # no pool, or not leased yet
        self.cold = False
        self.done = False
        self.start = 0.0
        self.opened: Opened | None = None  # counted active in the standard series

    def started(self, method: object, scheme: object, version: object) -> None:
        """The app is about to run: start the clock, count the request active in the
        standard HTTP series (the values as the server gave them)."""
        core = self.core
        self.start = core.clock()
        standard = core.standard
        if standard is not None:
            try:
                # The fast path: a start key this thread has seen is one lookup and one
                # count; a new (or unhashable) one goes through the whole rule.
                try:
                    opened = standard.start((method, scheme, version))
                except TypeError:
                    opened = None
                self.opened = opened or standard.open_new(method, scheme, version)
            except Exception:
                log_once("record", "switchgear: recording an HTTP request failed")

    # -- the pool (the adapter waits, the ticket keeps the books) ---------------------------

    def take(self) -> bool:
        """Lease an idle resource at once if there is one (no waiting)."""
        pool = self.core.pool
        assert pool is not None
        resource = pool.take()
        if resource is MISSING:
            return False
        self.resource = resource
        return True

    def lease(self, resource: Any, cold: bool) -> None:
        """The resource the adapter waited for."""
        self.resource = resource
        self.cold = cold

    def refuse(self, exc: PoolFullError | PoolTimeoutError | LimitExceededError) -> Response:
        """The pool refused: the permits go back, the rejection is counted; the answer."""
        self.done = True
        self.unlimit()
        return self.core.refusal(self.route, self.breaker, self.token, exc)

    def abandon(self) -> None:
        """Leasing failed otherwise (cancelled, say): the app never runs; nothing counted."""
        self.done = True
        self.unlimit()
        if self.breaker is not None:
            self.breaker.finish(self.token, NEUTRAL, 0.0)

    def unlimit(self) -> None:
        """Free the limit's slot without telling it anything (the request did not run)."""
        limit = self.limit
        if limit is not None:
            self.limit = self.settle_limit = None
            limit.cancel()

    # -- the recording rule -------------------------------------------------------------------

    def template(self) -> str | None:
        """The route template the framework matched (None: no route); read from the request."""
        raise NotImplementedError

    def finish(
        self,
        outcome: int,
        counted: bool,
        matched: object,
        explicit: object,
        same_mount: bool,
        answered: bool = True,
        rejected: str | None = None,
        failure: tuple[str, str] | None = None,
        status: object = 0,
        raised: object = None,
    ) -> None:
        """Record the request once; never raises.

        ``matched`` is the framework's route object (Starlette's route, Flask's rule),
        ``explicit`` a template the app set itself (``switchgear.route``), ``same_mount``
        whether the mount prefix is what it was at admission; :meth:`template` is read only
        when the fast check does not settle it. ``counted=False`` (client gone, cancelled)
        returns the breaker's permit and records nothing. ``answered=False``: the app raised
        before it started a response. ``rejected``: a protection inside the route refused
        (its reason); the breaker gets ``outcome`` (neutral) and the route counts a rejection.
        ``failure``: with a FAILURE outcome, what failed (kept for the breaker's next trip).
        ``status`` (0: none sent) and ``raised`` (the app's exception) are for the standard
        HTTP series.
        """
        if self.done:
            return
        self.done = True
        core = self.core
        now = core.clock()
        duration = now - self.start
        route = self.route
        try:
            settle = self.settle_limit
            if settle is not None:
                # What the limit learns from: how long the request took and whether it
                # failed; a request that did not finish or was refused inside tells nothing.
                settle(now, duration, outcome if counted and rejected is None else NEUTRAL)
            if (
                route is not None
                and counted
                and (
                    (explicit is None and same_mount and matched is route.matched)
                    or (explicit is not None and explicit == route.template)
                )
            ):
                # The fast path: the framework matched what it matched last time for this
                # route key, so the template need not be read.
                if failure is not None:
                    route.breaker.note_failure(*failure)
                route.breaker.finish(self.token, outcome, duration)
                if rejected is None:
                    route.record(now, duration, outcome != FAILURE, self.cold)
                else:
                    route.reject(rejected)
                counted_on: Route | None = route
            else:
                seen = self.template()
                if (
                    route is not None
                    and explicit is None
                    and same_mount
                    and seen == route.template
                    and (matched is not None or seen is None)
                ):
                    # Next time one identity check replaces reading the template. A route
                    # named from its endpoint has no object of its own (None would also be
                    # what a 404 leaves), so it keeps this slower path.
                    route.matched = matched
                counted_on = core.complete(
                    route,
                    self.breaker,
                    self.token,
                    self.method,
                    self.path,
                    seen,
                    outcome,
                    duration,
                    self.cold,
                    counted,
                    answered=answered,
                    rejected=rejected,
                    failure=failure,
                )
            opened = self.opened
            if opened is not None:
                standard = core.standard
                assert standard is not None
                label = counted_on.http_route if counted_on is not None else ""
                # The fast path: an end key recorded on this thread before is one lookup
                # and one bucket; else (not counted, an odd status) the whole rule.
                if not (
                    counted
                    and type(status) is int
                    and standard.ended((opened, label, status), duration, standard.traced)
                ):
                    standard.close_new(opened, label, status, raised, duration, counted)
        except Exception:
            log_once("record", "switchgear: recording an HTTP request failed")

    def give_back(self) -> None:
        """Return the leased resource, once."""
        resource = self.resource
        if resource is MISSING:
            return
        self.resource = MISSING
        pool = self.core.pool
        if pool is not None:
            try:
                pool.give_back(resource)  # ours: never foreign, never twice
            except Exception:
                log_once("release", "switchgear: returning a resource to the pool failed")
