"""The benchmark harness runs end to end on a tiny config (speed is never asserted)."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_benchmark_reports_a_row_per_framework(capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.append(str(ROOT))
    from benchmarks.run import main

    frameworks = ["ours"] + (["torch"] if importlib.util.find_spec("torch") else [])
    main(["--smoke", "--frameworks", ",".join(frameworks)])
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| smoke |")]
    assert [row.split("|")[2].strip() for row in table] == frameworks
    for row in table:
        tokens_per_s = float(row.split("|")[3])
        assert tokens_per_s > 0


def test_step_plan_measures_a_slow_first_step_alone() -> None:
    sys.path.append(str(ROOT))
    from benchmarks.run import SLOW_STEP_S, StepPlan

    plan = StepPlan(warmup=1, steps=3)
    assert [i for i in plan if plan.measured(i, 0.1)] == [1, 2, 3]
    slow = StepPlan(warmup=1, steps=3)
    assert [i for i in slow if slow.measured(i, SLOW_STEP_S + 1)] == [0]
    assert slow.warmup == 0
