"""LoRA in the model against PEFT on float64 transformers: small random GPT-2 and Llama
(GQA) bases, adapters on every linear layer with A and B both away from zero.

- logits within 2e-4 relative (max |ours - peft| / max |peft|) of PEFT's float64 forward;
- every adapter gradient within 2e-4 relative of PEFT's float64 gradients;
- the base is frozen: plain tensors with no gradient accumulator, none in the gradients;
- KV-cache decoding through the adapters equals the full forward;
- PEFT's init (A Kaiming-uniform, B zero), so a new adapter leaves the base's logits as
  they were; targets by module name, by alias, and refused by name when they name nothing.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from helpers.llama import write_hf_model  # noqa: E402

from pyggml_train import ggml as G  # noqa: E402
from pyggml_train.adapters import LoraConfig, LoraWeights, lora_state, parse_lora  # noqa: E402
from pyggml_train.config import GPT2Config  # noqa: E402
from pyggml_train.gpt2 import GPT2  # noqa: E402
from pyggml_train.models import load_model  # noqa: E402
from pyggml_train.sample import KVCacheDecoder  # noqa: E402

RTOL = 2e-4
BASE_RTOL = {"bf16": 3e-2, "q8_0": 6e-2}  # see test_a_bf16_or_q8_0_base_...
RANK, ALPHA = 4, 12.0

# per family: PEFT's target_modules for every linear layer, whether its weights are Conv1D
TARGETS = {
    "gpt2": (["c_attn", "c_proj", "c_fc"], True),
    "llama": (["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], False),
}


def gpt2_base():
    """A random transformers GPT-2 (f32) whose every weight is away from its init."""
    config = transformers.GPT2Config(vocab_size=67, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(config).float().eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            base = 1.0 if ".ln_" in name else 0.0
            p.copy_(base + 0.2 * torch.randn_like(p))
    ours_config = GPT2Config(vocab_size=67, block_size=32, n_layer=2, n_head=4, n_embd=32)
    return hf, ours_config


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def family(request, tmp_path_factory):
    """(name, float32 transformers model, our LoRA model with random adapters, the adapters)."""
    lora = LoraConfig(RANK, ALPHA)  # no targets: every linear layer but the LM head
    if request.param == "gpt2":
        hf, config = gpt2_base()
        base = {n: p.detach().numpy() for n, p in hf.named_parameters()}
        ours = GPT2(config, params=base, ctx=G.Context(threads=2), lora=lora)
    else:
        path = tmp_path_factory.mktemp("llama")
        hf = write_hf_model(path, "llama")
        ours = load_model(path, G.Context(threads=2), lora=lora)
        assert ours.config.n_kv_head < ours.config.n_head  # grouped-query attention
    rng = np.random.default_rng(7)
    fresh = ours.lora_weights()
    weights = LoraWeights(
        lora,
        {n: rng.normal(0, 0.3, a.shape).astype(np.float32) for n, a in fresh.a.items()},
        {n: rng.normal(0, 0.3, b.shape).astype(np.float32) for n, b in fresh.b.items()},
    )
    ours.load_lora(weights)
    return request.param, hf, ours, weights


def peft_model(name: str, hf, weights: LoraWeights):
    """PEFT's LoRA on a float64 copy of ``hf`` with ``weights`` as its adapters."""
    modules, conv1d = TARGETS[name]
    config = peft.LoraConfig(
        r=RANK, lora_alpha=ALPHA, target_modules=modules, lora_dropout=0.0, fan_in_fan_out=conv1d
    )
    model = peft.get_peft_model(copy.deepcopy(hf).double(), config)
    inner = model.base_model.model
    adapted = 0
    with torch.no_grad():
        for weight_name, a in weights.a.items():
            layer = inner.get_submodule(weight_name.removesuffix(".weight"))
            layer.lora_A["default"].weight.copy_(torch.from_numpy(a).double())
            layer.lora_B["default"].weight.copy_(torch.from_numpy(weights.b[weight_name]).double())
            adapted += 1
    lora_layers = [m for m in inner.modules() if hasattr(m, "lora_A") and "default" in m.lora_A]
    assert adapted == len(lora_layers), "PEFT adapts other layers than ours"
    return model


def tokens(seed: int, shape: tuple[int, ...], vocab: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=shape).astype(np.int32)


def rel(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_forward_matches_peft_float64(family):
    name, hf, ours, weights = family
    idx = tokens(1, (2, 16), ours.vocab_size)
    with torch.no_grad():
        want = peft_model(name, hf, weights)(torch.from_numpy(idx).long()).logits.numpy()
    assert rel(ours.forward(idx), want) <= RTOL


def test_every_adapter_gradient_matches_peft_float64(family):
    name, hf, ours, weights = family
    idx = tokens(2, (2, 16), ours.vocab_size)
    targets = tokens(3, (2, 16), ours.vocab_size)
    ref = peft_model(name, hf, weights)
    logits = ref(torch.from_numpy(idx).long()).logits
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), torch.from_numpy(targets).long().reshape(-1)
    )
    loss.backward()
    want = {}
    for n, p in ref.named_parameters():
        if p.requires_grad:  # PEFT freezes the base too
            assert ".lora_" in n, n
            want[n.removeprefix("base_model.model.").replace(".default", "")] = p.grad.numpy()
    got_loss, got = ours.loss_and_grads(idx, targets)
    assert abs(got_loss - loss.item()) <= 1e-5 * abs(loss.item())
    assert set(got) == set(want)
    for n, w in want.items():
        assert rel(got[n], w) <= RTOL, f"{n}: relative error {rel(got[n], w):.3g}"


