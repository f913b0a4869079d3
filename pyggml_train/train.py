"""The training loop: data, graphs built once, optimizer steps (step.py), eval, checkpoints.

Every graph (train forward+backward for one micro-batch, validation forward, gradient
norm, optimizer step) is built and allocated once before the first step; a step only
writes inputs and computes. Resuming from a checkpoint restores parameters, AdamW
moments, the step, the data loader's position and RNG and the sampling RNG, so the
resumed run computes the same losses as one that was never stopped.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import ggml as G
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import GPT2Config, TrainConfig
from .data import BatchLoader, load_prepared, prepare, resolve_text
from .distributed import Distributed
from .gpt2 import GPT2
from .io import load_model
from .metrics import MetricsWriter, plot_losses, read_metrics
from .model import Model
from .sample import KVCacheDecoder, WindowDecoder, decoder_for, generate
from .schedule import lr_at
from .spec import Spec, SpecModel, build_model, parse_spec
from .step import OptimizerStep
from .tokenizer import Tokenizer, tokenizer_from_dict

CHECKPOINT_NAME = "checkpoint.npz"


class NonFiniteError(RuntimeError):
    """A step's loss or gradient norm was NaN or Inf; the weights were not updated with it."""


def nonfinite_message(step: int, loss: float, norm: float, tc: TrainConfig, skipped: int) -> str:
    """What stopped the run, where, and what to try."""
    what = "loss" if not math.isfinite(loss) else "gradient norm"
    skip = (
        f"; {skipped} earlier non-finite step(s) skipped (--skip-nonfinite {tc.skip_nonfinite})"
        if skipped
        else ""
    )
    return (
        f"training stopped at step {step}: the {what} is not finite (loss {loss}, gradient "
        f"norm {norm}){skip}. The weights were not updated with it and no checkpoint was "
        f"written for it. Try a lower learning rate (lr={tc.lr:g}, e.g. --lr {tc.lr / 3:.2g}) "
        f"or more warmup; with bf16 matmuls, an overflow of bf16's range: train in f32. "
        f"--skip-nonfinite N skips up to N such steps instead of stopping."
    )


@dataclass
class TrainData:
    """Token splits and the tokenizer that made them."""

    train: np.ndarray  # (N_train,) token ids
    val: np.ndarray  # (N_val,)
    tokenizer: Tokenizer
    source: str  # where the text came from, for the log


def load_data(
    data: str | None, tokenizer: Tokenizer | str, out_dir: Path, val_fraction: float
) -> TrainData:
    """A directory written by ``prepare`` is used as is; otherwise the text (resolved by
    data.resolve_text, which falls back offline) is tokenized into out_dir/data."""
    if data is not None and (Path(data) / "tokenizer.json").is_file():
        train, val, tok = load_prepared(data)
        return TrainData(np.asarray(train), np.asarray(val), tok, f"prepared tokens in {data}")
    path, source = resolve_text(data)
    prepared = prepare(path, out_dir / "data", tokenizer, val_fraction)
    train, val, tok = load_prepared(prepared.train_path.parent)
    return TrainData(np.asarray(train), np.asarray(val), tok, source)


@dataclass
class TrainResult:
    """What a run produced."""

    steps: int
    train_losses: list[float] = field(default_factory=list)  # one per step run in this call
    val_loss: float | None = None  # the last validation loss
    sample: str = ""
    checkpoint: Path | None = None
    metrics: Path | None = None
    plot: Path | None = None


