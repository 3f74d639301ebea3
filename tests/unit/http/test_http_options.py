"""The middleware constructors: one option set, same signature and errors for ASGI and WSGI."""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from switchgear._http.options import HttpOptions
from switchgear.asgi import ASGIMiddleware
from switchgear.wsgi import WSGIMiddleware

OPTIONS = [
    "metrics_path",
    "status_path",
    "breaker_per_route",
    "failure_status",
    "breaker_options",
    "route_breaker_options",
    "pool",
    "limit",
    "route_limits",
    "exclude_paths",
    "endpoint_auth",
    "registry",
    "max_routes",
    "pool_full_status",
    "ready_path",
    "critical",
    "control_plane",
    "exclude_methods",
    "http_metrics",
    "exemplars",
    "meter_provider",
    "clock",
]


def app(*args: Any) -> Any:
    return None


@pytest.mark.parametrize(("cls", "first"), [(ASGIMiddleware, "app"), (WSGIMiddleware, "wsgi_app")])
def test_signature_spells_out_the_one_declaration_of_the_options(cls: type, first: str) -> None:
    declared = fields(HttpOptions)
    params = list(inspect.signature(cls).parameters.values())[1:]
    assert [p.name for p in params] == [f.name for f in declared]
    for param, field in zip(params, declared, strict=True):
        assert param.default == field.default, param.name
        assert param.annotation == field.type, param.name  # both as written (strings)


@pytest.mark.parametrize(("cls", "first"), [(ASGIMiddleware, "app"), (WSGIMiddleware, "wsgi_app")])
def test_signature_lists_every_option_keyword_only_with_defaults(cls: type, first: str) -> None:
    params = inspect.signature(cls).parameters
    assert list(params) == [first, *OPTIONS]
    assert params[first].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    for name in OPTIONS:
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["metrics_path"].default == "/metrics"
    assert params["status_path"].default == "/switchgear"
    assert params["max_routes"].default == 100
    assert params["pool_full_status"].default == 503
    assert params["failure_status"].default(500) is True
    assert params["failure_status"].default(404) is False


@pytest.mark.parametrize(("cls", "first"), [(ASGIMiddleware, "app"), (WSGIMiddleware, "wsgi_app")])
def test_app_by_keyword_and_errors_name_the_argument(cls: Any, first: str) -> None:
    mw = cls(**{first: app}, registry=CollectorRegistry())
    assert mw.app is app
    with pytest.raises(TypeError, match=f"^{first} must be an? [AW]SGI application"):
        cls(42)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        cls(app, bogus=1)
    with pytest.raises(TypeError):
        cls(app, "/metrics")  # options are keyword-only
    with pytest.raises(ValueError, match="max_routes"):
        cls(app, max_routes=0)


def test_route_breaker_options_are_validated_and_name_the_route() -> None:
    reg = CollectorRegistry()
    with pytest.raises(ValueError, match=r"'METHOD /template'.*got '/search'"):
        ASGIMiddleware(app, route_breaker_options={"/search": {}}, registry=reg)
    with pytest.raises(
        ValueError, match=r"route_breaker_options\['GET /search'\]: .*failure_threshold"
    ):
        ASGIMiddleware(
            app, route_breaker_options={"GET /search": {"failure_threshold": 0}}, registry=reg
        )
    with pytest.raises(ValueError, match="must not set ignore_on"):
        ASGIMiddleware(app, route_breaker_options={"GET /x": {"ignore_on": KeyError}}, registry=reg)
    with pytest.raises(TypeError, match="must be a mapping"):
        WSGIMiddleware(app, route_breaker_options={"GET /x": 5}, registry=reg)  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="needs breaker_per_route=True"):
        WSGIMiddleware(
            app,
            breaker_per_route=False,
            route_breaker_options={"GET /x": {"failure_threshold": 2}},
            registry=reg,
        )