def test_the_base_is_frozen(family):
    _, _, ours, weights = family
    adapters = set(lora_state(weights))
    assert set(ours.trainable) == adapters
    assert ours.num_trainable() == sum(a.size + weights.b[n].size for n, a in weights.a.items())
    step = ours.graph(1, 8, "train")
    for n, t in ours.params.items():
        assert t.is_param == (n in adapters), n
        if n not in adapters:  # the backward made no accumulator for a frozen weight
            with pytest.raises(ValueError, match="not a parameter"):
                step.graph.grad_accumulator(t)


def test_a_new_adapter_starts_from_the_base(family):
    """PEFT's init: B = 0, so the adapted model computes the base's logits; A is drawn from
    U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform_ with a = sqrt(5))."""
    _, _, ours, _ = family
    base = {n: v for n, v in ours.state_dict().items() if ".lora_" not in n}
    plain = type(ours)(ours.config, params=base, ctx=G.Context())
    idx = tokens(4, (1, 12), ours.vocab_size)
    fresh = type(ours)(ours.config, params=base, lora=ours.lora, ctx=G.Context())
    assert np.array_equal(fresh.forward(idx), plain.forward(idx))
    init = fresh.lora_weights()
    for n, a in init.a.items():
        assert not init.b[n].any()
        bound = 1.0 / np.sqrt(a.shape[1])
        assert np.abs(a).max() <= bound and np.abs(a).max() > 0.9 * bound
        assert abs(a.mean()) < 0.2 * bound and abs(a.std() - bound / np.sqrt(3)) < 0.2 * bound


def test_targets_by_alias_module_name_and_refusal():
    _, config = gpt2_base()
    model = GPT2(config, lora=parse_lora("rank=2,targets=qkv,mlp.c_proj"))
    assert list(model.adapters) == [
        f"transformer.h.{i}.{m}.weight" for i in range(2) for m in ("attn.c_attn", "mlp.c_proj")
    ]
    model = GPT2(config, lora=parse_lora("rank=2,targets=c_proj"))  # PEFT: both c_proj
    assert len(model.adapters) == 4
    with pytest.raises(ValueError, match="names no linear layer.*c_attn"):
        GPT2(config, lora=parse_lora("rank=2,targets=q_proj"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("rank=0", "rank must be >= 1"),
        ("rank=4,beta=2", "unknown key 'beta'"),
        ("rank=four", "rank must be an integer"),
        ("q,v", "has no '='"),
        ("rank=4,dropout=1.5", r"dropout must be in \[0, 1\)"),
    ],
)
def test_bad_lora_settings_say_what_to_write(text, message):
    with pytest.raises(ValueError, match=message):
        parse_lora(text)


def test_lora_settings_parse():
    got = parse_lora("rank=16,alpha=32,targets=q,k,v,o,gate,up,down,dropout=0.05")
    assert got == LoraConfig(16, 32.0, ("q", "k", "v", "o", "gate", "up", "down"), 0.05)
    assert got.scale == 2.0
    assert parse_lora("rank=8").alpha == 16.0  # alpha defaults to 2 * rank


def test_kv_cache_decoding_with_adapters_equals_the_full_forward(family):
    _, _, ours, _ = family
    idx = tokens(5, (1, 12), ours.vocab_size)
    want = ours.forward(idx)[0]  # (T, V)
    decoder = KVCacheDecoder(ours)
    got = np.stack([decoder.step(int(t)) for t in idx[0]])
    assert np.abs(got - want).max() <= 1e-4


@pytest.mark.parametrize("dtype", ["bf16", "q8_0"])
def test_a_bf16_or_q8_0_base_gives_the_adapters_gradients_of_the_values_it_holds(dtype):
    """The frozen Linear weights stored in ``dtype``: the adapters' gradients are those of
    an f32 base holding the same (rounded) values, within the rounding of the activations
    the stored weight's forward product applies (ggml rounds them to the weight's dot-product
    type: bf16's 8 bits, or q8_0's 8-bit blocks of 32; measured 1.5e-2 and 3.5e-2)."""
    hf, config = gpt2_base()
    base = {n: p.detach().numpy() for n, p in hf.named_parameters()}
    lora = LoraConfig(RANK, ALPHA)
    stored = GPT2(config, params=base, ctx=G.Context(threads=2), lora=lora, base_dtype=dtype)
    held = {n: v for n, v in stored.state_dict().items() if ".lora_" not in n}
    assert not np.array_equal(
        held["transformer.h.0.mlp.c_fc.weight"], base["transformer.h.0.mlp.c_fc.weight"]
    )
    assert np.array_equal(held["transformer.wte.weight"], base["transformer.wte.weight"])  # f32
    f32 = GPT2(config, params=held, ctx=G.Context(threads=2), lora=lora)
    rng = np.random.default_rng(11)
    weights = stored.lora_weights()
    for n in weights.b:
        weights.b[n] = rng.normal(0, 0.3, weights.b[n].shape).astype(np.float32)
    stored.load_lora(weights)
    f32.load_lora(weights)
    idx = tokens(6, (2, 16), config.vocab_size)
    targets = tokens(7, (2, 16), config.vocab_size)
    got_loss, got = stored.loss_and_grads(idx, targets)
    want_loss, want = f32.loss_and_grads(idx, targets)
    assert abs(got_loss - want_loss) <= 1e-2 * abs(want_loss)
    for n, w in want.items():
        assert rel(got[n], w) <= BASE_RTOL[dtype], f"{n}: relative error {rel(got[n], w):.3g}"
