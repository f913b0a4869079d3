"""SGD (ggml's opt_step_sgd) against numpy: decay on matrices only, clipping by alpha scaling."""

import numpy as np
import pytest
from test_optim import Quadratic

from pyggml_train import ggml as G
from pyggml_train.optim import SGD

WD = 0.1


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_sgd_steps_match_numpy(scale):
    ctx = G.Context("cpu", threads=2)
    prob = Quadratic(ctx)
    grads = {n: prob.graph.grad_accumulator(p) for n, p in prob.params.items()}
    opt = SGD(ctx, prob.params, grads, weight_decay=WD)
    p = {n: v.copy() for n, v in prob.init.items()}  # float64 reference
    for lr in (0.01, 0.005, 0.02):
        prob.backward()
        g = prob.numpy_grads(p)
        assert opt.sum_of_squares() == pytest.approx(sum((x**2).sum() for x in g.values()), 1e-5)
        opt.update(lr, scale)
        for n in p:
            wd = WD if p[n].ndim == 2 else 0.0  # biases are not decayed
            p[n] = p[n] * (1 - lr * wd) - lr * scale * g[n]
        for n in p:
            np.testing.assert_allclose(prob.params[n].numpy(), p[n], rtol=1e-5, atol=1e-6)
    assert opt.state() == {"m": {}, "v": {}, "steps": 3}
    with pytest.raises(ValueError, match="grad_scale must be > 0"):
        opt.update(0.01, 0.0)
