"""The ops of a training step on every device this build and machine have, against float64
numpy, and the GPT-2 step on a device against the CPU.

``device`` yields "cpu" and every other device the build has ("vulkan", "cuda"); one this
build or machine lacks skips and says why (``PYGGML_REQUIRE_DEVICES=vulkan`` turns that
skip into a failure, for the CI run built for it). On a device every node must run there:
a node the device cannot run would fall back to the CPU, so each test asserts that the
graph put none on it. Tolerances are the CPU's (tests/gradcheck.py): forward 1e-5 and
gradients 1e-4 of the largest reference magnitude, f32 against float64; the references are
checked against central differences in float64.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from helpers.gradcheck import FWD_RTOL, GRAD_RTOL, assert_close, gradcheck
from reference import dropout_numpy as dref
from reference import ops_numpy as ref

import pyggml_train as pg
from pyggml_train import ggml as G

DEVICES = ["cpu", "vulkan", "cuda"]
# GPT-2 on a device against the same GPT-2 on the CPU: loss, logits and every gradient
STEP_RTOL = 1e-4


def available(device: str) -> str | None:
    """None if ``device`` can run here, else the one-line reason it cannot."""
    try:
        G.Context(device)
    except ValueError as e:
        return str(e)
    return None


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    why = available(request.param)
    if why is not None:
        required = os.environ.get("PYGGML_REQUIRE_DEVICES", "").split(",")
        if request.param in required:
            pytest.fail(f"{request.param} required (PYGGML_REQUIRE_DEVICES) but: {why}")
        pytest.skip(why)
    return request.param


def assert_on_device(backends: dict[str, int], device: str) -> None:
    """No node of a device graph ran on the CPU backend."""
    if device == "cpu":
        return
    on_cpu = backends.get("CPU", 0)
    assert on_cpu == 0, f"{on_cpu} nodes fell back to the CPU: {backends}"


def randn(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def run(device: str, build, inputs: list[np.ndarray]) -> tuple[np.ndarray, dict[str, int]]:
    """``build`` on leaves holding ``inputs`` on ``device``: its value and nodes per backend."""
    ctx = pg.Context(device, threads=1)
    leaves = [
        ctx.input(x.shape, "i32" if x.dtype.kind == "i" else "f32") for x in map(np.asarray, inputs)
    ]
    out = build(*leaves)
    if out.op in {"RESHAPE", "VIEW", "PERMUTE", "TRANSPOSE"}:
        out = G.cont(out)
    out._h.set_output()
    graph = ctx.graph(out)
    for leaf, x in zip(leaves, inputs, strict=True):
        leaf.set(np.asarray(x))
    graph.compute()
    return out.numpy(), graph.backend_counts()


# ---- the device list and the errors of a missing device ------------------------------


def test_devices_lists_the_cpu_and_names_each_device_once():
    names = G.devices()
    assert "CPU" in names
    assert len(names) == len(set(names))


def test_a_missing_device_is_one_clear_line():
    if available("vulkan") is None:
        pytest.skip("this build and machine have a Vulkan device")
    with pytest.raises(ValueError, match="vulkan") as e:
        G.Context("vulkan")
    msg = str(e.value)
    assert "\n" not in msg
    assert "GGML_VK_VISIBLE_DEVICES" in msg or "-DGGML_VULKAN=ON" in msg


# ---- ops: forward and gradients against float64 numpy --------------------------------


def test_linear_forward_and_gradients(device):
    """MUL_MAT forward, its backward through OUT_PROD, and ADD's broadcast backward."""
    x, w, b = randn(6, 5, seed=1), randn(4, 5, seed=2), randn(4, seed=3)

    def f(x, w, b):
        return x @ w.T + b

    r = gradcheck(G.linear, f, [x, w, b], device=device)
    assert_on_device(r.backends, device)


@pytest.mark.parametrize("shapes", [((7, 3), (7, 5)), ((2, 6, 3), (2, 6, 4)), ((6, 3), (2, 6, 4))])
def test_out_prod(device, shapes):
    """b^T @ a per batch, a broadcast over b's batch where it has none."""
    a, b = randn(*shapes[0], seed=4), randn(*shapes[1], seed=5)
    got, backends = run(device, G.out_prod, [a, b])
    want = np.swapaxes(b.astype(np.float64), -1, -2) @ a.astype(np.float64)
    assert_close(got, want, FWD_RTOL, "out_prod")
    assert_on_device(backends, device)


