"""The operations surface: readiness that knows the breakers, and a guarded control plane.

No I/O: the adapters read the request (method, headers, a small body) and send what these
methods return.

*Readiness* (``ready_path``) answers ``503`` while a breaker named in ``critical`` is open, so
a load balancer stops routing to a replica that can only fail; otherwise ``200``. It needs
no auth (probes rarely carry one) and says only which critical breakers are open.

*The control plane* (``control_plane=True``, ``POST <status_path>/breakers/<name>`` with
``{"action": "force_open" | "disable" | "reset"}``) is refused without ``endpoint_auth``. It
reads the ``Authorization`` header only (never a cookie or the query string), requires a
JSON body, and answers nothing to a ``GET``; a browser cannot send such a request from
another origin without a CORS preflight, which is never granted. With shared storage the
action reaches every process through Redis, as a breaker's manual commands do.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import logging
import re
from collections.abc import Callable
from importlib import resources
from typing import Any

from prometheus_client import CollectorRegistry

from .. import _validate as v
from .._breaker.breaker import CircuitBreaker
from .._breaker.protocol import BreakerState
from .._breaker.registry import breakers
from .._metrics.facade import live_metrics
from .endpoints import Response, error_response, json_response

__all__ = ["ACTIONS", "MAX_BODY", "Operations", "critical_option", "wants_page"]

logger = logging.getLogger("switchgear.control")

#: What the control plane can do to a breaker, by the action's name (the metrics' label values
#: are ``_metrics.series.MANUAL_ACTIONS``, the same three).
ACTIONS: dict[str, Callable[[CircuitBreaker], None]] = {
    "force_open": CircuitBreaker.force_open,
    "disable": CircuitBreaker.disable,
    "reset": CircuitBreaker.reset,
}
#: A control request's body is a small JSON object; anything larger is refused (413).
MAX_BODY = 4096

_UNREADY = (BreakerState.OPEN, BreakerState.FORCED_OPEN)


@functools.cache
def _page(control: str, auth: bool) -> Response:
    """The live status page (``status.html``, beside this module), for one control prefix.

    Self-contained: inline style and script, no other request than the status document
    itself. Its Content-Security-Policy allows exactly that script (by its hash) and
    connections to this origin only.
    """
    text = resources.files(__package__).joinpath("status.html").read_text(encoding="utf-8")
    text = text.replace("{{CONTROL}}", html.escape(control, quote=True))
    text = text.replace("{{AUTH}}", "1" if auth else "")
    script = re.search(r"<script>(.*?)</script>", text, re.S)
    assert script is not None
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    policy = (
        f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    body = text.encode()
    return (
        200,
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Content-Security-Policy", policy),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
        ],
        body,
    )


def wants_page(method: object, accept: str) -> bool:
    """A browser asking for the status path: it accepts HTML (a fetch for JSON does not)."""
    return method in ("GET", "HEAD") and "text/html" in accept.lower()


def critical_option(value: object) -> Callable[[str], bool]:
    """``critical``: breaker names (a collection of strings) or a predicate over a name."""
    if callable(value):
        return value
    names = frozenset(v.collection("critical", value, "breaker names", "a callable taking a name"))
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"critical names must be strings, not {type(name).__name__}")
    return names.__contains__


class Operations:
    """Readiness and the control plane of one middleware."""

    def __init__(
        self,
        registry: CollectorRegistry | None,
        critical: Callable[[str], bool],
        ready_path: str | None,
        control_prefix: str | None,
        auth_required: bool = False,
    ) -> None:
        self.registry = registry
        self.auth_required = auth_required
        self.critical = critical
        self.ready_path = ready_path
        self.control_prefix = control_prefix  # "<status_path>/breakers/", or None (off)

    def known(self) -> dict[str, CircuitBreaker]:
        """Every breaker this middleware's registry shares by name (routes and @protected)."""
        return breakers(self.registry)

    def page(self) -> Response:
        """The live status page; it asks for the token itself and holds no data."""
        return _page(self.control_prefix or "", self.auth_required)

    def ready_answer(self, method: object) -> Response:
        """The readiness endpoint's answer to a request with ``method``."""
        if method not in ("GET", "HEAD"):
            return error_response(405, "method_not_allowed", [("Allow", "GET, HEAD")])
        return self.ready()

    def control_refusal(self, method: object, verdict: object) -> Response | None:
        """``405`` for anything but ``POST``, ``401`` without a positive auth verdict."""
        if method != "POST":
            return error_response(405, "method_not_allowed", [("Allow", "POST")])
        if not verdict:
            return error_response(401, "unauthorized", [("WWW-Authenticate", "Bearer")])
        return None

    def ready(self) -> Response:
        """``200`` or ``503``, naming the critical breakers that are open."""
        unready = []
        for name, breaker in sorted(self.known().items()):
            try:
                if self.critical(name) and breaker.state in _UNREADY:
                    unready.append(name)
            except Exception:
                logger.exception("switchgear: the critical predicate raised for %r", name)
        return json_response(503 if unready else 200, {"ready": not unready, "open": unready})

    def control(
        self, path: str, content_type: str, body: bytes | None, verdict: object
    ) -> Response:
        """Apply the action of an authorized ``POST`` to ``path`` (``None`` body: too large)."""
        assert self.control_prefix is not None
        name = path[len(self.control_prefix) :]
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            return error_response(415, "unsupported_media_type")
        if body is None:
            return error_response(413, "payload_too_large")
        try:
            document: Any = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return error_response(400, "invalid_json")
        action = document.get("action") if isinstance(document, dict) else None
        apply = ACTIONS.get(action) if isinstance(action, str) else None
        if apply is None:
            return error_response(400, "unknown_action")
        breaker = self.known().get(name)
        if breaker is None:
            return error_response(404, "unknown_breaker")
        apply(breaker)
        assert isinstance(action, str)
        for metrics in live_metrics(self.registry):
            if metrics.name == name:
                metrics.series.manual_action(action)
                break
        who = identity(verdict)
        logger.warning(
            "switchgear: %s on breaker %r by %s",
            action,
            name,
            who,
            extra={"switchgear_action": action, "switchgear_breaker": name, "switchgear_by": who},
        )
        return json_response(200, {"name": name, "action": action, "state": breaker.state.value})


def identity(verdict: object) -> str:
    """Who the auth verdict says made the request (a string it returned), for the log."""
    if isinstance(verdict, str) and verdict:
        return verdict
    return "a holder of the endpoint token"
