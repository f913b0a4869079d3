"""A few kill drills in CI (tests/helpers/kill_drill.py; the 20-trial run is scripts/kill_drill.py,
its result in docs/reliability.md): after a SIGKILL during training or during a checkpoint
write, the checkpoint on disk loads, resuming reaches bit-identical final weights on the
CPU, and no temporary file piles up."""

from __future__ import annotations

import pytest
from helpers.env import require
from helpers.kill_drill import TEXT, drill

pytestmark = pytest.mark.slow  # kills training subprocesses


def test_kill_drill_few_trials(tmp_path):
    require(TEXT.is_file(), f"the drill trains on {TEXT} (shared data)")
    result = drill(trials=3, seed=1, work=tmp_path)
    assert result["failures"] == [], result
    assert result["training_trials"] == 2 and result["write_trials"] == 1
    assert result["training_kills_inside_a_checkpoint_write"] >= 1  # the first trial aims at one
