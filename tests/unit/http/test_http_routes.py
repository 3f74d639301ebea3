"""Route keys: templates read from what the framework matched, the path cache, endpoints."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchgear._http.auth import Headers, make_auth
from switchgear._http.django_glue import django_route_middleware
from switchgear._http.endpoints import (
    error_response,
    json_response,
    rejection_response,
    retry_after_seconds,
    status_document,
)
from switchgear._http.routes import (
    MAX_CACHED_PATH,
    ROUTE_KEY,
    RouteCache,
    asgi_template,
    method_label,
    path_shape,
    wsgi_template,
)

# -- templates ----------------------------------------------------------------------------


class FakeRoute:
    def __init__(self, path: str, params: tuple[str, ...] = ()) -> None:
        self.path = path
        self.param_convertors = dict.fromkeys(params)


class FakeMount(FakeRoute):
    """A route with sub-routes: what a Mount looks like."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.routes: list[object] = []


def test_asgi_template_plain_route() -> None:
    scope = {
        "route": FakeRoute("/items/{id}", ("id",)),
        "root_path": "",
        "path_params": {"id": "3"},
    }
    assert asgi_template(scope, "") == "/items/{id}"


def test_asgi_template_composes_static_mount_prefix() -> None:
    scope = {"route": FakeRoute("/items/{id}", ("id",)), "root_path": "/api/v1", "path_params": {}}
    assert asgi_template(scope, "") == "/api/v1/items/{id}"
    # A server-level root path is not part of the app's template.
    scope["root_path"] = "/proxy/api"
    assert asgi_template(scope, "/proxy") == "/api/items/{id}"


def test_asgi_template_refuses_parametrised_mount_prefix() -> None:
    scope = {
        "route": FakeRoute("/things/{tid}", ("tid",)),
        "root_path": "/t/acme",
        "path_params": {"tenant": "acme", "tid": "1"},
    }
    assert asgi_template(scope, "") is None


def test_asgi_template_final_mount() -> None:
    scope = {"route": FakeMount("/static"), "root_path": "/static", "path_params": {}}
    assert asgi_template(scope, "") == "/static/{path:path}"


@pytest.mark.parametrize(
    "scope",
    [
        {},
        {"route": None},
        {"route": object()},
        {"route": SimpleNamespace(path=42)},
        {"route": FakeRoute("/x"), "root_path": 7},
        {"route": FakeRoute("/x"), "root_path": "/other"},
    ],
)
def test_asgi_template_unreadable_is_none(scope: dict[str, Any]) -> None:
    assert asgi_template(scope, "/before") is None


def test_explicit_route_key_wins() -> None:
    assert asgi_template({ROUTE_KEY: "/custom/{x}", "route": FakeRoute("/y")}, "") == "/custom/{x}"
    assert wsgi_template({ROUTE_KEY: "/custom/<x>"}, None, "") == "/custom/<x>"


def test_wsgi_template_reads_url_rule_and_script_name() -> None:
    request = SimpleNamespace(url_rule=SimpleNamespace(rule="/hello/<name>"))
    assert wsgi_template({"SCRIPT_NAME": ""}, request, "") == "/hello/<name>"
    assert wsgi_template({"SCRIPT_NAME": "/sub"}, request, "") == "/sub/hello/<name>"
    assert wsgi_template({"SCRIPT_NAME": ""}, SimpleNamespace(url_rule=None), "") is None
    assert wsgi_template({}, None, "") is None
    assert wsgi_template({"SCRIPT_NAME": "/a"}, request, "/b") is None


def test_method_label_bounds_methods() -> None:
    assert method_label("GET") == "GET"
    assert method_label("get") == "OTHER"
    assert method_label(None) == "OTHER"
    assert method_label("X" * 1000) == "OTHER"


# -- the path cache -----------------------------------------------------------------------


def test_path_shape() -> None:
    assert path_shape("/items/42") == "/items/{}"
    assert path_shape("/items/42/parts/0123456789abcdef0") == "/items/{}/parts/{}"
    assert path_shape("/u/9f1c0e7a-3b2d-4c5e-8f6a-1b2c3d4e5f60") == "/u/{}"
    assert path_shape("/items/latest") is None
    assert path_shape("/v1/items") is None
    assert path_shape("/é/٣") is None  # non-ASCII digits are not ids
    assert path_shape("/" + "1" * (MAX_CACHED_PATH + 1)) is None


def test_cache_exact_then_shape() -> None:
    cache: RouteCache[str] = RouteCache(100)
    assert cache.get("GET", "/items/1") is None
    cache.learn("GET", "/items/1", "items")
    assert cache.get("GET", "/items/1") == "items"
    assert cache.get("GET", "/items/2") == "items"  # same shape
    assert cache.get("POST", "/items/2") is None  # method matters


