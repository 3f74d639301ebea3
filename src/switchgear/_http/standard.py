"""The standard HTTP server series as the middlewares record them. No I/O.

OpenTelemetry's stable HTTP semantic conventions name the attributes; this module decides
their values, each from a bounded set, so that neither a client (inventing methods) nor an
app (odd statuses, generated exception classes) can grow the number of series:

* ``http.request.method``: a method the conventions know, else ``_OTHER`` (case-sensitive:
  ``get`` is not ``GET``);
* ``url.scheme``: ``http`` or ``https``, else absent; ``network.protocol.version``: ``1.0``,
  ``1.1``, ``2``, ``3`` (``HTTP/`` stripped), else absent;
* ``http.route``: the template of the route the request was counted on (the middleware's
  ``max_routes`` rule: ``<other>`` beyond it); absent when no route matched;
* ``http.response.status_code``: the status sent (100 to 999), absent when none was;
* ``error.type``: the status as a string for a ``5xx``; the exception's ``__qualname__``
  when the app raised before it sent a status (the first 50 distinct names, then
  ``_OTHER``); absent otherwise.
"""

from __future__ import annotations

import threading
from typing import Any

from .. import _validate as v
from .._metrics.facade import http_series
from .._metrics.http_series import ActiveKey, HttpSeries, Key
from .options import HttpOptions, meter_provider_option

__all__ = ["KNOWN_METHODS", "Opened", "Standard", "standard_options"]

KNOWN_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY")
)
_SCHEMES = frozenset(("http", "https"))
_VERSIONS = {"1.0": "1.0", "1.1": "1.1", "2": "2", "2.0": "2", "3": "3", "3.0": "3"}
_STATUS = tuple(str(code) for code in range(1000))
_MAX_ERROR_TYPES = 50
OTHER = "_OTHER"


class Opened:
    """What a request's start fixed: its method, scheme and version. A recorder has one
    object per set of values, so the object stands for them (by identity, see ``close``)."""

    __slots__ = ("active", "method", "scheme", "version")

    def __init__(self, method: str, scheme: str, version: str) -> None:
        self.method = method
        self.scheme = scheme
        self.version = version
        self.active: ActiveKey = (method, scheme)


def _version(raw: object) -> str:
    if type(raw) is not str:
        return ""
    if raw[:5].upper() == "HTTP/":
        raw = raw[5:]
    return _VERSIONS.get(raw, "")


def standard_options(o: HttpOptions, registry: Any) -> tuple[bool, Any, Standard | None]:
    """``exemplars``, ``meter_provider`` and ``http_metrics`` checked: the first two, and a
    recorder into ``registry``'s standard series (None with ``http_metrics=False``)."""
    traced = v.boolean("exemplars", o.exemplars)
    provider = meter_provider_option(o.meter_provider)
    if not v.boolean("http_metrics", o.http_metrics):
        return traced, provider, None
    return traced, provider, Standard(http_series(registry, provider), traced)


class Standard:
    """One middleware's recorder into the standard HTTP series of its registry.

    A request is recorded in two halves, each with a fast path for what its thread has seen
    before (the series' own lookups, ``HttpSeries.start`` and ``HttpSeries.ended``, bound
    here once; the middleware's ticket calls them directly):

    * its start: ``start((method, scheme, version))``, the values as the server gave them
      (the start key), counts it active and returns its :class:`Opened`; None when the key
      is new to the thread (nothing done): then :meth:`open_new` is the call;
    * its end: ``ended((opened, route, status), duration, traced)`` records it when a
      request of that end key was recorded on this thread before; False otherwise (nothing
      done): then :meth:`close_new` is the call.
    """

    __slots__ = ("_errors", "_lock", "_values", "ended", "http", "start", "traced")

    def __init__(self, http: HttpSeries, traced: bool) -> None:
        self.http = http
        self.traced = traced
        self.start = http.start
        self.ended = http.ended
        # The attribute values -> their one Opened (bounded: each value from a bounded set).
        self._values: dict[tuple[str, str, str], Opened] = {}
        self._errors: set[str] = set()
        self._lock = threading.Lock()

    def open_new(self, method: object, scheme: object, version: object) -> Opened:
        """A request whose start key ``start`` did not know starts: count it active; what
        its recording needs later. The key is remembered for known values only."""
        m = method if type(method) is str and method in KNOWN_METHODS else OTHER
        s = scheme if type(scheme) is str and scheme in _SCHEMES else ""
        values = (m, s, _version(version))
        with self._lock:
            opened = self._values.get(values)
            if opened is None:
                opened = self._values[values] = Opened(*values)
        # Remembered for known values only (bounded, hashable), as the server gave them.
        known = m is method and s is scheme and (version is None or type(version) is str)
        start = (method, scheme, version) if known else None
        self.http.start_new(start, opened.active, opened)
        return opened

    def close_new(
        self,
        opened: Opened,
        route: str,
        status: object,
        raised: object,
        duration: float,
        counted: bool,
    ) -> None:
        """A request whose end ``ended`` did not record ended: no longer active; recorded
        unless ``counted`` is False.

        ``route``: the ``http.route`` value ("" = none); ``status``: the status sent (0 =
        none); ``raised``: the exception the app raised, if any. A status sent fixes the
        key: ``(opened, route, status)`` then stands for it on this thread (see ``ended``).
        """
        if not counted:
            self.http.active(opened.active, -1)
            return
        if type(status) is not int:
            status = 0
        code = _STATUS[status] if 100 <= status < 1000 else ""
        if code:
            error = code if code[0] == "5" else ""
        elif isinstance(raised, BaseException):
            error = self._error_type(raised)
        else:
            error = ""
        key: Key = (opened.method, opened.scheme, route, code, opened.version, error)
        # Without a status, the error (the exception raised) is part of the key too.
        request = (opened, route, status) if code else None
        self.http.ended_new(request, key, duration, self.traced)

    def _error_type(self, exc: BaseException) -> str:
        name = type(exc).__qualname__
        if name in self._errors:
            return name
        with self._lock:
            if len(self._errors) >= _MAX_ERROR_TYPES or len(name) > 200:
                return OTHER
            self._errors.add(name)
        return name
