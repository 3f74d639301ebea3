"""The WSGI adapter: admission, the app call and its I/O, per request one ticket.

Public as :mod:`switchgear.wsgi`; the recording rule is in :mod:`.ticket`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry

from .._breaker.protocol import FAILURE, NEUTRAL, NEVER_COUNTED
from .._errors import LimitExceededError, PoolFullError, PoolTimeoutError, Rejection
from .._limit.limiter import AdaptiveLimit
from .._metrics.prefork import check_scrape
from .._pool.pool import DynamicPool
from .auth import Headers
from .base import HttpMiddlewareBase
from .django_glue import django_route_middleware
from .endpoints import Response, reason_phrase
from .log import log_once
from .operations import MAX_BODY, wants_page
from .options import HttpOptions, default_failure_status
from .routes import ROUTE_KEY, method_label, wsgi_template
from .ticket import Ticket

__all__ = ["WSGIMiddleware", "django_route_middleware"]

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Any]  # (status, headers[, exc_info]) -> write
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def _respond(start_response: StartResponse, response: Response, head: bool) -> list[bytes]:
    status, headers, body = response
    start_response(f"{status} {reason_phrase(status)}", headers)
    return [b"" if head else body]


def _status_code(status: object) -> int:
    try:
        return int(str(status)[:3])
    except ValueError:
        return 0


def _read_body(environ: Environ, limit: int) -> bytes | None:
    """The request body (by ``CONTENT_LENGTH``), or None when it is longer than ``limit``."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        return None
    stream = environ.get("wsgi.input")
    if length <= 0 or stream is None:
        return b""
    return bytes(stream.read(length))


