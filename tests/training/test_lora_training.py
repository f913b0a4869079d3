"""LoRA runs through the trainer: only the adapters move (the base's bytes do not), AdamW
keeps state for the adapters alone, the first step is the one AdamW's rule gives, resume
is bit-identical, and recompute / bf16 mixed precision give the adapters' gradients."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers.training import configs, small_data

from pyggml_train import ggml as G
from pyggml_train.adapters import lora_names
from pyggml_train.checkpoint import load_checkpoint
from pyggml_train.models import from_checkpoint, new_model
from pyggml_train.schedule import lr_at
from pyggml_train.train import Trainer

LORA = "rank=4,alpha=8,targets=c_attn,c_proj,c_fc,dropout=0.1"


def lora_trainer(**train_kw) -> Trainer:
    model_cfg, train_cfg = configs(lora=LORA, **train_kw)
    data = small_data()
    return Trainer(new_model(model_cfg, train_cfg, data.tokenizer.vocab_size), train_cfg, data)


@pytest.mark.parametrize("base_dtype", ["f32", pytest.param("q8_0", marks=pytest.mark.slow)])
def test_only_the_adapters_train_and_the_base_keeps_its_bytes(base_dtype):
    trainer = lora_trainer(base_dtype=base_dtype)
    model = trainer.model
    adapters = lora_names(model.state_dict())
    assert set(model.trainable) == adapters and len(adapters) == 2 * 4  # 4 Linear weights
    base = {n: v.tobytes() for n, v in model.state_dict().items() if n not in adapters}
    before = model.lora_weights()
    for _ in range(4):
        trainer.train_one_step()
    after = model.state_dict()
    assert {n: v.tobytes() for n, v in after.items() if n not in adapters} == base
    trained = model.lora_weights()
    for name in before.a:
        assert not np.array_equal(trained.a[name], before.a[name])
        assert np.abs(trained.b[name]).max() > 0  # B left zero
    opt = trainer.optimizer_step
    assert set(opt.optimizer.params) == adapters
    assert opt.optimizer_state_bytes == 8 * model.num_trainable()
    assert model.num_trainable() == sum(a.size + trained.b[n].size for n, a in trained.a.items())


def test_the_first_step_is_adamws_on_the_adapters_gradient():
    """From zero moments AdamW moves each entry by lr * g / (|g| + eps'), i.e. by lr against
    the sign of its gradient; A's gradient is zero while B is (B = 0 at init), so A only
    decays: A (1 - lr wd)."""
    trainer = lora_trainer(tokens_per_step=None, grad_clip=None)
    model, tc = trainer.model, trainer.train_config
    loader_state = trainer.loader.state()
    x, y = trainer.loader.next_batch()
    trainer.loader.set_state(loader_state)
    # the gradient with the train graph's dropout masks: same (seed, counter) as the step's
    counter = model.dropout_rng.counter
    _, grads = model.loss_and_grads(x, y)
    model.dropout_rng.counter = counter
    before = model.lora_weights()
    trainer.train_one_step()
    after = model.lora_weights()
    lr = lr_at(0, tc.lr, tc.min_lr, tc.warmup_steps, tc.max_steps)
    for name, a in before.a.items():
        module = name.removesuffix(".weight")
        assert not grads[module + ".lora_A.weight"].any()
        np.testing.assert_allclose(after.a[name], a * (1 - lr * tc.weight_decay), rtol=1e-6)
        g = grads[module + ".lora_B.weight"].astype(np.float64)
        want = -lr * g / (np.abs(g) + tc.eps)  # B = 0: its decay adds nothing
        np.testing.assert_allclose(after.b[name], want, rtol=1e-4, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("base_dtype", ["f32", "q8_0"])
def test_resume_is_bit_identical(tmp_path, base_dtype):
    straight = lora_trainer(base_dtype=base_dtype)
    want = [straight.train_one_step()[0] for _ in range(6)]
    first = lora_trainer(base_dtype=base_dtype)
    got = [first.train_one_step()[0] for _ in range(3)]
    path = first.save(tmp_path / "ckpt.npz")
    del first
    ckpt = load_checkpoint(path)
    assert ckpt.train_config.lora == LORA
    assert set(ckpt.adam_m) == lora_names(ckpt.params)  # moments of the adapters only
    tc = ckpt.train_config
    model = from_checkpoint(ckpt, G.Context(tc.device, tc.threads))
    second = Trainer(model, tc, small_data())
    second.restore(ckpt)
    got += [second.train_one_step()[0] for _ in range(3)]
    assert got == want  # bit-identical, not merely close
    for name, value in straight.model.state_dict().items():
        np.testing.assert_array_equal(second.model.state_dict()[name], value, err_msg=name)


def test_recompute_and_mixed_precision_give_the_adapters_gradients():
    """Recomputed blocks: bit-identical gradients (recompute.py's promise); bf16 matmuls
    (f32 masters of the adapters, the frozen f32 base cast too): within bf16's rounding."""
    model_cfg, train_cfg = configs(lora=LORA)
    data = small_data()
    vocab = data.tokenizer.vocab_size
    x, y = small_data().train[:64].reshape(2, 32), small_data().train[1:65].reshape(2, 32)
    got = {}
    for kind, over in {
        "f32": {},
        "recompute": {"recompute": "blocks"},
        "bf16": {"matmul_dtype": "bf16"},
    }.items():
        model = new_model(dataclasses.replace(model_cfg, **over), train_cfg, vocab)
        # the same random adapters in every model: B away from zero gives A a gradient
        rng = np.random.default_rng(0)
        weights = model.lora_weights()
        for name in weights.b:
            weights.b[name] = rng.normal(0, 0.1, weights.b[name].shape).astype(np.float32)
        model.load_lora(weights)
        model.dropout_rng.counter = 0
        got[kind] = model.loss_and_grads(x, y)
    assert got["recompute"][0] == got["f32"][0]
    for name, g in got["f32"][1].items():
        np.testing.assert_array_equal(got["recompute"][1][name], g, err_msg=name)
        err = np.abs(got["bf16"][1][name] - g).max() / np.abs(g).max()
        assert err < 2e-2, f"{name}: bf16 relative error {err:.3g}"
