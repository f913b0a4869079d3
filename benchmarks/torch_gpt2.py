"""The PyTorch peer: the same GPT-2 and the same training step, in eager mode.

Written here for the benchmark only (not a runtime dependency): forward + backward
+ global-norm clipping + AdamW, matching pyggml_train's step.
"""

from __future__ import annotations

import torch
import torch.utils.checkpoint
from torch import nn
from torch.nn import functional as F

from .configs import BenchConfig


class Block(nn.Module):
    def __init__(self, c: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(c, eps=1e-5)
        self.c_attn = nn.Linear(c, 3 * c)
        self.c_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c, eps=1e-5)
        self.c_fc = nn.Linear(c, 4 * c)
        self.mlp_proj = nn.Linear(4 * c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)  # each (B, T, C)
        heads = lambda z: z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)  # noqa: E731
        y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class TorchGPT2(nn.Module):
    """``checkpoint``: torch.utils.checkpoint around every block (recomputed in backward)."""

    def __init__(self, cfg: BenchConfig, checkpoint: bool = False):
        super().__init__()
        self.checkpoint = checkpoint
        c = cfg.n_embd
        self.wte = nn.Embedding(cfg.vocab_size, c)
        self.wpe = nn.Embedding(cfg.block_size, c)
        self.blocks = nn.ModuleList(Block(c, cfg.n_head) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(c, eps=1e-5)
        std = 0.02
        for name, p in self.named_parameters():
            if p.dim() == 2:
                scale = (2 * cfg.n_layer) ** -0.5 if name.endswith("proj.weight") else 1.0
                nn.init.normal_(p, 0.0, std * scale)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))
        for block in self.blocks:
            if self.checkpoint:
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.T  # (B, T, V), tied lm_head
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


class TorchStep:
    """One training step, split into forward / backward / optimizer for timing.

    ``device``: "cpu" or a torch device such as "cuda"; each phase ends with a
    synchronisation there, so its time is the device's work, not the launch."""

    def __init__(
        self,
        cfg: BenchConfig,
        threads: int,
        seed: int = 0,
        autocast_bf16: bool = False,
        checkpoint: bool = False,
        device: str = "cpu",
    ):
        torch.manual_seed(seed)
        torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model = TorchGPT2(cfg, checkpoint).to(self.device)
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
            lr=3e-4,
            betas=(0.9, 0.95),
            eps=1e-8,
            foreach=True,
        )
        self.autocast = autocast_bf16
        self.loss: torch.Tensor | None = None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def forward(self, idx, targets) -> float:
        idx_t = torch.from_numpy(idx).long().to(self.device)
        tgt_t = torch.from_numpy(targets).long().to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            self.loss = self.model(idx_t, tgt_t)
        return float(self.loss.detach())  # a host copy: waits for the device

    def backward(self) -> None:
        assert self.loss is not None
        self.loss.backward()
        self._sync()

    def optimizer(self) -> float:
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(norm)
