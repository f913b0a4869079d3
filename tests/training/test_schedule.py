"""Warmup + cosine schedule at its landmarks."""

import pytest

from pyggml_train.schedule import lr_at

MAX, MIN, WARM, STEPS = 6e-4, 6e-5, 10, 110


def lr(step: int) -> float:
    return lr_at(step, MAX, MIN, WARM, STEPS)


def test_warmup_is_linear_from_max_over_warmup() -> None:
    assert lr(0) == pytest.approx(MAX / WARM)
    assert lr(4) == pytest.approx(5 * MAX / WARM)
    assert lr(WARM - 1) == pytest.approx(MAX)


def test_cosine_starts_at_max_and_halves_at_midpoint() -> None:
    assert lr(WARM) == pytest.approx(MAX)
    assert lr((WARM + STEPS) // 2) == pytest.approx((MAX + MIN) / 2)
    # a quarter into the decay: cos(pi/4) -> min + (max-min) * (1 + 0.7071) / 2
    assert lr(WARM + 25) == pytest.approx(MIN + (MAX - MIN) * (1 + 2**-0.5) / 2)


def test_decay_is_monotone_and_ends_at_min() -> None:
    values = [lr(s) for s in range(WARM, STEPS + 1)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert lr(STEPS - 1) > MIN
    assert lr(STEPS) == MIN and lr(STEPS + 1000) == MIN


def test_edge_cases() -> None:
    assert lr_at(0, MAX, MIN, 0, 10) == MAX  # no warmup starts at the peak
    assert lr_at(4, MAX, MIN, 5, 5) == pytest.approx(MAX)  # all warmup
    assert lr_at(5, MAX, MIN, 5, 5) == MIN
    with pytest.raises(ValueError, match="step must be >= 0"):
        lr_at(-1, MAX, MIN, WARM, STEPS)
    with pytest.raises(ValueError, match="warmup_steps <= max_steps"):
        lr_at(0, MAX, MIN, 20, 10)
