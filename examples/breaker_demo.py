"""Drive a circuit breaker through trip -> reject -> half-open -> close, printing each step.

Run with ``python -m examples.breaker_demo`` (``--open-timeout 0.5`` for a faster walk).
"""

from __future__ import annotations

import argparse
import time

import switchgear as sg


class FlakyDependency:
    """Fails while ``down`` is true, like a database during a restart."""

    def __init__(self) -> None:
        self.down = False

    def query(self) -> str:
        if self.down:
            raise ConnectionError("dependency unavailable")
        return "row"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--open-timeout", type=float, default=1.0, help="seconds OPEN")
    args = parser.parse_args(argv)

    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.2f}s] {message}", flush=True)

    breaker = sg.CircuitBreaker(
        "demo",
        failure_threshold=5,
        success_threshold=3,
        open_timeout=args.open_timeout,
        on_state_change=lambda old, new: log(f"transition: {old.value} -> {new.value}"),
    )
    db = FlakyDependency()

    def attempt() -> str:
        try:
            return f"ok ({breaker.call(db.query)})"
        except sg.CircuitOpenError as exc:
            return f"rejected ({exc.reason}, retry after {exc.retry_after:.2f}s)"
        except ConnectionError as exc:
            return f"failed ({exc})"

    log("dependency healthy")
    for _ in range(3):
        log(f"call: {attempt()}")
    log("dependency goes down")
    db.down = True
    for _ in range(6):
        log(f"call: {attempt()}")
    log(f"state is {breaker.state.value}; waiting {args.open_timeout:g}s for half-open")
    time.sleep(args.open_timeout)
    log(f"state is {breaker.state.value}; dependency recovers")
    db.down = False
    for _ in range(4):
        log(f"call: {attempt()}")
    log(f"final state: {breaker.state.value}")
    return 0 if breaker.state is sg.BreakerState.CLOSED else 1


if __name__ == "__main__":
    raise SystemExit(main())
