"""A hypothesis state machine drives one breaker against a small reference model.

Twice: with the open interval fixed, and with exponential open backoff (the interval after
k failed or hung trial episodes in a row is min(base * factor ** k, max), back to the base
once the breaker closes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import switchgear as sg
from switchgear.testing import FakeClock

FAILURE_THRESHOLD = 3
SUCCESS_THRESHOLD = 2
MAX_TRIALS = 3
OPEN_TIMEOUT = 5.0
WINDOW = 10.0  # sixty slots of 1/6 s
MINIMUM_CALLS = 4
FAILURE_RATE = 0.5
SLOW_AFTER = 1.0
SLOW_RATE = 0.75


class Ignored(Exception):
    pass


@dataclass
class Model:
    """The contract in its plainest form: lists, not rings; loops, not caches."""

    state: str = "closed"
    streak: int = 0
    calls: list[tuple[int, bool, bool]] = field(default_factory=list)  # (slot, failed, slow)
    trials: dict[int, float] = field(default_factory=dict)  # call id -> admitted at
    trial_successes: int = 0
    opened_at: float = 0.0
    generation: int = 0
    log: list[tuple[str, str]] = field(default_factory=list)
    factor: float = 1.0
    maximum: float = OPEN_TIMEOUT
    backoffs: int = 0  # failed trial episodes in a row
    interval: float = OPEN_TIMEOUT  # how long the current OPEN lasts

    def go(self, new: str, at: float) -> None:
        if new == "open":
            self.backoffs = self.backoffs + 1 if self.state == "half_open" else 0
            self.interval = min(OPEN_TIMEOUT * self.factor**self.backoffs, self.maximum)
        elif new == "closed":
            self.backoffs = 0
            self.interval = OPEN_TIMEOUT
        self.log.append((self.state, new))
        self.state = new
        self.generation += 1
        self.streak = 0
        self.calls = []
        self.trials = {}
        self.trial_successes = 0
        if new == "open":
            self.opened_at = at

    def advance(self, now: float) -> None:
        while True:
            if self.state == "open" and now >= self.opened_at + self.interval:
                self.go("half_open", self.opened_at + self.interval)
            elif self.state == "half_open" and self.trials:
                due = min(self.trials.values()) + OPEN_TIMEOUT
                if now < due:
                    return
                self.go("open", due)
            else:
                return

    def admit(self, call_id: int, now: float) -> tuple[str, object]:
        """Returns ("ok", ticket) or ("rejected", reason)."""
        self.advance(now)
        if self.state in ("closed", "disabled"):
            return "ok", (self.state, self.generation)
        if self.state == "half_open":
            if self.trial_successes + len(self.trials) < MAX_TRIALS:
                self.trials[call_id] = now
                return "ok", ("trial", call_id)
            return "rejected", "half_open_full"
        return "rejected", "circuit_open"

    def finish(self, ticket: object, outcome: str, duration: float, now: float) -> None:
        self.advance(now)
        assert isinstance(ticket, tuple)
        kind: str = ticket[0]
        ident: int = ticket[1]
        if kind == "trial":
            if ident not in self.trials:
                return
            del self.trials[ident]
            if outcome == "failure":
                self.go("open", now)
            elif outcome == "success":
                self.trial_successes += 1
                if self.trial_successes >= SUCCESS_THRESHOLD:
                    self.go("closed", now)
            return
        if kind != "closed" or ident != self.generation or self.state != "closed":
            return
        if outcome == "ignored":
            return
        failed = outcome == "failure"
        self.streak = self.streak + 1 if failed else 0
        slot = int(now // (WINDOW / 60))
        self.calls.append((slot, failed, duration > SLOW_AFTER))
        live = [c for c in self.calls if c[0] > slot - 60]
        n = len(live)
        rate_trip = n >= MINIMUM_CALLS and (
            sum(c[1] for c in live) >= FAILURE_RATE * n or sum(c[2] for c in live) >= SLOW_RATE * n
        )
        if self.streak >= FAILURE_THRESHOLD or rate_trip:
            self.go("open", now)

    def manual(self, target: str, now: float) -> None:
        self.advance(now)
        if self.state != target:
            self.go(target, now)
        elif target == "closed":
            self.streak = 0
            self.calls = []


class BreakerMachine(RuleBasedStateMachine):
    FACTOR = 1.0
    MAXIMUM = OPEN_TIMEOUT

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(start=0.0)
        self.log: list[tuple[str, str]] = []
        self.breaker = sg.CircuitBreaker(
            "model",
            failure_threshold=FAILURE_THRESHOLD,
            success_threshold=SUCCESS_THRESHOLD,
            half_open_max_calls=MAX_TRIALS,
            open_timeout=OPEN_TIMEOUT,
            backoff_factor=self.FACTOR,
            max_open_timeout=self.MAXIMUM,
            failure_rate_threshold=FAILURE_RATE,
            slow_call_duration=SLOW_AFTER,
            slow_call_rate_threshold=SLOW_RATE,
            window=WINDOW,
            minimum_calls=MINIMUM_CALLS,
            ignore_on=Ignored,
            on_state_change=lambda old, new: self.log.append((old.value, new.value)),
            clock=self.clock,
        )
        self.model = Model(factor=self.FACTOR, maximum=self.MAXIMUM)
        self.in_flight: dict[int, tuple[int | None, object]] = {}
        self.next_id = 0

    def _start(self) -> int | None:
        call_id = self.next_id
        self.next_id += 1
        expected, detail = self.model.admit(call_id, self.clock())
        try:
            token = self.breaker.admit()
        except sg.CircuitOpenError as exc:
            assert expected == "rejected", (expected, detail)
            assert exc.reason == detail
            return None
        assert expected == "ok", (expected, detail)
        self.in_flight[call_id] = (token, detail)
        return call_id

    def _end(self, call_id: int, outcome: str, duration: float) -> None:
        token, ticket = self.in_flight.pop(call_id)
        code = {"success": 1, "failure": 0, "ignored": -1}[outcome]
        self.breaker.finish(token, code, duration)
        self.model.finish(ticket, outcome, duration, self.clock())

    @rule(
        outcome=st.sampled_from(["success", "failure", "ignored"]),
        duration=st.sampled_from([0.0, 0.5, 1.5]),
    )
    def call(self, outcome: str, duration: float) -> None:
        """A whole call, through the public ``call`` API."""
        call_id = self.next_id
        self.next_id += 1
        expected, ticket = self.model.admit(call_id, self.clock())

        def body() -> None:
            self.clock.advance(duration)
            if outcome == "failure":
                raise RuntimeError("fail")
            if outcome == "ignored":
                raise Ignored

        try:
            self.breaker.call(body)
        except sg.CircuitOpenError as exc:
            assert expected == "rejected"
            assert exc.reason == ticket
            return
        except (RuntimeError, Ignored):
            pass
        assert expected == "ok"
        self.model.finish(ticket, outcome, duration, self.clock())

    @rule()
    def start_call(self) -> None:
        self._start()

    @precondition(lambda self: bool(self.in_flight))
    @rule(
        data=st.data(),
        outcome=st.sampled_from(["success", "failure", "ignored"]),
        duration=st.sampled_from([0.1, 2.0]),
    )
    def finish_call(self, data: st.DataObject, outcome: str, duration: float) -> None:
        call_id = data.draw(st.sampled_from(sorted(self.in_flight)))
        self._end(call_id, outcome, duration)

    @rule(seconds=st.sampled_from([0.25, 1.0, 2.5, 5.0, 11.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(to=st.sampled_from(["closed", "forced_open", "disabled"]))
    def manual(self, to: str) -> None:
        {"closed": self.breaker.reset, "forced_open": self.breaker.force_open}.get(
            to, self.breaker.disable
        )()
        self.model.manual(to, self.clock())

    @invariant()
    def same_state_and_history(self) -> None:
        assert self.breaker.state.value == _model_state(self.model, self.clock())
        assert self.log == self.model.log

    @invariant()
    def same_open_interval(self) -> None:
        model = self.model
        model.advance(self.clock())
        if model.state in ("open", "half_open"):
            expected = min(OPEN_TIMEOUT * self.FACTOR**model.backoffs, self.MAXIMUM)
            assert self.breaker.current_open_timeout == model.interval == expected


def _model_state(model: Model, now: float) -> str:
    model.advance(now)
    return model.state


class BackoffMachine(BreakerMachine):
    FACTOR = 2.0
    MAXIMUM = 4 * OPEN_TIMEOUT  # reached after two failed trial episodes


BreakerMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
TestBreakerAgainstModel = BreakerMachine.TestCase
BackoffMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
TestBackoffBreakerAgainstModel = BackoffMachine.TestCase
