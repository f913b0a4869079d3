#!/usr/bin/env python
"""The full API fuzz run (>= 10,000 random calls in worker processes); see
tests/helpers/fuzz_api.py.

    scripts/fuzz_api.py [--calls 10000] [--procs 2] [--seed 0] [--json out.json]

Exit status 1 if any worker process died or a call ended in anything but success,
ValueError or TypeError, or a value disagreed with its numpy reference.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers import fuzz_api  # noqa: E402

if __name__ == "__main__":
    fuzz_api.main()
