"""Route keys for the HTTP middleware: what the framework matched, never the raw path.

Pure policy, no I/O. Two questions are answered here:

* *After* a request, which route template did the framework match? Starlette/FastAPI leave
  the matched route on the scope (``scope["route"]``), Flask/Werkzeug leave the request (with
  its ``url_rule``) on the environ, and any app may set ``"switchgear.route"`` itself. We read
  those; we never re-run the router's matching, because a framework upgrade that changes its
  router internals must not turn into 500s (it did for several peers). Where the framework
  leaves only the matched endpoint (Starlette before 1.7; FastAPI for ``add_route`` routes,
  ``/openapi.json`` and ``/docs``), :class:`EndpointIndex` finds the one route declaring that
  endpoint object in the router's route list, by identity.
* *Before* a request, which route will it probably hit? The breaker must decide before the app
  runs, so :class:`RouteCache` remembers, per method, path -> route learned from earlier
  responses (bounded LRU), plus a coarser "shape" (id-like segments blanked) so that
  ``/items/123`` is known once ``/items/7`` has been seen.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

__all__ = [
    "EXCEPTION_KEY",
    "MAX_CACHED_PATH",
    "METHODS",
    "OTHER",
    "ROUTE_KEY",
    "UNMATCHED",
    "EndpointIndex",
    "RouteCache",
    "asgi_template",
    "method_label",
    "path_shape",
    "wsgi_template",
]

V = TypeVar("V")

#: The key of requests no route matched (404s, redirects to a trailing slash, plain apps).
UNMATCHED = "<unmatched>"
#: The key of every route beyond ``max_routes``.
OTHER = "<other>"
#: Scope/environ key an app (or a framework adapter) may set to the matched route template.
ROUTE_KEY = "switchgear.route"
#: Scope/environ key the framework exception handlers set to the exception a route raised
#: before the framework turned it into a response (see :mod:`.frameworks`).
EXCEPTION_KEY = "switchgear.exception"
#: Longer paths are never cached (a path is a dict key; 10k of them must stay small).
MAX_CACHED_PATH = 512

# Anything else (including lower-case "get", which HTTP says is a different method) shares
# one label, so a client cannot grow the label set by inventing methods.
METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "QUERY")
)
_HEX = frozenset("0123456789abcdefABCDEF")
_DIGITS = "0123456789"


def method_label(method: object) -> str:
    """The method as a label: a standard method, else ``"OTHER"``.

    >>> method_label("GET"), method_label("BREW")
    ('GET', 'OTHER')
    """
    return method if isinstance(method, str) and method in METHODS else "OTHER"


def _id_like(segment: str) -> bool:
    n = len(segment)
    if not n or not segment.isascii():
        return False
    if segment.isdigit():
        return True
    if n == 36 and segment[8] == segment[13] == segment[18] == segment[23] == "-":
        return _HEX.issuperset(segment.replace("-", ""))
    return n >= 16 and _HEX.issuperset(segment)


def path_shape(path: str) -> str | None:
    """``path`` with id-like segments (digits, UUIDs, long hex) blanked; None if there are none.

    >>> path_shape("/items/42/parts/9f1c0e7a-3b2d-4c5e-8f6a-1b2c3d4e5f60")
    '/items/{}/parts/{}'
    >>> path_shape("/items/latest") is None
    True
    """
    if len(path) > MAX_CACHED_PATH:
        return None
    segments = path.split("/")
    ascii_path = path.isascii()
    changed = False
    # On the middleware's hot path: the cheap tests first (ASCII digits; long enough for hex).
    for i, segment in enumerate(segments):
        if (segment.isdigit() and (ascii_path or segment.isascii())) or (
            len(segment) >= 16 and _id_like(segment)
        ):
            segments[i] = "{}"
            changed = True
    return "/".join(segments) if changed else None


def _prefix(before: object, after: object) -> str | None:
    """What a mount appended to the root path (``""`` when nothing); None if unreadable."""
    if before == after:
        return ""
    if isinstance(before, str) and isinstance(after, str) and after.startswith(before):
        return after[len(before) :]
    return None


def asgi_template(
    scope: Mapping[str, Any], root_path_before: object, endpoints: EndpointIndex | None = None
) -> str | None:
    """The route template the ASGI app matched for this scope, or None if it cannot tell.

    Read after (or while) the app ran: routers record their match on the scope they were
    given, which is the dict we passed down. Starlette/FastAPI set ``scope["route"]``, whose
    ``path`` is relative to its mount; the mounts appended their matched prefix to
    ``root_path``, so the prefix is ``root_path`` now minus ``root_path`` before. A mount
    whose own path has parameters appended concrete values there, which would be a raw path
    in a label, so that case yields None. Without a route on the scope, ``endpoints`` (if
    given) names it from ``scope["endpoint"]`` and ``scope["router"]``.
    """
    explicit = scope.get(ROUTE_KEY)
    if explicit is not None:
        return explicit if isinstance(explicit, str) and explicit else None
    route = scope.get("route")
    if route is None:
        if endpoints is None:
            return None
        return endpoints.template(
            scope.get("router"),
            scope.get("endpoint"),
            _prefix(root_path_before, scope.get("root_path", "")),
        )
    path = getattr(route, "path", None)
    if type(path) is not str:
        return route if isinstance(route, str) and route else None
    after = scope.get("root_path", "")
    if after == root_path_before and path[:1] == "/":
        return path  # the common case: no mount in between
    prefix = _prefix(root_path_before, after)
    if prefix is None:
        return None
    if hasattr(route, "routes"):
        # The final match is itself a Mount (static files, a plain ASGI app): its own
        # matched part is already in the prefix.
        if not prefix.endswith(path):
            return None
        prefix = prefix[: len(prefix) - len(path)]
        path = path + "/{path:path}"
    if prefix:
        params = scope.get("path_params")
        convertors = getattr(route, "param_convertors", None)
        if isinstance(params, Mapping) and isinstance(convertors, Mapping):
            if any(name not in convertors for name in params):
                return None  # a parametrised mount: the prefix holds values, not a template
        elif params:
            return None
    return prefix + path if path.startswith("/") or not path else prefix + "/" + path


def wsgi_template(
    environ: Mapping[str, Any], request: object, script_name_before: object
) -> str | None:
    """The route template a WSGI app matched, or None if it cannot tell.

    ``request`` is the Werkzeug/Flask request object the app left in
    ``environ["werkzeug.request"]`` while it was producing the response (Flask clears that
    key when the request context ends, so the middleware grabs it in ``start_response``).
    Its ``url_rule.rule`` is the template as Flask writes it (``/hello/<name>``, blueprint
    prefix included). A mount (Werkzeug's ``DispatcherMiddleware``) moved its prefix from
    ``PATH_INFO`` to ``SCRIPT_NAME``; mount prefixes are static strings, so they are kept.
    """
    explicit = environ.get(ROUTE_KEY)
    if isinstance(explicit, str) and explicit:
        return explicit
    if request is None:
        return None
    rule = getattr(getattr(request, "url_rule", None), "rule", None)
    if not isinstance(rule, str):
        return None
    prefix = _prefix(script_name_before, environ.get("SCRIPT_NAME", ""))
    if prefix is None:
        return None
    return prefix + rule


#: How deep :class:`EndpointIndex` follows mounts, and how many routes it reads per router.
_MAX_MOUNT_DEPTH = 8
_MAX_INDEXED_ROUTES = 10_000

# id(endpoint) -> (endpoint, [(mount prefix, template), ...]): the routes declaring it.
_Table = dict[int, tuple[object, list[tuple[str, str]]]]


class EndpointIndex:
    """Route templates by endpoint object, read from a router's declared routes.

    Starlette routers before 1.7 record no matched route on the scope, only
    ``scope["endpoint"]`` (the matched route's endpoint, or a ``Mount``'s app) and
    ``scope["router"]`` (the outermost router); FastAPI does the same for routes that are
    not API routes. The route declaring that endpoint is found by identity in the router's
    route list (mounts followed, their path prepended), never by matching the request path
    again. An endpoint declared by several routes is told apart by the mount prefix the
    request went through (what mounts appended to ``root_path``); if that does not single
    one out, there is no answer. Built once per router and rebuilt only when an endpoint is
    missing and the router's route count changed (routes added after startup), so the
    answer per request is a few dict lookups.

    Example::

        index = EndpointIndex()
        index.template(app.router, health, "")    # '/health', for Route("/health", health)
    """

    def __init__(self, max_routers: int = 16) -> None:
        self._max_routers = max_routers
        # id(router) -> (router, its route count when read, its table)
        self._by_router: dict[int, tuple[object, int, _Table]] = {}
        self._lock = threading.Lock()

    def forked(self) -> None:
        """In a forked child: a fresh lock (a fork may catch it held)."""
        self._lock = threading.Lock()

    def template(self, router: object, endpoint: object, mount_prefix: str | None) -> str | None:
        """The template of the route of ``router`` whose endpoint is ``endpoint``, or None.

        ``mount_prefix`` is what mounts appended to ``root_path`` for this request (None if
        unknown); it only matters when the endpoint is declared more than once.
        """
        if router is None or endpoint is None:
            return None
        entry = self._by_router.get(id(router))
        if entry is not None and entry[0] is router:
            table = entry[2]
            if id(endpoint) not in table and _route_count(router) == entry[1]:
                return None  # not one of this router's endpoints (a 404, a sub-app's own)
        if entry is None or entry[0] is not router or id(endpoint) not in entry[2]:
            with self._lock:
                if len(self._by_router) >= self._max_routers and id(router) not in self._by_router:
                    return None  # bounded: a process serves a handful of routers
                table = {}
                try:
                    _index(getattr(router, "routes", ()), "", table, 0, [0])
                except Exception:  # an unusual router: no name rather than an error
                    table = {}
                self._by_router[id(router)] = (router, _route_count(router), table)
        found = table.get(id(endpoint))
        if found is None or found[0] is not endpoint:
            return None
        candidates = found[1]
        if len(candidates) == 1:
            return candidates[0][1]
        chosen = {template for prefix, template in candidates if prefix == mount_prefix}
        return chosen.pop() if len(chosen) == 1 else None


def _route_count(router: object) -> int:
    try:
        return len(getattr(router, "routes", ()))
    except Exception:
        return -1


def _index(routes: object, prefix: str, table: _Table, depth: int, seen: list[int]) -> None:
    """Add every route of ``routes`` (mounts followed) to ``table`` by its endpoint's id."""
    if not isinstance(routes, (list, tuple)):
        return
    for route in routes:
        seen[0] += 1
        if seen[0] > _MAX_INDEXED_ROUTES:
            return
        path = getattr(route, "path", None)
        if type(path) is not str:
            continue  # Host routes and unknown kinds: no path template to offer
        children = getattr(route, "routes", None)
        if children is not None:  # a Mount: its app is the endpoint when nothing inside matched
            _add(table, getattr(route, "app", None), prefix + path, "/{path:path}")
            if depth < _MAX_MOUNT_DEPTH:
                _index(children, prefix + path, table, depth + 1, seen)
        else:
            _add(table, getattr(route, "endpoint", None), prefix, path)


def _add(table: _Table, endpoint: object, prefix: str, path: str) -> None:
    if endpoint is None:
        return
    found = table.get(id(endpoint))
    if found is None:
        table[id(endpoint)] = (endpoint, [(prefix, prefix + path)])
    else:
        found[1].append((prefix, prefix + path))


class RouteCache(Generic[V]):
    """Bounded ``(method, path) -> V`` memory, with a shape fallback for id-like segments.

    ``get`` is one dict lookup on a hit. A shape that turned out to lead to two different
    values (``/items/0`` a static route, ``/items/{id}`` another) is marked ambiguous and
    not used again, so the fallback never guesses between routes.

    Example::

        cache: RouteCache[str] = RouteCache(10_000)
        cache.learn("GET", "/items/7", "GET /items/{id}")
        cache.get("GET", "/items/7")     # 'GET /items/{id}'
        cache.get("GET", "/items/8")     # 'GET /items/{id}' (same shape)
    """

    def __init__(self, capacity: int = 10_000) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        self.capacity = capacity
        self._exact: OrderedDict[tuple[str, str], V] = OrderedDict()
        self._shapes: OrderedDict[tuple[str, str], V | None] = OrderedDict()
        # The shapes whose only id is the last segment, by method then by what precedes that
        # id ("/items/"): the usual case, looked up without building a key.
        self._tails: dict[str, dict[str, V | None]] = {}
        self._tracking = False  # LRU order kept from half full on
        self._lock = threading.Lock()

    def forked(self) -> None:
        """In a forked child: a fresh lock (a fork may catch it held)."""
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._exact)

    def get(self, method: str, path: str) -> V | None:
        """The value learned for this path (or its shape), or None."""
        key = (method, path)
        value = self._exact.get(key)
        if value is not None:
            # Recency only matters once eviction is near: until then, skip the bookkeeping.
            if self._tracking:
                try:  # noqa: SIM105 - try/except is free on the hot path, suppress() is not
                    self._exact.move_to_end(key)
                except KeyError:  # evicted by another thread in between: a valid answer
                    pass
            return value
        # The usual shape, an id as the last segment, without splitting the path: a key
        # that is not a real shape (an id left earlier in the path) is never in _shapes.
        head = path.rstrip(_DIGITS)
        if len(head) < len(path) <= MAX_CACHED_PATH:
            tails = self._tails.get(method)
            if tails is not None:
                value = tails.get(head)
                if value is not None:
                    return value
        shape = path_shape(path)
        if shape is None:
            return None
        return self._shapes.get((method, shape))

    def learn(self, method: str, path: str, value: V, *, shape: bool = True) -> None:
        """Remember that ``method path`` led to ``value`` (and its shape too, unless not)."""
        if len(path) > MAX_CACHED_PATH:
            return
        blanked = path_shape(path) if shape else None
        with self._lock:
            exact = self._exact
            exact[(method, path)] = value
            exact.move_to_end((method, path))
            if len(exact) > self.capacity:
                exact.popitem(last=False)
            if len(exact) > self.capacity // 2:
                self._tracking = True
            if blanked is None:
                return
            shapes = self._shapes
            skey = (method, blanked)
            if skey in shapes:
                if shapes[skey] is not value:
                    shapes[skey] = None  # ambiguous from now on
                    self._set_tail(method, blanked, None)
                shapes.move_to_end(skey)
            else:
                shapes[skey] = value
                self._set_tail(method, blanked, value)
                if len(shapes) > self.capacity:
                    (old_method, old_shape), _ = shapes.popitem(last=False)
                    if old_shape.endswith("/{}"):
                        self._tails[old_method].pop(old_shape[:-2], None)

    def _set_tail(self, method: str, shape: str, value: V | None) -> None:
        """Mirror a ``_shapes`` entry ending in an id into ``_tails``. Caller holds the lock."""
        if shape.endswith("/{}"):
            self._tails.setdefault(method, {})[shape[:-2]] = value

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._exact.clear()
            self._shapes.clear()
            self._tails.clear()
            self._tracking = False
