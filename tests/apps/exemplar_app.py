"""A traced app for ``uvicorn tests.apps.exemplar_app:app``: OpenTelemetry's ASGI middleware
around switchgear's, an SDK tracer provider, and a ``@protected`` call in a span of its own."""

from __future__ import annotations

import asyncio
import time

from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

import switchgear as sg
from switchgear.asgi import ASGIMiddleware

trace.set_tracer_provider(TracerProvider())  # every root span sampled
tracer = trace.get_tracer("exemplar-app")


@sg.protected("exemplar_work")
def work(seconds: float) -> None:
    time.sleep(seconds)


async def sleepy(request: Request) -> Response:
    await asyncio.sleep(int(request.query_params.get("ms", "30")) / 1000)
    return PlainTextResponse("slept")


async def protected_call(request: Request) -> Response:
    # A span of the app's own, around the call (not the request's: no traceparent needed).
    with tracer.start_as_current_span(
        "user work", context=trace.set_span_in_context(trace.INVALID_SPAN)
    ) as span:
        work(0.03)
    ids = span.get_span_context()
    return JSONResponse({"trace_id": f"{ids.trace_id:032x}", "span_id": f"{ids.span_id:016x}"})


app = OpenTelemetryMiddleware(
    ASGIMiddleware(Starlette(routes=[Route("/sleep", sleepy), Route("/work", protected_call)]))
)
