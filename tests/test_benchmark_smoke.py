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
