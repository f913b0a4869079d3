"""The benchmark harness runs end to end on a tiny config (speed is never asserted)."""

import importlib.util
import sys

import pytest
from helpers.env import REPO_ROOT


@pytest.mark.slow
def test_smoke_benchmark_reports_a_row_per_framework(capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.append(str(REPO_ROOT))
    from benchmarks.run import main

    frameworks = ["ours"] + (["torch"] if importlib.util.find_spec("torch") else [])
    main(["--smoke", "--frameworks", ",".join(frameworks)])
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| smoke |")]
    assert [row.split("|")[2].strip() for row in table] == frameworks
    for row in table:
        tokens_per_s = float(row.split("|")[3])
        assert tokens_per_s > 0
    # Each of our rows names the kernels its products ran on (patch 0019's record).
    ran = [line for line in out.splitlines() if line.startswith("- smoke ours: ")]
    assert len(ran) == 1 and "mul_mat f32: " in ran[0], out
    assert "1-minute load average was " in out  # numbers from a shared machine say how busy


def test_step_plan_measures_enough_time_and_a_slow_first_step_alone() -> None:
    sys.path.append(str(REPO_ROOT))
    from benchmarks.run import MAX_STEPS, MIN_MEASURED_S, SLOW_STEP_S, StepPlan

    def measured(step_s: float) -> list[int]:
        plan = StepPlan(warmup=1, steps=3)
        return [i for i in plan if plan.measured(i, step_s)]

    assert measured(MIN_MEASURED_S) == [1, 2, 3]
    assert measured(MIN_MEASURED_S / 8) == list(range(1, 9))  # 8 steps reach the minimum
    assert measured(MIN_MEASURED_S / 1000) == list(range(1, MAX_STEPS + 1))
    assert measured(SLOW_STEP_S + 1) == [0]
