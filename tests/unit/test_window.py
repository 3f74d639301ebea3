from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchgear._window import SlidingWindow


def test_sums_and_expiry() -> None:
    w = SlidingWindow(60.0)
    w.add(0.5, 1, 0, 0.020)
    w.add(1.5, 1, 1, 0.300)
    assert w.totals(2.0) == pytest.approx((2.0, 1.0, 0.32))
    # 60 s after the first slot began, it has left the window; the second has not.
    assert w.totals(60.0) == pytest.approx((1.0, 1.0, 0.3))
    assert w.totals(61.0) == (0.0, 0.0, 0.0)


def test_reading_does_not_reset() -> None:
    w = SlidingWindow(10.0)
    for t in range(5):
        w.add(float(t), 1, t % 2, 0.1)
    first = w.totals(5.0)
    second = w.totals(5.0)
    assert first == second == pytest.approx((5.0, 2.0, 0.5))


def test_partial_span() -> None:
    w = SlidingWindow(60.0)
    for t in range(60):
        w.add(t + 0.5, 1, 0, 0.0)
    assert w.sums(59.9, 10.0)[0] == 10.0
    assert w.sums(59.9, 60.0)[0] == 60.0
    assert w.sums(59.9, 0.0)[0] == 0.0


def test_late_event_within_window_lands_in_its_slot_and_older_is_dropped() -> None:
    w = SlidingWindow(10.0)
    w.add(20.0, 1, 0, 0)
    w.add(15.0, 1, 0, 0)  # late but within the window
    w.add(5.0, 1, 0, 0)  # older than the window: dropped
    assert w.totals(20.0)[0] == 2.0
    assert w.totals(25.5)[0] == 1.0


def test_long_idle_gap_clears_everything() -> None:
    w = SlidingWindow(10.0)
    w.add(1.0, 3, 1, 1.0)
    w.add(1000.0, 1, 0, 0.0)
    assert w.totals(1000.0) == (1.0, 0.0, 0.0)


def test_covered_is_shorter_while_young() -> None:
    w = SlidingWindow(60.0)
    w.add(100.0, 1, 0, 0)
    assert w.covered(110.0) == pytest.approx(10.0)
    assert w.covered(500.0) == 60.0
    assert w.covered(500.0, 30.0) == 30.0


@pytest.mark.parametrize(("window", "buckets"), [(0, 60), (-1, 60), (float("nan"), 60), (1, 0)])
def test_bad_arguments(window: float, buckets: int) -> None:
    with pytest.raises(ValueError, match=r"window|buckets"):
        SlidingWindow(window, buckets)


@given(
    st.lists(
        st.tuples(st.floats(0, 300, allow_nan=False), st.integers(0, 1), st.floats(0, 5)),
        max_size=60,
    ),
    st.floats(0, 400, allow_nan=False),
)
def test_matches_a_brute_force_sum(events: list[tuple[float, int, float]], extra: float) -> None:
    """Sorted events: the ring agrees with summing every event whose slot is in range."""
    w = SlidingWindow(30.0, buckets=30)
    events.sort()
    for t, failed, latency in events:
        w.add(t, 1, failed, latency)
    now = (events[-1][0] if events else 0.0) + extra
    epoch = int(now // 1.0)
    live = [e for e in events if int(e[0] // 1.0) > epoch - 30]
    a, b, c = w.totals(now)
    assert a == len(live)
    assert b == sum(e[1] for e in live)
    assert c == pytest.approx(sum(e[2] for e in live))
