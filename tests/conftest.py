"""Every test runs with the environment helpers.env sets up (offline tiktoken cache, child
processes that import the tested package); pyproject's ``pythonpath`` puts tests/ on
sys.path, so ``helpers`` and ``reference`` import from any folder."""

import helpers.env  # noqa: F401
