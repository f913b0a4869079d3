"""Random base models with a random LoRA adapter attached by PEFT (B nonzero), saved as
PEFT saves them: the reference the adapter-file tests read, write, merge and run in
llama.cpp. Bases: the Llama (GQA, untied) and Qwen2 (tied, biases) of helpers.llama, and
a GPT-2 (Conv1D weights, so PEFT's fan_in_fan_out) with a char vocabulary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from helpers.llama import TEXT, write_hf_model
from pyggml_train.io import ModelFile, read_model_file
from pyggml_train.tokenizer import CharTokenizer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

RANK, ALPHA = 4, 6.0  # scale 1.5: a wrong scale shows
# case -> (PEFT target_modules, layers_to_transform): every kind of weight, lm_head too
# (llama, untied), only some layers (qwen2: PEFT's config then names fewer weights than
# its target_modules match), GPT-2's fused QKV and both c_proj
TARGETS = {
    "llama": (
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"],
        None,
    ),
    "qwen2": (["q_proj", "k_proj", "down_proj"], [1]),
    "gpt2": (["c_attn", "c_proj", "c_fc"], None),
}


@dataclass
class LoraCase:
    name: str
    base_dir: Path  # the transformers base model
    peft_dir: Path  # PEFT's save_pretrained of the adapter
    base: ModelFile  # the base as we read it (GPT-2 with the char tokenizer it was made for)
    ids: np.ndarray  # (1, T) token ids of the logits comparisons

    def base_model(self):
        return transformers.AutoModelForCausalLM.from_pretrained(self.base_dir).float().eval()

    def peft_model(self, adapter_dir: Path | None = None):
        """A fresh base with the adapter of ``adapter_dir`` (default: PEFT's own save)."""
        return peft.PeftModel.from_pretrained(self.base_model(), adapter_dir or self.peft_dir)


def logits(model, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(ids).long()).logits.double().numpy()


def _write_gpt2(path: Path) -> CharTokenizer:
    tok = CharTokenizer.from_text(TEXT)
    config = transformers.GPT2Config(
        vocab_size=tok.vocab_size,
        n_positions=128,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=None,
        eos_token_id=None,  # GPT-2 BPE's 50256 is not in a char vocabulary
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_((1.0 if ".ln_" in name else 0.0) + 0.2 * torch.randn_like(p))
    model.save_pretrained(path)
    return tok


def write_lora_case(path: Path, name: str, n_ids: int = 64) -> LoraCase:
    """Write base and PEFT adapter of case ``name`` under ``path``."""
    base_dir, peft_dir = path / "base", path / "peft"
    tok = _write_gpt2(base_dir) if name == "gpt2" else None
    if tok is None:
        write_hf_model(base_dir, name)
    targets, layers = TARGETS[name]
    config = peft.LoraConfig(
        r=RANK,
        lora_alpha=ALPHA,
        target_modules=targets,
        layers_to_transform=layers,
        fan_in_fan_out=name == "gpt2",
    )
    base = transformers.AutoModelForCausalLM.from_pretrained(base_dir).float().eval()
    model = peft.get_peft_model(base, config)
    torch.manual_seed(1)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "lora_" in pname:
                p.copy_(0.3 * torch.randn_like(p))
    model.save_pretrained(peft_dir, save_embedding_layers=False)  # the adapter only
    ours = read_model_file(base_dir)
    if tok is not None:
        ours.tokenizer = tok
    ids = np.random.default_rng(2).integers(0, ours.config.vocab_size, (1, n_ids))
    return LoraCase(name, base_dir, peft_dir, ours, ids)