def test_out_prod_accumulates_in_place_into_a_gradient_accumulator(device):
    """A graph with grad_accs adds the weight gradient straight into its accumulator
    (ggml_out_prod_acc_inplace): two computes without a reset give twice the gradient."""
    ctx = pg.Context(device, threads=1)
    x, w = ctx.input((8, 5)), ctx.param((3, 5))
    acc = ctx.input((3, 5))
    loss = G.sum(G.linear(x, w)).set_loss()
    graph = ctx.graph(loss, backward=True, grad_accs={w: acc})
    xv = randn(8, 5, seed=6)
    x.set(xv)
    w.set(randn(3, 5, seed=7))
    graph.reset_grads()
    graph.compute()
    graph.compute()
    want = 2.0 * np.ones((3, 1)) * xv.astype(np.float64).sum(0)
    assert_close(graph.grad(w), want, GRAD_RTOL, "accumulated dL/dw")
    assert "OUT_PROD" in graph.op_names
    assert_on_device(graph.backend_counts(), device)


def test_layer_norm_and_its_backward(device):
    """NORM forward and NORM_BACK (patch 0003), with the affine weight and bias."""
    x, w, b = randn(5, 24, seed=8), randn(24, seed=9), randn(24, seed=10)
    r = gradcheck(G.layer_norm, ref.layer_norm, [x, w, b], device=device)
    assert_on_device(r.backends, device)


def test_gelu_and_its_backward(device):
    """GELU (tanh approximation, f32) forward and GELU_BACK (patch 0004)."""
    x = randn(7, 33, seed=11) * 3
    r = gradcheck(G.gelu, ref.gelu, [x], ref_grad=lambda d, x: [ref.gelu_grad(d, x)], device=device)
    assert_on_device(r.backends, device)


def test_gelu_erf_and_its_backward(device):
    """GELU_ERF forward and GELU_BACK in its erf mode (patch 0004), over both tails."""
    x = randn(7, 33, seed=12) * 4
    r = gradcheck(
        G.gelu_erf,
        ref.gelu_erf,
        [x],
        ref_grad=lambda d, x: [ref.gelu_erf_grad(d, x)],
        device=device,
    )
    assert_on_device(r.backends, device)


@pytest.mark.parametrize(
    ("b", "nh", "nkv", "t", "hs"),
    [(2, 3, 3, 9, 4), (2, 4, 2, 7, 5), (1, 2, 1, 67, 70)],
)
def test_attn_causal_and_its_backward(device, b, nh, nkv, t, hs):
    """ATTN_CAUSAL and ATTN_CAUSAL_BACK (patch 0016) with as many K/V heads as query heads
    and with fewer (grouped-query; dk, dv summed over each group), against finite
    differences of the float64 reference; T = 67 and hs = 70 cross the Vulkan shaders' tile
    of 64 keys and 64 dims per invocation."""
    inputs = [randn(b, nh, t, hs, seed=13)] + [randn(b, nkv, t, hs, seed=14 + i) for i in range(2)]
    r = gradcheck(
        lambda q, k, v: G.attn_causal(q, k, v, 0.3),
        lambda q, k, v: ref.attn_causal(q, k, v, 0.3),
        inputs,
        device=device,
    )
    assert_on_device(r.backends, device)


