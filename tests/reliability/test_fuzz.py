"""A 1,000-call slice of the API fuzzer (tests/helpers/fuzz_api.py; the full run is
scripts/fuzz_api.py, its result in docs/reliability.md).

Holds: no interpreter death; bad input raises ValueError/TypeError with a message; no
assert reaches a compute thread (those would raise RuntimeError through patch 0017's
guard, and mean a check before compute is missing); every computed value whose inputs
are finite matches its float64 numpy reference (f32: atol 1e-4, rtol 1e-3).
"""

from __future__ import annotations

import pytest
from helpers.fuzz_api import run

pytestmark = pytest.mark.slow  # fuzzes in worker processes


def test_fuzz_slice_no_deaths_no_missed_checks() -> None:
    report = run(calls=1000, procs=2, seed=0, timeout_s=300)
    summary = report.as_dict()
    assert report.calls >= 1000, summary
    assert report.deaths == [], summary
    for bad in ("unexpected", "mismatch", "compute_error", "rejected_without_message"):
        assert report.outcomes[bad] == 0, summary
    # the slice exercises both sides of the contract and checks values
    assert report.outcomes["ok"] > 300 and report.outcomes["rejected"] > 200, summary
    assert report.outcomes["value_checked"] > 50, summary