def test_cache_ambiguous_shape_is_not_used() -> None:
    cache: RouteCache[str] = RouteCache(100)
    cache.learn("GET", "/items/0", "static zero")
    cache.learn("GET", "/items/5", "items")
    assert cache.get("GET", "/items/0") == "static zero"
    assert cache.get("GET", "/items/5") == "items"
    assert cache.get("GET", "/items/6") is None


def test_cache_tail_id_shortcut_never_guesses() -> None:
    """The last-segment shortcut only finds real shapes; other ids fall back to path_shape."""
    cache: RouteCache[str] = RouteCache(100)
    cache.learn("GET", "/users/5/items/7", "user items")
    cache.learn("GET", "/items/7", "items")
    assert cache.get("GET", "/users/6/items/8") == "user items"  # shortcut key misses
    assert cache.get("GET", "/users/x/items/8") is None
    assert cache.get("GET", "/items/123") == "items"
    assert cache.get("GET", "/items/123/") is None
    assert cache.get("GET", "/items/v2") is None
    assert cache.get("GET", "/items/٣") is None  # a non-ASCII digit is not an id


_segment = st.one_of(
    st.sampled_from(["items", "users", "v2", "", "٣", "a1"]),
    st.just("9f1c0e7a-3b2d-4c5e-8f6a-1b2c3d4e5f60"),
    st.integers(0, 10**20).map(str),
    st.text("0123456789abcdef", min_size=15, max_size=17),
)
_paths = st.lists(_segment, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))


@settings(max_examples=300, deadline=None)
@given(learned=st.lists(st.tuples(_paths, st.sampled_from("ABC")), max_size=6), probe=_paths)
def test_cache_lookup_matches_the_plain_definition(
    learned: list[tuple[str, str]], probe: str
) -> None:
    """get() == exact path if learned, else the shape's single value, else None."""
    cache: RouteCache[str] = RouteCache(100)
    exact: dict[str, str] = {}
    shapes: dict[str, set[str]] = {}
    for path, value in learned:
        cache.learn("GET", path, value)
        exact[path] = value
        shape = path_shape(path)
        if shape is not None:
            shapes.setdefault(shape, set()).add(value)
    if probe in exact:
        expected: str | None = exact[probe]
    else:
        values = shapes.get(path_shape(probe) or "", set())
        expected = next(iter(values)) if len(values) == 1 else None
    assert cache.get("GET", probe) == expected


@settings(max_examples=200, deadline=None)
@given(
    learned=st.lists(
        st.tuples(st.sampled_from(["GET", "POST"]), _paths, st.sampled_from("ABC")), max_size=12
    ),
    probes=st.lists(st.tuples(st.sampled_from(["GET", "POST"]), _paths), max_size=6),
    capacity=st.integers(1, 4),
)
def test_cache_tail_shortcut_agrees_with_shapes_through_eviction(
    learned: list[tuple[str, str, str]], probes: list[tuple[str, str]], capacity: int
) -> None:
    """With evictions and two methods, get() is exact-then-full-shape, the shortcut aside."""
    cache: RouteCache[str] = RouteCache(capacity)

    def by_definition(method: str, path: str) -> str | None:
        value = cache._exact.get((method, path))
        if value is not None:
            return value
        shape = path_shape(path)
        return None if shape is None else cache._shapes.get((method, shape))

    for method, path, value in learned:
        cache.learn(method, path, value)
        for probe_method, probe in [*probes, (method, path)]:
            assert cache.get(probe_method, probe) == by_definition(probe_method, probe)
    assert len(cache._shapes) <= capacity


def test_cache_never_guesses_for_a_path_too_long_to_cache() -> None:
    """Like path_shape: a 5,000-digit id (Starlette's int converter raises on it) gets no guess."""
    cache: RouteCache[str] = RouteCache(100)
    cache.learn("GET", "/items/7", "items")
    assert cache.get("GET", "/items/" + "1" * MAX_CACHED_PATH) is None
    assert cache.get("GET", "/items/" + "1" * (MAX_CACHED_PATH - len("/items/"))) == "items"


def test_learn_without_shape_remembers_the_path_only() -> None:
    cache: RouteCache[str] = RouteCache(100)
    cache.learn("GET", "/items/7", "items")
    cache.learn("GET", "/items/deadbeefdeadbeef", "<unmatched>", shape=False)
    assert cache.get("GET", "/items/deadbeefdeadbeef") == "<unmatched>"
    assert cache.get("GET", "/items/cafebabecafebabe") == "items"  # the shape is not ambiguous


def test_cache_is_bounded_lru() -> None:
    cache: RouteCache[str] = RouteCache(3)
    for p in ("/a", "/b", "/c"):
        cache.learn("GET", p, p)
    assert cache.get("GET", "/a") == "/a"  # refresh /a
    cache.learn("GET", "/d", "/d")
    assert len(cache) == 3
    assert cache.get("GET", "/b") is None
    assert cache.get("GET", "/a") == "/a"
    cache.learn("GET", "/" + "x" * (MAX_CACHED_PATH + 1), "huge")
    assert len(cache) == 3
    cache.clear()
    assert len(cache) == 0