class _Exchange(Ticket):
    """One request in flight: its ticket, the ``start_response`` the app gets, and the body
    iterable returned to the server.

    One object per request does all three jobs. The request is recorded exactly once: when
    the body reaches its ``Content-Length`` (before the last chunk goes out, so a scrape that
    follows the response already counts it), else when the body is exhausted; a body closed
    before either means the client went away (not recorded).
    """

    __slots__ = (
        "_app_close",
        "_app_iter",
        "_environ",
        "_remaining",
        "_request",
        "_result",
        "_script_name",
        "_start_response",
        "_status",
    )

    _app_close: Callable[[], object] | None  # set only for a passed-through file wrapper
    _environ: Environ
    _script_name: object
    _start_response: StartResponse

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._status: object = None
        self._request: object = None
        self._remaining = -1
        self._result: Iterable[bytes] | None = None
        self._app_iter: Iterator[bytes] | None = None

    def begin(self, environ: Environ, start_response: StartResponse, method: object) -> None:
        """The app is about to run: remember the request and start the clock (``method``:
        ``REQUEST_METHOD`` as already read)."""
        self._environ = environ
        self._script_name = environ.get("SCRIPT_NAME", "")
        self._start_response = start_response
        self.started(method, environ.get("wsgi.url_scheme"), environ.get("SERVER_PROTOCOL"))

    # -- start_response ----------------------------------------------------------------

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Any:
        self._status = status
        # Flask drops its request from the environ when its context ends, which is after
        # the response is started: grab it now (its url_rule is the matched template).
        self._request = self._environ.get("werkzeug.request")
        remaining = -1
        for name, value in headers:
            if len(name) == 14 and name.lower() == "content-length":
                try:
                    remaining = int(value)
                except (TypeError, ValueError):
                    remaining = -1
        self._remaining = remaining
        if exc_info is None:
            return self._start_response(status, headers)
        return self._start_response(status, headers, exc_info)

    # -- recording -----------------------------------------------------------------------

    def _finish(
        self,
        outcome: int | None,
        counted: bool,
        rejected: str | None = None,
        cause: object = None,
    ) -> None:
        """Record once; ``outcome=None`` means "from the response status".

        ``cause``: the exception the app raised, if it did (else the status is the cause).
        """
        if self.done:
            return
        status = self._status
        environ = self._environ
        sent = _status_code(status) if status is not None else 0
        code = 500  # a FAILURE without a cause comes from the status, read just below
        if outcome is None:
            code = sent or 500
            outcome, rejected = self.core.response_outcome(code, environ)
        failure = None
        if outcome == FAILURE:
            failure = self.core.failure_of(code if cause is None else cause, environ)
        self.finish(
            outcome,
            counted,
            getattr(self._request, "url_rule", None),
            environ.get(ROUTE_KEY),
            environ.get("SCRIPT_NAME", "") == self._script_name,
            answered=status is not None,
            rejected=rejected,
            failure=failure,
            status=sent,
            raised=cause,
        )

    def template(self) -> str | None:
        return wsgi_template(self._environ, self._request, self._script_name)

    def fail(self, exc: BaseException) -> Response | None:
        """The app raised: record it once (unless cancelled); the answer to send, if any.

        A switchgear rejection that escaped before the response started is answered here
        (``503`` with ``Retry-After``) rather than left to the server's ``500``.
        """
        answer = None
        if isinstance(exc, NEVER_COUNTED):
            self._finish(NEUTRAL, False)
        elif not self.done:
            outcome, rejected = self.core.exception_outcome(exc)
            self._finish(outcome, True, rejected, exc)
            if rejected is not None and self._status is None and isinstance(exc, Rejection):
                answer = self.core.inner_rejection(exc)
        self.give_back()
        return answer

    # -- the body iterable ---------------------------------------------------------------

    def wrap(self, result: Iterable[bytes]) -> Iterable[bytes]:
        """What the server gets: this object, or the app's own file wrapper result."""
        self._result = result
        if type(result) is self._environ.get("wsgi.file_wrapper"):
            # The server's own file wrapper: handing it back keeps its sendfile path. Its
            # close(), which the server calls once it has sent the file, ends the timing.
            try:
                self._app_close = getattr(result, "close", None)
                result.close = self.close_file  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass  # cannot hook close: wrap it like any other body
            else:
                return result
        try:
            self._app_iter = iter(result)
        except BaseException as exc:
            self.fail(exc)
            raise
        if hasattr(type(result), "__len__"):
            # Servers add Content-Length to a one-item body they can count (wsgiref,
            # waitress): they must still be able to count it through us.
            self.__class__ = _SizedExchange
        return self

    def close_file(self) -> None:
        """``close()`` of a passed-through file wrapper: the body has been sent."""
        self._close_with(self._app_close, None, True)

    def __iter__(self) -> _Exchange:
        return self

    def __next__(self) -> bytes:
        assert self._app_iter is not None
        try:
            chunk = next(self._app_iter)
        except StopIteration:
            self._finish(None, True)
            self.give_back()
            raise
        except BaseException as exc:
            if not self.done:
                self.fail(exc)
            self.give_back()
            raise
        remaining = self._remaining
        if remaining > 0:
            remaining -= len(chunk)
            self._remaining = remaining
            if remaining <= 0:
                self._finish(None, True)
        return chunk

    def close(self) -> None:
        # Closed before the body ended: the server stopped sending (client gone).
        self._close_with(getattr(self._result, "close", None), NEUTRAL, False)

    def _close_with(
        self, close: Callable[[], object] | None, outcome: int | None, ended: bool
    ) -> None:
        """Call the app's ``close``, then record the exchange (``outcome``, ``ended``) once."""
        try:
            if close is not None:
                close()
        except BaseException as exc:
            if not self.done:
                self.fail(exc)
            raise
        finally:
            self._finish(outcome, ended)
            self.give_back()


