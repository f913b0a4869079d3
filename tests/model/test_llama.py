"""Llama and Qwen2 against transformers: small random models that the tests write with
transformers from a config (GQA in both; Llama untied, Qwen2 tied with Q/K/V biases),
read through models.load_model.

- logits within 1e-4 (absolute) of transformers' f32 forward;
- every gradient within 2e-4 relative (max |ours - torch| / max |torch| per tensor) of
  float64 PyTorch's, fused and unfused attention;
- bf16 and f16 safetensors widen to the same f32 weights transformers computes with;
- KV-cache decoding equals the full forward; export to an HF directory that
  transformers' AutoModelForCausalLM and AutoTokenizer load (weights bit-exact, same ids).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from helpers.llama import (  # noqa: E402
    CASES,
    GRAD_RTOL,
    LOGITS_ATOL,
    TEXT,
    write_hf_model,
)

from pyggml_train import ggml as G  # noqa: E402
from pyggml_train.config import LlamaConfig, Qwen2Config  # noqa: E402
from pyggml_train.io import export_model  # noqa: E402
from pyggml_train.models import load_model  # noqa: E402
from pyggml_train.sample import KVCacheDecoder  # noqa: E402


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    hf = write_hf_model(path, request.param)
    ours = load_model(path, G.Context(threads=2))
    ours.fused_attention = CASES[request.param][2] == "fused"
    return request.param, path, hf, ours


def tokens(seed: int, shape: tuple[int, ...], vocab: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=shape).astype(np.int32)


def test_config_and_names_are_hf(case):
    name, _, hf, ours = case
    family = Qwen2Config if name == "qwen2" else LlamaConfig
    assert type(ours.config) is family and ours.config.model_type == name
    assert ours.config.n_kv_head == hf.config.num_key_value_heads < ours.config.n_head
    hf_names = {n for n, _ in hf.named_parameters()}
    assert set(ours.state_dict()) == hf_names


def test_logits_match_transformers(case):
    _, _, hf, ours = case
    idx = tokens(1, (2, 24), ours.vocab_size)
    with torch.no_grad():
        want = hf(torch.from_numpy(idx).long()).logits.numpy()
    got = ours.forward(idx)
    assert np.abs(got - want).max() <= LOGITS_ATOL, np.abs(got - want).max()


def test_every_gradient_matches_float64_torch(case):
    _, _, hf, ours = case
    idx = tokens(2, (2, 16), ours.vocab_size)
    targets = tokens(3, (2, 16), ours.vocab_size)
    ref = hf.double()
    try:
        ref.zero_grad()
        logits = ref(torch.from_numpy(idx).long()).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), torch.from_numpy(targets).long().reshape(-1)
        )
        loss.backward()
        want = {n: p.grad.numpy() for n, p in ref.named_parameters()}
        want_loss = loss.item()
    finally:
        hf.float()
    got_loss, got = ours.loss_and_grads(idx, targets)
    assert abs(got_loss - want_loss) <= 1e-5 * abs(want_loss)
    assert set(got) == set(want)
    for name, w in want.items():
        err = np.abs(got[name] - w).max() / np.abs(w).max()
        assert err <= GRAD_RTOL, f"{name}: relative error {err:.3g}"


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_files_widen_to_the_weights_transformers_uses(tmp_path, dtype):
    write_hf_model(tmp_path, "llama", getattr(torch, dtype))
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    ours = load_model(tmp_path, G.Context(threads=2))
    for name, p in hf.named_parameters():
        assert np.array_equal(ours.state_dict()[name], p.detach().numpy()), name
    idx = tokens(4, (1, 20), ours.vocab_size)
    with torch.no_grad():
        want = hf(torch.from_numpy(idx).long()).logits.numpy()
    assert np.abs(ours.forward(idx) - want).max() <= LOGITS_ATOL


def test_kv_cache_decoding_equals_the_full_forward(case):
    _, _, _, ours = case
    idx = tokens(5, (1, 12), ours.vocab_size)
    want = ours.forward(idx)[0]  # (T, V)
    decoder = KVCacheDecoder(ours)
    got = np.stack([decoder.step(int(t)) for t in idx[0]])
    assert np.abs(got - want).max() <= 1e-4


def test_hf_export_loads_in_transformers_bit_exact(case, tmp_path):
    name, path, hf, ours = case
    out = tmp_path / "export"
    export_model(out, "hf", ours.state_dict(), ours.config, ours.tokenizer)
    back = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert type(back) is type(hf)
    state = ours.state_dict()
    for n, p in back.named_parameters():
        assert np.array_equal(p.detach().numpy(), state[n]), n
    again = load_model(out)
    for n, value in again.state_dict().items():
        assert np.array_equal(value, state[n]), n
    auto = transformers.AutoTokenizer.from_pretrained(out)
    assert auto(TEXT, add_special_tokens=False)["input_ids"] == ours.tokenizer.encode(TEXT).tolist()
    assert ours.tokenizer.decode(ours.tokenizer.encode(TEXT)) == TEXT


def test_checkpoint_keeps_the_family_config_and_tokenizer(case, tmp_path):
    from pyggml_train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from pyggml_train.config import TrainConfig
    from pyggml_train.models import from_checkpoint

    _, _, _, ours = case
    train = TrainConfig(block_size=64)
    ckpt = Checkpoint(0, ours.config, train, ours.tokenizer.to_dict(), ours.state_dict())
    back = from_checkpoint(load_checkpoint(save_checkpoint(tmp_path / "c.npz", ckpt)), G.Context())
    assert type(back) is type(ours) and back.config == ours.config
    for name, value in back.state_dict().items():
        assert np.array_equal(value, ours.state_dict()[name]), name
    assert back.tokenizer.encode(TEXT).tolist() == ours.tokenizer.encode(TEXT).tolist()


@pytest.mark.slow  # the CLI in a child process
@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_cli_fine_tunes_an_hf_directory(tmp_path, dtype):
    """pyggml-train train --init-from <HF dir> --data <text>: the validation loss falls,
    in f32 and in bf16 mixed precision (the file's shape, the run's graph options)."""
    from helpers.cli import VERDICT as DATA
    from helpers.cli import cli

    from pyggml_train.metrics import read_metrics

    write_hf_model(tmp_path / "hf", "llama")
    out = tmp_path / "run"
    done = cli(
        "train", "--init-from", str(tmp_path / "hf"), "--data", str(DATA), "--max-steps", "30",
        "--batch-size", "4", "--block-size", "32", "--lr", "3e-3", "--threads", "2",
        "--out-dir", str(out), "--no-progress",
        "--set", "eval_interval=10", "eval_steps=4", "warmup_steps=3", "sample_interval=0",
        f"matmul_dtype={dtype}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "initialized from" in done.stdout and "llama: 2 layers" in done.stdout
    val = [r["val_loss"] for r in read_metrics(out / "metrics.jsonl") if r["val_loss"]]
    assert len(val) == 3 and val[-1] < val[0] - 0.1, val


def test_recompute_and_bf16_graphs_of_the_same_weights(case):
    """recompute='blocks' gives the gradients of the whole-graph backward (measured 1.0e-6
    relative, bound 1e-5); bf16 matmuls on f32 masters stay within bf16's rounding of the
    f32 gradients (measured 3.3e-2, the untied embedding's, bound 6e-2)."""
    import dataclasses

    from pyggml_train.llama import Llama

    _, _, _, ours = case
    idx = tokens(6, (2, 16), ours.vocab_size)
    targets = tokens(7, (2, 16), ours.vocab_size)
    _, want = ours.loss_and_grads(idx, targets)
    for option, tol in (("recompute", 1e-5), ("matmul_dtype", 6e-2)):
        value = "blocks" if option == "recompute" else "bf16"
        config = dataclasses.replace(ours.config, **{option: value})
        other = Llama(config, params=ours.state_dict(), ctx=G.Context(threads=2))
        _, got = other.loss_and_grads(idx, targets)
        for name, w in want.items():
            err = np.abs(got[name] - w).max() / np.abs(w).max()
            assert err <= tol, f"{option}: {name} relative error {err:.3g}"
