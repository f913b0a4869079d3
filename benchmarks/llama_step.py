"""A Llama training step's forward + backward, ours vs transformers' LlamaForCausalLM
(eager), on the SmolLM2-135M shape: tokens/s and peak RSS, each in its own process.

    python -m benchmarks.llama_step --seq 512 --batch 4 --threads 2 --steps 2

No optimizer step (both frameworks' AdamW are measured by benchmarks/run.py on GPT-2).
Speed is reported, never asserted.
"""

from __future__ import annotations

import numpy as np

from . import step_rows
from .step_rows import timed_row

FRAMEWORKS = ("ours", "ours-bf16", "torch", "torch-bf16")


def measure(framework: str, seq: int, batch: int, threads: int, steps: int) -> dict:
    from pyggml_train.config import LlamaConfig

    config = LlamaConfig(block_size=seq, matmul_dtype="bf16" if framework == "ours-bf16" else "f32")
    rng = np.random.default_rng(0)
    idx = rng.integers(0, config.vocab_size, (batch, seq), dtype=np.int32)
    targets = rng.integers(0, config.vocab_size, (batch, seq), dtype=np.int32)
    if framework.startswith("ours"):
        from pyggml_train import ggml as G
        from pyggml_train.llama import Llama

        model = Llama(config, ctx=G.Context("cpu", threads))

        def step() -> None:
            model.loss_and_grads(idx, targets)
    else:
        import torch
        import transformers

        torch.set_num_threads(threads)
        hf = transformers.LlamaConfig(
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
        model = transformers.LlamaForCausalLM(hf)
        x, y = torch.from_numpy(idx).long(), torch.from_numpy(targets).long()
        autocast = framework == "torch-bf16"

        def step() -> None:
            model.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                logits = model(x).logits
            loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            loss.backward()

    return timed_row(framework, step, steps, batch * seq)


def main() -> None:
    step_rows.main("benchmarks.llama_step", measure, FRAMEWORKS, __doc__)


if __name__ == "__main__":
    main()