@pytest.mark.parametrize("n_classes", [None, 9])
def test_sparse_cross_entropy_and_its_backward(device, n_classes):
    """CROSS_ENTROPY_LOSS_SPARSE and its backward (patch 0007): ignored rows (target -1)
    and a padded class axis whose columns stay out of the softmax (n_classes=9 of 12)."""
    logits = randn(6, 12, seed=12) * 2
    nc = 12 if n_classes is None else n_classes
    targets = np.array([0, 3, -1, nc - 1, 5, -1], dtype=np.int32)

    def build(lg, t):
        return G.cross_entropy_loss_sparse(lg, t, n_classes)

    def reference(lg, t):
        keep = t >= 0
        z = lg[keep, :nc]
        logp = z - z.max(1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
        return -logp[np.arange(len(z)), t[keep]].mean()

    r = gradcheck(build, reference, [logits, targets], device=device)
    assert np.all(r.grads[0][:, nc:] == 0)
    assert np.all(r.grads[0][targets < 0] == 0)
    assert_on_device(r.backends, device)


def test_masked_softmax_and_its_backward(device):
    """The unfused attention's probabilities: SOFT_MAX with a scale and the additive causal
    mask (as GPT-2 builds them), and SOFT_MAX_BACK."""
    x = randn(2, 3, 6, 6, seed=13)
    mask = ref.causal_mask(6, 6).astype(np.float32)

    def build(a, m):
        return G.soft_max(a, mask=m, scale=0.5)

    def reference(a, m):
        return ref.soft_max(a, m, 0.5)

    r = gradcheck(build, reference, [x, mask], wrt=[0], device=device)
    assert_on_device(r.backends, device)


def test_dropout_mask_equals_the_cpu_and_the_reference(device):
    """DROPOUT (patch 0018) draws the CPU's mask on every device, for a strided input too."""
    x = randn(5, 37, seed=14)
    seed, counter, p, stream = 1234, 7, 0.25, 3
    state = np.array([seed, counter], dtype=np.int32)
    got, backends = run(device, lambda a, s: G.dropout(a, s, p, stream), [x, state])
    np.testing.assert_array_equal(got, dref.dropout(x, seed, counter, p, stream))
    xt = np.ascontiguousarray(x.T)
    got_t, _ = run(device, lambda a, s: G.dropout(G.transpose(a), s, p, stream), [xt, state])
    np.testing.assert_array_equal(got_t, dref.dropout(x, seed, counter, p, stream))
    assert_on_device(backends, device)


@pytest.mark.parametrize("gscale", [None, 0.5])
def test_adamw_step_with_and_without_a_gradient_scale(device, gscale):
    """OPT_STEP_ADAMW, with the 8th parameter of patch 0012 scaling the gradient."""
    ctx = pg.Context(device, threads=1)
    w0, g = randn(4, 9, seed=15), randn(4, 9, seed=16)
    w = ctx.param((4, 9))
    gt, m, v = (ctx.input((4, 9)) for _ in range(3))
    lr, b1, b2, eps, wd = 1e-2, 0.9, 0.95, 1e-8, 0.1
    hp = [lr, b1, b2, eps, wd, 1 / (1 - b1), 1 / (1 - b2)] + ([gscale] if gscale else [])
    h = ctx.input((len(hp),))
    graph = ctx.graph(G.opt_step_adamw(w, gt, m, v, h))
    for t, value in zip((w, gt, m, v, h), (w0, g, 0 * g, 0 * g, np.float32(hp)), strict=True):
        t.set(np.asarray(value, dtype=np.float32))
    graph.compute()
    g64 = g.astype(np.float64) * (gscale or 1.0)
    want, _, _ = ref.adamw_steps(w0, [g64], lr, b1, b2, eps, wd)
    assert_close(w.numpy(), want, FWD_RTOL, "w after one AdamW step")
    assert_on_device(graph.backend_counts(), device)


# ---- the GPT-2 training step on a device against the CPU ------------------------------


def _gpt2(device: str, **kw):
    from pyggml_train.config import GPT2Config
    from pyggml_train.gpt2 import GPT2
    from pyggml_train.hf_gpt2 import init_params

    base = dict(vocab_size=37, padded_vocab_size=48, block_size=16, n_layer=2, n_head=2, n_embd=16)
    cfg = GPT2Config(**{**base, **kw})
    rng = np.random.default_rng(0)
    params = {
        k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32)
        for k, v in init_params(cfg, 0).items()
    }
    return GPT2(cfg, params=params, ctx=G.Context(device, threads=2), seed=3)


def _step_graphs(model, b: int, t: int) -> list[G.Graph]:
    step = model.graph(b, t, "train")
    return list(step._graphs) if hasattr(step, "_graphs") else [step.graph]


