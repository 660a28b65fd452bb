"""The knee rule of benchmarks/load.py on synthetic steps (no server).

The knee is the highest offered rate carried with achieved >= 95 % of offered,
delivered p99 <= 1 s and no errors; a step without a measured delivered p99 is
not carried.
"""

from __future__ import annotations

from typing import Any

from benchmarks.load_step import carried, knee


def step(offered: float, achieved: float, p99: float | None, **errors: int) -> dict[str, Any]:
    return {
        "offered_per_s": offered,
        "achieved_per_s": achieved,
        "delivered_p99_ms": p99,
        "errors": errors,
    }


def test_the_knee_is_the_highest_carried_rate() -> None:
    steps = [step(25, 25.1, 40), step(50, 48.0, 300), step(100, 60.0, 9000)]
    assert [carried(s) for s in steps] == [True, True, False]
    assert knee(steps) == 50


def test_exactly_95_percent_and_exactly_one_second_are_carried() -> None:
    assert carried(step(100, 95.0, 1000.0))
    assert not carried(step(100, 94.99, 10.0))
    assert not carried(step(100, 100.0, 1000.1))


def test_any_error_or_an_unmeasured_p99_is_not_carried() -> None:
    assert not carried(step(10, 10.0, 20.0, http_503=1))
    assert not carried(step(10, 10.0, 20.0, not_drained=1))
    assert not carried(step(10, 10.0, None))


def test_a_step_with_orders_refused_by_admission_control_is_not_carried() -> None:
    assert not carried({**step(10, 10.0, 20.0), "shed": 1})
    assert carried({**step(10, 10.0, 20.0), "shed": 0})


def test_highest_not_last_and_none_when_nothing_is_carried() -> None:
    # A step above a failed one may still be carried (the machine was busy for a moment).
    steps = [step(25, 25, 40), step(50, 30, 2000), step(75, 75, 500)]
    assert knee(steps) == 75
    assert knee([step(25, 10, 40), step(50, 49, 2000, http_409=2)]) is None
    assert knee([]) is None