class Trainer:
    """Owns the model, the four graphs, the optimizer and the loaders of one run."""

    def __init__(
        self,
        model: GPT2Config | Model,
        train_config: TrainConfig,
        data: TrainData,
        ctx: G.Context | None = None,
        dist: Distributed | None = None,
    ):
        """``model``: a GPT2Config (a GPT2 initialised from ``train_config.seed`` is built on
        ``ctx``, its vocab_size defaulting to the tokenizer's), or a ready Model (model.py,
        e.g. a compiled spec) on its own context. ``model_config`` is the model's ``config``."""
        tc = train_config
        self.dist = dist or Distributed(None)
        rank, world = self.dist.rank, self.dist.world_size
        self.accum_steps = tc.accum_steps(world)  # a clear error before any work if indivisible
        vocab = data.tokenizer.vocab_size
        if isinstance(model, GPT2Config):
            if model.vocab_size is None:
                model = model.with_vocab_size(vocab)
            model = GPT2(model, ctx=ctx or G.Context(tc.device, tc.threads), seed=tc.seed)
        if model.vocab_size < vocab:
            raise ValueError(f"model vocab_size {model.vocab_size} < tokenizer vocab_size {vocab}")
        if tc.block_size > model.block_size:
            raise ValueError(
                f"train block_size {tc.block_size} exceeds the model's {model.block_size}"
            )
        self.model, self.ctx = model, model.ctx
        # dropout masks: one stream of (seed, counter) per rank, so ranks do not share masks
        self.model.dropout_rng.seed = tc.seed + rank
        self.model_config, self.train_config, self.data = model.config, tc, data  # None: a spec
        b, t = tc.batch_size, tc.block_size
        self.train_step = self.model.graph(b, t, "train")
        self.eval_step = self.model.graph(b, t, "loss")
        self.optimizer_step = OptimizerStep(
            self.ctx,
            self.model.params,
            self.train_step,
            tc.beta1,
            tc.beta2,
            tc.eps,
            tc.weight_decay,
            tc.grad_clip,
            optimizer=tc.optimizer,
            sync=self.dist,
            zero=tc.zero,
        )
        self.loader = BatchLoader(data.train, b, t, tc.data_mode, tc.seed, rank, world)
        self.sample_rng = np.random.default_rng(tc.seed + 1)
        self.step = 0  # optimizer steps completed (skipped non-finite steps included)
        self.skipped_nonfinite = 0  # steps whose non-finite loss or gradient norm was skipped
        self.elapsed_s = 0.0  # training time so far, across resumes
        self._decoder: KVCacheDecoder | WindowDecoder | None = None

    # -- one step ---------------------------------------------------------------------------------
    def train_one_step(self) -> tuple[float, float, float]:
        """Accumulate, clip and update once; (mean train loss, lr, grad norm).

        A NaN or Inf loss or gradient norm never reaches the weights: the step is skipped
        while ``skip_nonfinite`` allows, else NonFiniteError names the step."""
        tc = self.train_config
        lr = lr_at(self.step, tc.lr, tc.min_lr, tc.warmup_steps, tc.max_steps)
        batches = [self.loader.next_batch() for _ in range(self.accum_steps)]
        stats = self.optimizer_step(batches, lr)
        if not stats.updated:
            if self.skipped_nonfinite >= tc.skip_nonfinite:
                raise NonFiniteError(
                    nonfinite_message(
                        self.step + 1, stats.loss, stats.grad_norm, tc, self.skipped_nonfinite
                    )
                )
            self.skipped_nonfinite += 1
        self.step += 1
        return stats.loss, lr, stats.grad_norm

    def evaluate(self) -> float:
        """Mean validation loss over eval_steps global micro-batches (every rank evaluates its
        share); the same batches every time."""
        tc = self.train_config
        rank, world = self.dist.rank, self.dist.world_size
        b, t = tc.batch_size, tc.block_size
        loader = BatchLoader(self.data.val, b, t, "random", tc.seed, rank, world)
        mine = np.mean([self.eval_step.run(*loader.next_batch()) for _ in range(tc.eval_steps)])
        return self.dist.sum(float(mine)) / world

    def sample(self, prompt: str | None = None, max_new_tokens: int | None = None) -> str:
        """Generated text (prompt included); the first validation token is the default prompt."""
        tc = self.train_config
        if self._decoder is None:
            self._decoder = decoder_for(self.model)
        ids = list(self.data.tokenizer.encode(prompt)) if prompt else [int(self.data.val[0])]
        seed = int(self.sample_rng.integers(2**31))
        out = generate(
            self._decoder,
            ids,
            max_new_tokens or tc.sample_tokens,
            tc.temperature,
            tc.top_k,
            None,
            seed,
        )
        return self.data.tokenizer.decode(out)

    # -- checkpoints ------------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        """Write the checkpoint (the master does; every rank must call); refuses
        (NonFiniteError) if any value is NaN or Inf, so the previous checkpoint stays."""
        opt = self.optimizer_step.state()
        params = self.model.state_dict()
        for group, arrays in (("parameter", params), ("AdamW m", opt["m"]), ("AdamW v", opt["v"])):
            bad = [n for n, a in arrays.items() if not np.isfinite(a).all()]
            if bad:
                raise NonFiniteError(
                    f"not writing {path} at step {self.step}: {group} {bad[0]!r} (and "
                    f"{len(bad) - 1} more) holds NaN or Inf; the previous checkpoint is kept"
                )
        ckpt = Checkpoint(
            step=self.step,
            model_config=self.model_config,
            train_config=self.train_config,
            tokenizer=self.data.tokenizer.to_dict(),
            params=params,
            adam_m=self.model.from_device(opt["m"]),
            adam_v=self.model.from_device(opt["v"]),
            loader_state=self.loader.state(),
            rng_state=self.sample_rng.bit_generator.state,
            extra={
                "optimizer_steps": opt["steps"],
                "elapsed_s": self.elapsed_s,
                "world_size": self.dist.world_size,
                "skipped_nonfinite": self.skipped_nonfinite,
                "dropout_counter": self.model.dropout_rng.counter,
            },
            spec=self.model.spec.source if isinstance(self.model, SpecModel) else None,
        )
        if self.dist.is_master:
            save_checkpoint(path, ckpt)
        self.dist.barrier()  # the file is complete before any rank goes on (or resumes from it)
        return path

    def restore(self, ckpt: Checkpoint) -> None:
        self.model.load_state_dict(ckpt.params)
        self.optimizer_step.set_state(
            {
                "m": self.model.to_device(ckpt.adam_m),
                "v": self.model.to_device(ckpt.adam_v),
                "steps": ckpt.extra["optimizer_steps"],
            }
        )
        self.loader.set_state(ckpt.loader_state)
        self.sample_rng.bit_generator.state = ckpt.rng_state
        self.step = ckpt.step
        self.elapsed_s = float(ckpt.extra.get("elapsed_s", 0.0))
        self.skipped_nonfinite = int(ckpt.extra.get("skipped_nonfinite", 0))
        self.model.dropout_rng.counter = int(ckpt.extra.get("dropout_counter", 0))


def train(
    model_config: GPT2Config | None,
    train_config: TrainConfig,
    tokenizer: str = "char",
    data: str | None = None,
    out_dir: str | Path = "out",
    resume: str | Path | None = None,
    metrics_path: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    sample_prompt: str | None = None,
    dist: Distributed | None = None,
    spec: Spec | None = None,
    on_metrics: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    init_from: str | Path | None = None,
) -> TrainResult:
    """Train (or resume) a GPT-2, or the model of a ``spec`` (model_config None), and
    return losses, the last val loss and a sample.

    resume: a checkpoint file; the configs, spec and tokenizer then come from it, except
    max_steps, which may be raised to train further. data: a text file or URL, a
    directory written by ``prepare``, or None for tiny shakespeare (offline fallback).
    dist: the MPI ranks (default: from the environment; one process without mpirun). Only
    the master logs, draws the bar, writes metrics and checkpoints and samples text; the
    sample is "" on the other ranks. on_metrics: called with every metrics record as it
    is written. should_stop: asked after every step; True ends the run there, with a
    checkpoint to resume from. init_from: fine-tune a GPT-2 from the weights of any model
    file pyggml_train.io reads; the model's shape, and its tokenizer where the file has
    one, come from it.
    """
    dist = dist or Distributed.from_environment()
    if not dist.is_master:
        progress, log = False, _quiet
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(resume) if resume else None
    tok: Tokenizer | str = tokenizer
    if ckpt is not None:
        model_config = ckpt.model_config
        train_config = _resumed_config(ckpt, train_config.max_steps, dist.world_size)
        tok = tokenizer_from_dict(ckpt.tokenizer)
        if ckpt.spec is not None:
            spec = parse_spec(ckpt.spec, vocab_size=tok.vocab_size)
    init = None
    if init_from is not None:
        if ckpt is not None or spec is not None:
            raise ValueError(
                "--init-from starts a GPT-2 run from weights; it excludes --resume and --model"
            )
        init = load_model(init_from)
        model_config = init.config
        tok = init.tokenizer or tok
    tc = train_config
    tc.accum_steps(dist.world_size)  # an indivisible global batch fails here, before any work
    # the master tokenizes; the other ranks then read what it wrote (out_dir is shared)
    dataset = load_data(data, tok, out, tc.val_fraction) if dist.is_master else None
    dist.barrier()
    if dataset is None:
        prepared = data if data is not None and (Path(data) / "tokenizer.json").is_file() else None
        dataset = load_data(prepared or str(out / "data"), tok, out, tc.val_fraction)
    log(
        f"data: {dataset.source}: {len(dataset.train)} train / {len(dataset.val)} val tokens, "
        f"vocab {dataset.tokenizer.vocab_size}"
    )
    model: GPT2Config | Model | None = model_config
    if spec is not None:
        model = build_model(spec, G.Context(tc.device, tc.threads), seed=tc.seed)
    if model is None:
        raise ValueError("train needs a model_config or a spec")
    trainer = Trainer(model, tc, dataset, dist=dist)
    if ckpt is not None:
        trainer.restore(ckpt)
        log(f"resumed from {resume} at step {trainer.step}")
    if init is not None:
        trainer.model.load_state_dict(init.params)
        log(f"initialized from {init_from} ({init.format})")
    cfg = trainer.model_config
    ranks = f"{dist.world_size} ranks x " if dist.world_size > 1 else ""
    shape = (
        f"{cfg.n_layer} layers, {cfg.n_head} heads, C={cfg.n_embd}"
        if cfg is not None
        else f"spec {spec.name!r}, {len(spec.nodes)} nodes"
    )
    log(
        f"model: {shape}, "
        f"{trainer.model.num_params() / 1e6:.2f}M parameters; {ranks}{trainer.accum_steps} x "
        f"({tc.batch_size} x {tc.block_size}) tokens per step, {trainer.ctx.threads} threads; "
        f"optimizer state {trainer.optimizer_step.optimizer_state_bytes / 1e6:.1f} MB on rank 0"
        + (" (ZeRO-1)" if trainer.optimizer_step.owners is not None else "")
    )
    metrics_file = Path(metrics_path) if metrics_path else out / "metrics.jsonl"
    writer = (
        MetricsWriter(metrics_file, resume_step=trainer.step if ckpt is not None else None)
        if dist.is_master
        else None
    )
    result = TrainResult(steps=trainer.step, metrics=metrics_file)
    tokens_per_step = trainer.accum_steps * tc.tokens_per_micro_batch * dist.world_size
    bar = _progress(trainer.step, tc.max_steps, progress)
    say = bar.write if progress else log  # keeps messages from tearing the progress bar
    rate: float | None = None  # tokens/s, exponentially smoothed
    try:
        while trainer.step < tc.max_steps:
            t0 = time.perf_counter()
            loss, lr, norm = trainer.train_one_step()
            dt = time.perf_counter() - t0
            trainer.elapsed_s += dt
            step = trainer.step
            last = step == tc.max_steps
            if not (math.isfinite(loss) and math.isfinite(norm)):
                say(
                    f"step {step}: loss {loss}, gradient norm {norm}: skipped, weights not "
                    f"updated ({trainer.skipped_nonfinite} of --skip-nonfinite {tc.skip_nonfinite})"
                )
            val = None
            if (tc.eval_interval and step % tc.eval_interval == 0) or last:
                val = trainer.evaluate()
                result.val_loss = val
                say(f"step {step}: train {loss:.4f}, val {val:.4f} (ppl {math.exp(val):.2f})")
            elif tc.log_interval and step % tc.log_interval == 0:
                tok_s = tokens_per_step / dt
                say(f"step {step}: train {loss:.4f}, lr {lr:.2e}, {tok_s:,.0f} tok/s")
            result.train_losses.append(loss)
            record = {
                "step": step,
                "train_loss": loss,
                "val_loss": val,
                "lr": lr,
                "grad_norm": norm,
                "tokens_per_s": tokens_per_step / dt,
                "elapsed_s": trainer.elapsed_s,
            }
            if writer is not None:
                writer.write(**record)
            if on_metrics is not None:
                on_metrics(record)
            # the bar shows a smoothed rate; single steps jitter on a shared machine
            rate = tokens_per_step / dt if rate is None else 0.9 * rate + 0.1 * tokens_per_step / dt
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{rate:,.0f}")
            bar.update(1)
            if tc.sample_interval and step % tc.sample_interval == 0 and not last:
                if dist.is_master:
                    say(f"--- sample at step {step} ---\n{trainer.sample(sample_prompt)}\n---")
            stop = not last and should_stop is not None and should_stop()
            if (tc.checkpoint_interval and step % tc.checkpoint_interval == 0) or last or stop:
                result.checkpoint = trainer.save(out / CHECKPOINT_NAME)
            if stop:
                say(f"stopped at step {step}; resume from {result.checkpoint}")
                break
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    result.steps = trainer.step
    if result.checkpoint is None:
        result.checkpoint = trainer.save(out / CHECKPOINT_NAME)
    if result.val_loss is None:
        result.val_loss = trainer.evaluate()
    log(
        f"validation loss {result.val_loss:.4f} (perplexity {math.exp(result.val_loss):.2f}; "
        f"uniform baseline {math.log(trainer.model.vocab_size):.4f}); "
        f"checkpoint {result.checkpoint}"
    )
    if not dist.is_master:
        return result
    result.plot = plot_losses(read_metrics(metrics_file), out / "loss.png")
    log(
        f"loss curves: {result.plot}"
        if result.plot
        else "loss curves: install matplotlib (pip install 'pyggml_train[plot]') for loss.png"
    )
    result.sample = trainer.sample(sample_prompt)
    log(f"--- sample ---\n{result.sample}\n---")
    return result


def _resumed_config(ckpt: Checkpoint, max_steps: int, world_size: int) -> TrainConfig:
    """The checkpoint's train config with max_steps raised, keeping its global batch on any
    number of ranks: a run of N ranks without tokens_per_step stepped on N micro-batches, so
    on another world size it goes on with tokens_per_step = N * B * T (accumulation)."""
    tc = dataclasses.replace(ckpt.train_config, max_steps=max_steps)
    saved_world = int(ckpt.extra.get("world_size", 1))
    if tc.tokens_per_step is None and saved_world != world_size:
        tc = dataclasses.replace(tc, tokens_per_step=saved_world * tc.tokens_per_micro_batch)
    return tc


def _quiet(_message: str) -> None:
    """The log of a rank other than the master."""


def _progress(start: int, total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, unit="step", dynamic_ncols=True)