@pytest.mark.parametrize(
    ("recompute", "dropout", "attention"),
    [
        ("none", 0.0, "unfused"),
        ("none", 0.1, "unfused"),
        ("blocks", 0.0, "unfused"),
        ("blocks", 0.1, "unfused"),
        ("none", 0.0, "fused"),
        ("blocks", 0.1, "fused"),
    ],
)
def test_gpt2_step_on_the_device_matches_the_cpu(device, recompute, dropout, attention):
    """Loss, logits and every gradient of a GPT-2 step (padded vocabulary; attention from
    mul_mat + soft_max, or the fused ATTN_CAUSAL on both) within 1e-4 of the CPU's, dropout
    masks included; on a device no node of the step's graphs runs on the CPU."""
    if device == "cpu":
        pytest.skip("the CPU is the reference here")
    kw = dict(recompute=recompute, dropout=dropout, attention=attention)
    cpu, dev = _gpt2("cpu", **kw), _gpt2(device, **kw)
    rng = np.random.default_rng(1)
    idx, targets = rng.integers(0, 37, (2, 16)), rng.integers(0, 37, (2, 16))
    loss_c, grads_c = cpu.loss_and_grads(idx, targets)
    loss_d, grads_d = dev.loss_and_grads(idx, targets)
    assert abs(loss_d - loss_c) <= STEP_RTOL * abs(loss_c)
    for name, want in grads_c.items():
        assert_close(grads_d[name], want, STEP_RTOL, f"dL/d{name}")
    assert_close(dev.forward(idx), cpu.forward(idx), STEP_RTOL, "logits")
    for graph in _step_graphs(dev, 2, 16):
        assert_on_device(graph.backend_counts(), device)


RUN_RTOL = 1e-3  # a 50-step training run on a device against the same run on the CPU


def test_training_on_the_device_follows_the_cpu_and_checkpoints_cross_over(device, tmp_path):
    """50 AdamW steps (warmup, cosine, clipping) on the device track the CPU's losses within
    1e-3; the device's checkpoint resumes on the CPU and the CPU's on the device."""
    if device == "cpu":
        pytest.skip("the CPU is the reference here")
    from helpers.training import configs, gpt2_trainer, small_data

    from pyggml_train.checkpoint import load_checkpoint

    model_cfg, train_cfg = configs(max_steps=60)
    data = small_data()
    runs = {}
    for dev in ("cpu", device):
        tc = dataclasses.replace(train_cfg, device=dev)
        trainer = gpt2_trainer(model_cfg, tc, data)
        runs[dev] = (trainer, [trainer.train_one_step()[0] for _ in range(50)])
    got, want = np.array(runs[device][1]), np.array(runs["cpu"][1])
    assert np.abs(got - want).max() <= RUN_RTOL * np.abs(want).max(), (got[-3:], want[-3:])

    for src, dst in (("cpu", device), (device, "cpu")):
        ckpt = load_checkpoint(runs[src][0].save(tmp_path / f"{src}.npz"))
        next_loss = runs[src][0].train_one_step()[0]  # the uninterrupted run's step 51
        tc = dataclasses.replace(ckpt.train_config, device=dst)
        resumed = gpt2_trainer(ckpt.model_config, tc, data)
        resumed.restore(ckpt)
        assert resumed.model.ctx.device == dst
        assert abs(resumed.train_one_step()[0] - next_loss) <= RUN_RTOL * next_loss


# ---- bad input on a device: the CPU's errors, and the interpreter lives ----------------


def test_an_out_of_range_token_id_is_the_cpus_error(device):
    ctx = pg.Context(device)
    idx = ctx.input((40,), "i32")
    graph = ctx.graph(G.norm(G.get_rows(ctx.param((5, 8), init=np.ones((5, 8))), idx)))
    ids = np.zeros(40, np.int32)
    ids[12] = 7
    idx.set(ids)
    with pytest.raises(ValueError, match=r"index 7 at position \(12,\).*\[0, 5\)"):
        graph.compute()


def test_an_out_of_range_target_is_the_cpus_error(device):
    ctx = pg.Context(device)
    logits, targets = ctx.input((4, 5)), ctx.input((4,), "i32")
    graph = ctx.graph(G.cross_entropy_loss_sparse(logits, targets))
    logits.set(np.zeros((4, 5), np.float32))
    targets.set(np.array([0, -1, 9, 2], np.int32))
    with pytest.raises(ValueError, match=r"index 9 at position \(2,\)"):
        graph.compute()


def test_a_tensor_larger_than_the_device_is_an_error_not_an_abort(device):
    """2**40 floats (4 TiB): more than any device here holds."""
    ctx = pg.Context(device)
    ctx.input((1 << 20, 1 << 20))
    with pytest.raises((MemoryError, RuntimeError), match="memory"):
        ctx.allocate()
    small = pg.Context(device).input((3,))  # the device still works
    small.set(np.ones(3, np.float32))
    np.testing.assert_array_equal(small.numpy(), np.ones(3))
