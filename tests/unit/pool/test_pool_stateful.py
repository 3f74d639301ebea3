"""DynamicPool against a model: sizes, LIFO reuse, the autoscaler's time-weighted decisions,
and every resource accounted for (held, idle, or closed exactly once)."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import switchgear as sg
from switchgear._pool.policy import decide as _decide
from switchgear.testing import FakeClock


class Engine:
    def __init__(self, number: int) -> None:
        self.number = number
        self.closes = 0

    def close(self) -> None:
        self.closes += 1

    def __repr__(self) -> str:
        return f"<Engine {self.number}>"


class PoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.made: list[Engine] = []
        self.pool: sg.DynamicPool[Engine] | None = None
        self.idle: list[Engine] = []  # the model's LIFO stack, bottom first
        self.held: list[Engine] = []
        self.closed = False
        self.busy_area = 0.0
        self.total_area = 0.0
        self.t_window = self.clock()
        self.requests = self.cold_starts = self.scaled_up = self.scaled_down = 0

    def factory(self) -> Engine:
        self.made.append(Engine(len(self.made)))
        return self.made[-1]

    @property
    def p(self) -> sg.DynamicPool[Engine]:
        assert self.pool is not None
        return self.pool

    @initialize(
        min_size=st.integers(0, 3),
        extra=st.integers(0, 4),
        up=st.sampled_from([0.5, 0.8, 1.0]),
        down=st.sampled_from([0.1, 0.2, 0.4]),
    )
    def start(self, min_size: int, extra: int, up: float, down: float) -> None:
        self.pool = sg.DynamicPool(
            self.factory,
            min_size=min_size,
            max_size=max(1, min_size + extra),
            scale_up_threshold=up,
            scale_down_threshold=down,
            scale_interval=3600,  # the real-time thread never steps this
            clock=self.clock,
            name="engines",
        )
        self.idle = list(self.made)

    def total(self) -> int:
        return len(self.idle) + len(self.held)

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 3.0, 10.0]))
    def advance(self, dt: float) -> None:
        self.busy_area += len(self.held) * dt
        self.total_area += self.total() * dt
        self.clock.advance(dt)

    @rule()
    def acquire(self) -> None:
        pool = self.p
        self.requests += 1
        if self.closed:
            with pytest.raises(sg.PoolClosedError):
                pool.acquire(timeout=0)
        elif self.idle:
            engine, cold, waited = pool.acquire_timed(timeout=0)
            assert engine is self.idle.pop()  # the most recently released
            assert (cold, waited) == (False, 0.0)
            self.held.append(engine)
        elif self.total() < pool.max_size:
            engine, cold, _ = pool.acquire_timed(timeout=0)
            assert engine is self.made[-1]
            assert cold
            self.held.append(engine)
            self.cold_starts += 1
        else:
            with pytest.raises(sg.PoolTimeoutError):
                pool.acquire(timeout=0)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        engine = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        self.p.release(engine)
        if self.closed:
            assert engine.closes == 1
        else:
            self.idle.append(engine)

    @precondition(lambda self: self.idle)
    @rule(data=st.data())
    def release_twice(self, data: st.DataObject) -> None:
        engine = data.draw(st.sampled_from(self.idle))
        with pytest.raises(ValueError, match="twice"):
            self.p.release(engine)

    @rule()
    def release_unknown(self) -> None:
        with pytest.raises(ValueError, match="not acquired"):
            self.p.release(Engine(-1))

    @rule()
    def check_and_scale(self) -> None:
        pool = self.p
        if self.closed:
            assert pool.check_and_scale() == 0
            return
        now = self.clock()
        if now > self.t_window and self.total_area > 0:
            util = self.busy_area / self.total_area
        else:
            total = self.total()
            util = len(self.held) / total if total else float(bool(self.held))
        self.t_window = now
        self.busy_area = self.total_area = 0.0
        want = _decide(
            util,
            self.total(),
            len(self.idle),
            pool.min_size,
            pool.max_size,
            pool._core.up,
            pool._core.down,
        )
        before = len(self.made)
        delta = pool.check_and_scale()
        if want > 0:
            assert delta == min(want, pool.max_size - self.total())
            assert len(self.made) == before + delta
            self.idle.extend(self.made[before:])
            self.scaled_up += delta
        elif want < 0:
            assert delta == -min(-want, len(self.idle), self.total() - pool.min_size)
            retired, self.idle = self.idle[:-delta], self.idle[-delta:]
            assert all(e.closes == 1 for e in retired)  # the least recently used
            self.scaled_down -= delta
        else:
            assert delta == 0

    @rule()
    def close(self) -> None:
        self.p.close()
        for engine in self.idle:
            assert engine.closes == 1
        self.idle = []
        self.closed = True

    @invariant()
    def sizes_match_the_model(self) -> None:
        if self.pool is None:
            return
        s = self.pool.stats()
        assert (s.total, s.in_use, s.available, s.waiting) == (
            self.total(),
            len(self.held),
            len(self.idle),
            0,
        )
        if not self.closed:
            assert self.pool.min_size <= s.total <= self.pool.max_size
        assert (s.total_requests, s.cold_starts, s.scale_up_count, s.scale_down_count) == (
            self.requests,
            self.cold_starts,
            self.scaled_up,
            self.scaled_down,
        )
        assert s.avg_wait_time == 0.0  # the fake clock never moves during an acquire

    @invariant()
    def every_resource_is_accounted_for(self) -> None:
        live = {id(e) for e in self.held} | {id(e) for e in self.idle}
        for engine in self.made:
            assert engine.closes == (0 if id(engine) in live else 1), engine

    def teardown(self) -> None:
        if self.pool is not None:
            self.pool.close()
            for engine in self.held:
                self.pool.release(engine)
            assert all(e.closes == 1 for e in self.made)


PoolMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestPoolAgainstModel = PoolMachine.TestCase
