"""The README's Python example runs and its gradient is right."""

import re

import numpy as np
from helpers.env import REPO_ROOT

README = REPO_ROOT / "README.md"


def test_readme_gradient_example() -> None:
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    block = block.replace("print(", "(")  # keep the test output quiet
    scope: dict = {}
    exec(block, scope)  # noqa: S102 - our own README
    x, w, loss, graph = (scope[k] for k in ("x", "w", "loss", "graph"))
    xv, wv = x.numpy().astype(np.float64), w.numpy().astype(np.float64)
    z = xv @ wv.T  # (4, 5)
    c = np.sqrt(2 / np.pi)
    u = c * (z + 0.044715 * z**3)
    gelu = 0.5 * z * (1 + np.tanh(u))
    dgelu = 0.5 * (1 + np.tanh(u)) + 0.5 * z * (1 - np.tanh(u) ** 2) * c * (1 + 3 * 0.044715 * z**2)
    np.testing.assert_allclose(float(loss.numpy()), gelu.sum(), rtol=1e-5)
    np.testing.assert_allclose(graph.grad(w), dgelu.T @ xv, rtol=1e-4, atol=1e-5)
