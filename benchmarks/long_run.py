"""A long run beside PyTorch's: the same GPT-2, the same first weights, the same batches in
the same order, the same schedule; our trainer against PyTorch eager, curves overlaid.

Per-step parity is proven by the tests (every gradient within 1e-6 of float64). This shows
what per-step parity does not: that thousands of steps of rounding stay close. Ours runs
through ``train()``, the loop a user runs (validation, checkpoints, metrics file); the
PyTorch peer replays that loop's batches (the same ``BatchLoader``, seed and lr schedule).

    python -m benchmarks.long_run                     # config B, 2,000 steps, f32 and bf16
    python -m benchmarks.long_run --steps 300 --precision f32

Results go to ``benchmarks/long_run/`` (curves as JSON, resumable per row) and the plot to
``docs/long_run.png``. A benchmark, not a test: it takes hours at full length on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from .configs import CONFIGS, BenchConfig
from .run import machine

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "long_run"
PLOT = ROOT / "docs" / "long_run.png"
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


def _data(text: str | None, out_dir: Path, val_fraction: float):
    from pyggml_train.train import load_data

    return load_data(text, "gpt2", out_dir, val_fraction)


def _train_config(args: argparse.Namespace):
    from pyggml_train.config import TrainConfig

    return TrainConfig(
        batch_size=args.batch_size,
        block_size=args.block_size,
        max_steps=args.steps,
        warmup_steps=args.warmup,
        eval_interval=args.eval_interval,
        eval_steps=args.eval_steps,
        sample_interval=0,
        log_interval=0,
        threads=args.threads,
        seed=args.seed,
    )


def _bench_config(args: argparse.Namespace) -> BenchConfig:
    base = CONFIGS[args.config]
    return BenchConfig(
        base.name,
        base.n_layer,
        base.n_embd,
        base.n_head,
        base.vocab_size,
        args.block_size,
        args.batch_size,
    )


def initial_weights(cfg: BenchConfig, args: argparse.Namespace, vocab: int) -> dict:
    """The first weights both runs start from: our initialisation at the run's seed."""
    from pyggml_train.models import new_model

    model = new_model(cfg.gpt2_config(), _train_config(args), vocab)
    return model.state_dict()


def ours(cfg: BenchConfig, args: argparse.Namespace, precision: str, data) -> dict:
    """Our trainer, as a user runs it; its curves come from the run's metrics file."""
    from pyggml_train.metrics import read_metrics
    from pyggml_train.models import new_model
    from pyggml_train.train import Run, train

    tc = _train_config(args)
    matmul = "bf16" if precision == "bf16" else "f32"
    model = new_model(cfg.gpt2_config(matmul_dtype=matmul), tc, data.tokenizer.vocab_size)
    out_dir = OUT / f"ours-{precision}"
    metrics = out_dir / "metrics.jsonl"
    metrics.unlink(missing_ok=True)
    t0 = time.perf_counter()
    train(model, data, tc, Run(out_dir=out_dir, log=print))
    wall = time.perf_counter() - t0
    records = read_metrics(metrics)
    return {
        "train": [(r["step"], r["train_loss"]) for r in records],
        "val": [(r["step"], r["val_loss"]) for r in records if r["val_loss"] is not None],
        "wall_s": wall,
    }


def _torch_model(cfg: BenchConfig, weights: dict):
    import torch

    from .torch_gpt2 import TorchGPT2

    model = TorchGPT2(cfg)
    names = {
        "wte.weight": "transformer.wte.weight",
        "wpe.weight": "transformer.wpe.weight",
        "ln_f.weight": "transformer.ln_f.weight",
        "ln_f.bias": "transformer.ln_f.bias",
    }
    ours_of_block = {
        "ln_1": "ln_1",
        "ln_2": "ln_2",
        "c_attn": "attn.c_attn",
        "c_proj": "attn.c_proj",
        "c_fc": "mlp.c_fc",
        "mlp_proj": "mlp.c_proj",
    }
    for i in range(cfg.n_layer):
        for theirs, mine in ours_of_block.items():
            for kind in ("weight", "bias"):
                names[f"blocks.{i}.{theirs}.{kind}"] = f"transformer.h.{i}.{mine}.{kind}"
    state = {}
    for theirs, mine in names.items():
        a = weights[mine]
        linear = a.ndim == 2 and not theirs.startswith(("wte", "wpe"))
        state[theirs] = torch.from_numpy(np.ascontiguousarray(a.T if linear else a))
    model.load_state_dict(state, strict=True)
    return model


