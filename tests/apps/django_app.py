"""A one-module Django project behind WSGIMiddleware, for
``gunicorn tests.apps.django_app:application``.

``/items/<int:pk>/`` answers; ``/dep/`` calls a ``@protected`` dependency that opens after one
failure (``/control/fail`` makes it fail); ``/ignored/`` raises an exception the route
breakers ignore.
"""

from __future__ import annotations

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

import switchgear as sg
from switchgear.wsgi import WSGIMiddleware

settings.configure(
    DEBUG=False,
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    SECRET_KEY="only-for-this-test-app",  # a test fixture, never deployed
    MIDDLEWARE=["switchgear.wsgi.django_route_middleware"],
    INSTALLED_APPS=[],
    DATABASES={},
    LOGGING_CONFIG=None,
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402 - needs the settings

state = {"failing": False}


class Ignored(Exception):
    """Named in the route breakers' ``ignore_on``."""


@sg.protected(
    "django-inventory",
    breaker=sg.CircuitBreaker("django-inventory", failure_threshold=1, open_timeout=60.0),
)
def inventory() -> str:
    if state["failing"]:
        raise ConnectionError("inventory is down")
    return "ok"


def item(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse({"id": pk})


def dep(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"inventory": inventory()})


def ignored(request: HttpRequest) -> HttpResponse:
    raise Ignored("not the route's fault")


def control(request: HttpRequest, action: str) -> HttpResponse:
    state["failing"] = action == "fail"
    return HttpResponse(action)


urlpatterns = [
    path("items/<int:pk>/", item),
    path("dep/", dep),
    path("ignored/", ignored),
    path("control/<str:action>", control),
]

application = WSGIMiddleware(
    get_wsgi_application(),
    breaker_options={"failure_threshold": 3, "open_timeout": 60.0, "ignore_on": Ignored},
    exclude_paths=("/control/*",),
)
