#!/usr/bin/env python
"""The full kill drill (>= 20 SIGKILLs during training and checkpoint writes); see
tests/helpers/kill_drill.py. Exit status 1 if any promise of docs/reliability.md broke.

    scripts/kill_drill.py [--trials 20] [--seed 0] [--json out.json]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers import kill_drill  # noqa: E402

if __name__ == "__main__":
    kill_drill.main()