def test_cache_capacity_validated() -> None:
    with pytest.raises(ValueError, match="capacity"):
        RouteCache(0)


# -- auth ---------------------------------------------------------------------------------


def test_headers_case_insensitive_and_joined() -> None:
    h = Headers.from_asgi([(b"X-A", b"1"), (b"x-a", b"2"), (b"Accept", b"text/plain"), ("bad",)])
    assert h["x-A"] == "1, 2"
    assert "ACCEPT" in h
    assert len(h) == 2
    assert "1, 2" not in repr(h)
    env = Headers.from_environ({"HTTP_AUTHORIZATION": "Bearer t", "CONTENT_TYPE": "a/b", "X": 1})
    assert env["authorization"] == "Bearer t"
    assert env["content-type"] == "a/b"
    assert Headers.from_asgi(None) == {}


def test_bearer_auth() -> None:
    check = make_auth("s3cret")
    assert check is not None
    assert check(Headers([("Authorization", "Bearer s3cret")]))
    assert check(Headers([("Authorization", "bearer  s3cret ")]))
    assert not check(Headers([("Authorization", "Bearer wrong")]))
    assert not check(Headers([("Authorization", "Basic s3cret")]))
    assert not check(Headers([("Authorization", "Bearer sécret")]))
    assert not check(Headers())


def test_auth_option_validation() -> None:
    assert make_auth(None) is None
    for bad in ("", " x", "a b", "tök"):
        with pytest.raises(ValueError, match="endpoint_auth"):
            make_auth(bad)
    with pytest.raises(TypeError, match="endpoint_auth"):
        make_auth(42)

    def predicate(headers: Headers) -> bool:
        return "x-ok" in headers

    assert make_auth(predicate) is predicate


# -- endpoints ----------------------------------------------------------------------------


def test_retry_after_whole_seconds() -> None:
    assert retry_after_seconds(0.0) == 1
    assert retry_after_seconds(0.2) == 1
    assert retry_after_seconds(12.0) == 12
    assert retry_after_seconds(12.01) == 13
    assert retry_after_seconds(math.inf) == 1


def test_rejection_response() -> None:
    status, headers, body = rejection_response(503, "circuit_open", "GET /items/{id}", 11.5)
    assert status == 503
    assert ("Retry-After", "12") in headers
    assert json.loads(body) == {
        "error": "circuit_open",
        "name": "GET /items/{id}",
        "retry_after": 12,
    }


def test_json_response_is_valid_json_with_nan() -> None:
    _, headers, body = json_response(200, {"a": math.nan, "b": [math.inf, 1.5]})
    assert json.loads(body) == {"a": None, "b": [None, 1.5]}
    assert ("Content-Length", str(len(body))) in headers
    assert error_response(401, "unauthorized")[2] == b'{"error":"unauthorized"}'


def test_status_document_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import dataclass

    from switchgear._metrics import errors as _metrics_errors

    monkeypatch.setattr(_metrics_errors, "_counts", {})  # none in this process so far

    @dataclass
    class S:
        request_count: int
        avg: float

    doc = status_document(
        {"GET /x": (S(1, 0.5), {"qps": 2.0}, "closed")}, {"engines": S(2, 0.0)}, (10, 0)
    )
    assert doc == {
        "names": {
            "GET /x": {
                "total": {"request_count": 1, "avg": 0.5},
                "window": {"qps": 2.0},
                "circuit_breaker": {"state": "closed"},
            }
        },
        "pools": {"engines": {"request_count": 2, "avg": 0.0}},
        "limits": {},
        "memory": {"used": 10, "limit": 0},
        "metrics_errors": {},
    }


# -- Django glue (no Django needed: the contract is request.resolver_match.route) -----------


def test_django_route_middleware_sets_environ_and_scope() -> None:
    response = object()
    mw = django_route_middleware(lambda request: response)
    environ: dict[str, Any] = {}
    request = SimpleNamespace(
        environ=environ, resolver_match=SimpleNamespace(route="items/<int:id>/")
    )
    assert mw(request) is response
    assert environ[ROUTE_KEY] == "/items/<int:id>/"
    scope: dict[str, Any] = {}
    request2 = SimpleNamespace(scope=scope, resolver_match=SimpleNamespace(route="^a/(?P<x>\\d+)$"))
    mw(request2)
    assert scope[ROUTE_KEY] == "/a/(?P<x>\\d+)$"
    # No match: nothing set, nothing raised.
    untouched: dict[str, Any] = {}
    mw(SimpleNamespace(environ=untouched, resolver_match=None))
    assert untouched == {}