class _SizedExchange(_Exchange):
    """An exchange whose app result has a length, which the server may ask for."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._result)  # type: ignore[arg-type]


class WSGIMiddleware(HttpMiddlewareBase[WSGIApp]):
    """Protect and measure every route of a WSGI app (Flask, Django, any WSGI app).

    The same options and behaviour as :class:`switchgear.asgi.ASGIMiddleware`: requests are
    keyed ``"METHOD template"`` (Flask's ``url_rule``, e.g. ``GET /hello/<name>``; Django
    through ``django_route_middleware``; any other app by setting
    ``environ["switchgear.route"]`` to the template, else ``<unmatched>``), each key has a
    breaker and metrics, an open breaker answers ``503`` with ``Retry-After``, latency runs
    until the body is exhausted, and ``metrics_path``/``status_path`` serve Prometheus text
    and a JSON status document. Under gunicorn with several workers, set
    ``PROMETHEUS_MULTIPROC_DIR`` (see ``docs/middleware.md``).

    Example::

        app = Flask(__name__)
        app.wsgi_app = WSGIMiddleware(
            app.wsgi_app,
            breaker_options={"failure_threshold": 5, "open_timeout": 30.0},
            endpoint_auth="s3cret-token",
        )

    Every option is described in ``docs/middleware.md``.
    """

    _app_param = "wsgi_app"
    _app_kind = "a WSGI application"

    def __init__(
        self,
        wsgi_app: WSGIApp,
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
        super().__init__(wsgi_app, HttpOptions.among(locals()))

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        core = self._core
        path = environ.get("PATH_INFO", "")
        if not isinstance(path, str):
            path = ""
        kind = core.special_kind(path or "/")
        if kind is not None:
            if kind == "exclude":
                return self.app(environ, start_response)
            return self._endpoint(kind, environ, start_response, path)

        raw_method = environ.get("REQUEST_METHOD")
        if core.exclude_methods and raw_method in core.exclude_methods:
            return self.app(environ, start_response)  # excluded: not ours either
        method = method_label(raw_method)
        x = core.admit(method, path, _Exchange)
        if type(x) is tuple:
            return _respond(start_response, x, method == "HEAD")
        assert isinstance(x, _Exchange)
        pool = core.pool
        if pool is not None and not x.take():
            try:
                resource, cold, _ = pool.acquire_timed()
            except (PoolFullError, PoolTimeoutError, LimitExceededError) as exc:
                return _respond(start_response, x.refuse(exc), method == "HEAD")
            except BaseException:
                x.abandon()
                raise
            x.lease(resource, cold)
        x.begin(environ, start_response, raw_method)
        try:
            result = self.app(environ, x.start_response)
        except BaseException as exc:
            answer = x.fail(exc)
            if answer is None:
                raise
            return _respond(start_response, answer, method == "HEAD")
        return x.wrap(result)

    def _endpoint(
        self, kind: str, environ: Environ, start_response: StartResponse, path: str
    ) -> Iterable[bytes]:
        """Serve ``/metrics``, the status document, readiness or the control plane."""
        core = self._core
        if not self._shadow_checked:
            self.endpoint_requested()
        method = environ.get("REQUEST_METHOD")
        if kind == "ready":  # no auth: load balancers and probes ask
            return _respond(start_response, core.operations.ready_answer(method), method == "HEAD")
        headers = Headers.from_environ(environ)
        if kind == "status" and wants_page(method, headers.get("accept", "")):
            # No data in it: the page asks for the token and reads the document itself.
            return _respond(start_response, core.operations.page(), method == "HEAD")
        verdict = core.check_auth(headers)
        if hasattr(verdict, "__await__"):
            close = getattr(verdict, "close", None)
            if close is not None:
                close()  # an async predicate cannot be awaited here: deny, don't leak it
            log_once("endpoint_auth_async", "switchgear: endpoint_auth is async under WSGI")
            verdict = False
        if kind == "control":
            response = core.operations.control_refusal(method, verdict)
            if response is None:
                response = core.operations.control(
                    # PATH_INFO carries the path's bytes as latin-1; names are UTF-8.
                    path.encode("latin-1").decode("utf-8", "replace"),
                    headers.get("content-type", ""),
                    _read_body(environ, MAX_BODY),
                    verdict,
                )
            return _respond(start_response, response, False)
        response = core.endpoint_refusal(verdict, method)
        if response is None and kind == "metrics":
            check_scrape(environ.get("wsgi.multiprocess"))
            response = core.metrics_response(headers.get("accept", ""))
        elif response is None:
            response = core.status_response()
        return _respond(start_response, response, method == "HEAD")
