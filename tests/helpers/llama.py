"""Small random Llama and Qwen2 models that the tests write with transformers from a config
(no download), with a byte-level BPE tokenizer trained here: shared by the Llama tests of
the model, io and spec areas."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")


LOGITS_ATOL = 1e-4


GRAD_RTOL = 2e-4


TEXT = (
    "First Citizen: Before we proceed any further, hear me speak.\n"
    "All: Speak, speak.\tcafé naïve 東京 🙂   three spaces\n"
) * 4


CASES = {
    # name: (HF config class, config kwargs, our attention path)
    "llama": (
        "LlamaConfig",
        dict(num_key_value_heads=2, tie_word_embeddings=False, rope_theta=5000.0),
        "fused",
    ),
    "qwen2": ("Qwen2Config", dict(num_key_value_heads=1, tie_word_embeddings=True), "unfused"),
}


def train_tokenizer() -> tokenizers.Tokenizer:
    """A byte-level BPE tokenizer trained on TEXT (what SmolLM2 and Qwen2 use)."""
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([TEXT], trainer)
    return tok


def write_hf_model(path, case: str, dtype=torch.float32):
    """An HF directory (config.json, model.safetensors, tokenizer.json) of a random model
    whose every weight (norms included) is away from its init; returns the f32 model."""
    cls_name, kwargs, _ = CASES[case]
    tok = train_tokenizer()
    config = getattr(transformers, cls_name)(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        **kwargs,
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = 1.0 if "norm" in name else 0.0
            p.copy_(base + 0.2 * torch.randn_like(p))
    model.to(dtype).save_pretrained(path)
    tok.save(str(path / "tokenizer.json"))
    return model.float()
