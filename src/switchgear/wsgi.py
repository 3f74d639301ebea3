"""WSGI middleware: a breaker and metrics per route, plus ``/metrics`` and a status page.

Example::

    from flask import Flask
    from switchgear.wsgi import WSGIMiddleware

    app = Flask(__name__)
    app.wsgi_app = WSGIMiddleware(app.wsgi_app, endpoint_auth=os.environ["METRICS_TOKEN"])

Flask: ``install_exception_handlers(app)`` lets the middleware see the exceptions Flask
turns into responses. Django: add ``switchgear.wsgi.django_route_middleware`` to
``MIDDLEWARE`` so requests are keyed by their URL pattern. See ``docs/middleware.md``
for every option.
"""

from ._http.django_glue import django_route_middleware
from ._http.frameworks import install_flask as install_exception_handlers
from ._http.wsgi import WSGIMiddleware

__all__ = ["WSGIMiddleware", "django_route_middleware", "install_exception_handlers"]