def pytorch(cfg: BenchConfig, args: argparse.Namespace, precision: str, data, weights) -> dict:
    """PyTorch eager on our loop's batches: BatchLoader, lr_at, eval batches, clip, AdamW."""
    import torch

    from pyggml_train.data import BatchLoader
    from pyggml_train.schedule import lr_at

    tc = _train_config(args)
    torch.set_num_threads(args.threads)
    model = _torch_model(cfg, weights)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc.weight_decay}, {"params": rest, "weight_decay": 0}],
        lr=tc.lr,
        betas=(tc.beta1, tc.beta2),
        eps=tc.eps,
    )
    autocast = precision == "bf16"
    b, t = tc.batch_size, tc.block_size
    loader = BatchLoader(data.train, b, t, tc.data_mode, tc.seed, 0, 1)

    def loss_of(x: np.ndarray, y: np.ndarray) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return model(torch.from_numpy(x).long(), torch.from_numpy(y).long())

    def evaluate() -> float:
        val = BatchLoader(data.val, b, t, "random", tc.seed, 0, 1)
        with torch.no_grad():
            return float(np.mean([float(loss_of(*val.next_batch())) for _ in range(tc.eval_steps)]))

    train_curve, val_curve = [], []
    t0 = time.perf_counter()
    for step in range(1, tc.max_steps + 1):
        for group in opt.param_groups:
            group["lr"] = lr_at(step - 1, tc.lr, tc.min_lr, tc.warmup_steps, tc.max_steps)
        loss = loss_of(*loader.next_batch())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        train_curve.append((step, float(loss.detach())))
        if step % tc.eval_interval == 0 or step == tc.max_steps:
            val_curve.append((step, evaluate()))
            last_train, last_val = train_curve[-1][1], val_curve[-1][1]
            print(f"pytorch-{precision} step {step}: train {last_train:.4f}, val {last_val:.4f}")
    return {"train": train_curve, "val": val_curve, "wall_s": time.perf_counter() - t0}


def _ema(values: list[float], alpha: float = 0.05) -> list[float]:
    out, level = [], values[0]
    for v in values:
        level = alpha * v + (1 - alpha) * level
        out.append(level)
    return out


def gaps(a: dict, b: dict) -> dict:
    """The largest distance between two runs: validation at each evaluation; train loss
    per step raw and smoothed (an EMA with alpha 0.05, as the plot draws it)."""
    va, vb = dict(a["val"]), dict(b["val"])
    common = sorted(set(va) & set(vb))
    ta = [v for _, v in a["train"]]
    tb = [v for _, v in b["train"]]
    n = min(len(ta), len(tb))
    raw = [abs(x - y) for x, y in zip(ta[:n], tb[:n], strict=True)]
    smooth = [abs(x - y) for x, y in zip(_ema(ta[:n]), _ema(tb[:n]), strict=True)]
    return {
        "val_max_abs": max(abs(va[s] - vb[s]) for s in common) if common else None,
        "val_final": (va[common[-1]], vb[common[-1]]) if common else None,
        "train_max_abs_raw": max(raw) if raw else None,
        "train_max_abs_ema": max(smooth) if smooth else None,
        "first_step_abs": raw[0] if raw else None,
    }


def plot(rows: dict[str, dict], path: Path, title: str) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, row in rows.items():
        steps, losses = zip(*row["train"], strict=True)
        axes[0].plot(steps, _ema(list(losses)), label=name, linewidth=1)
        vsteps, vlosses = zip(*row["val"], strict=True)
        axes[1].plot(vsteps, vlosses, marker="o", markersize=3, label=name, linewidth=1)
    axes[0].set_title("train loss (EMA 0.05)")
    axes[1].set_title("validation loss")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="B", choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--eval-interval", type=int, default=100)
    parser.add_argument("--eval-steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--precision", choices=("f32", "bf16", "both"), default="both")
    parser.add_argument("--data", default=str(SHAKESPEARE), help="a text file")
    parser.add_argument("--fresh", action="store_true", help="rerun rows already in --out")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    cfg = _bench_config(args)
    data = _data(args.data, OUT / "data", 0.1)
    weights = initial_weights(cfg, args, data.tokenizer.vocab_size)
    precisions = ("f32", "bf16") if args.precision == "both" else (args.precision,)
    key = f"{args.config}-s{args.steps}-b{args.batch_size}-t{args.block_size}-seed{args.seed}"
    rows: dict[str, dict] = {}
    for precision in precisions:
        for name, run in (("ours", ours), ("pytorch", pytorch)):
            label = f"{name} {precision}"
            path = OUT / f"{key}-{name}-{precision}.json"
            if path.exists() and not args.fresh:
                rows[label] = json.loads(path.read_text())
                continue
            extra = (weights,) if name == "pytorch" else ()
            rows[label] = run(cfg, args, precision, data, *extra)
            rows[label]["load_at_end"] = os.getloadavg()[0]
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(rows[label]))
            os.replace(tmp, path)
    summary = {
        "machine": machine(),
        "config": {**vars(args), "tokens_per_step": args.batch_size * args.block_size},
        "gaps": {p: gaps(rows[f"ours {p}"], rows[f"pytorch {p}"]) for p in precisions},
        "wall_s": {label: row["wall_s"] for label, row in rows.items()},
    }
    (OUT / f"{key}-summary.json").write_text(json.dumps(summary, indent=2))
    title = (
        f"GPT-2 config {args.config} on tiny shakespeare, {args.steps} steps of "
        f"{args.batch_size}x{args.block_size}; {summary['machine'].get('cpu', '')}"
    )
    where = plot(rows, PLOT, title)
    print(json.dumps(summary, indent=2))
    print(f"plot: {where}" if where else "plot: install matplotlib")
    finite = all(math.isfinite(v) for row in rows.values() for _, v in row["val"])
    if not finite:
        raise SystemExit("a run's validation loss went non-finite")


if __name__ == "__main__":
    main()
