"""A LoRA training step (forward, backward, AdamW on the adapters), ours vs PyTorch + PEFT,
on a random model of Qwen2.5-0.5B's shape (24 layers, 896 wide, 14 heads / 2 K/V heads,
feed-forward 4864, vocabulary 151936, tied), rank 16 on every linear layer of the blocks:
tokens/s, peak RSS and trainable parameters, each framework in its own process.

    python -m benchmarks.lora_step --seq 512 --batch 4 --threads 2 --steps 2

Rows: ours with the frozen base in f32, bf16 and q8_0 (``--base-dtype``), recomputing each
block in the backward (``recompute="blocks"``: one block's activations alive); PEFT on
transformers' Qwen2ForCausalLM (eager attention) in f32 and in bf16 (the model cast to
bf16, adapters included, as a bf16 PEFT run on the CPU keeps it). Speed is reported, never
asserted.
"""

from __future__ import annotations

import numpy as np

from . import step_rows
from .step_rows import timed_row

FRAMEWORKS = ("ours-f32", "ours-bf16", "ours-q8_0", "peft-f32", "peft-bf16")
RANK, ALPHA = 16, 32
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def qwen_shape(seq: int, recompute: str = "blocks"):
    from pyggml_train.config import Qwen2Config

    return Qwen2Config(
        vocab_size=151936,
        block_size=seq,
        n_layer=24,
        n_head=14,
        n_kv_head=2,
        n_embd=896,
        d_ff=4864,
        tie_embeddings=True,
        recompute=recompute,
    )


def measure(framework: str, seq: int, batch: int, threads: int, steps: int) -> dict:
    config = qwen_shape(seq)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, config.vocab_size, (batch, seq), dtype=np.int32)
    targets = rng.integers(0, config.vocab_size, (batch, seq), dtype=np.int32)
    kind, dtype = framework.split("-")
    if kind == "ours":
        from pyggml_train import ggml as G
        from pyggml_train.adapters import LoraConfig
        from pyggml_train.llama import Llama
        from pyggml_train.step import OptimizerStep

        lora = LoraConfig(RANK, ALPHA, tuple(TARGETS))
        model = Llama(config, ctx=G.Context("cpu", threads), lora=lora, base_dtype=dtype)
        optimizer = OptimizerStep(model.ctx, model.trainable, model.graph(batch, seq, "train"))
        trainable = model.num_trainable()

        def step() -> None:
            optimizer([(idx, targets)], 1e-4)
    else:
        import peft
        import torch
        import transformers

        torch.set_num_threads(threads)
        hf = transformers.Qwen2Config(
            vocab_size=config.vocab_size,
            hidden_size=config.n_embd,
            intermediate_size=config.d_ff,
            num_hidden_layers=config.n_layer,
            num_attention_heads=config.n_head,
            num_key_value_heads=config.n_kv_head,
            max_position_embeddings=seq,
            tie_word_embeddings=True,
            attn_implementation="eager",
        )
        base = transformers.Qwen2ForCausalLM(hf)
        if dtype == "bf16":
            base = base.to(torch.bfloat16)
        model = peft.get_peft_model(
            base, peft.LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGETS)
        )
        params = [p for p in model.parameters() if p.requires_grad]
        trainable = sum(p.numel() for p in params)
        opt = torch.optim.AdamW(params, lr=1e-4)
        x, y = torch.from_numpy(idx).long(), torch.from_numpy(targets).long()

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            logits = model(x).logits
            loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            loss.backward()
            opt.step()

    return {**timed_row(framework, step, steps, batch * seq), "trainable": trainable}


def main() -> None:
    step_rows.main("benchmarks.lora_step", measure, FRAMEWORKS, __doc__)


if __name__ == "__main__":
    main()
