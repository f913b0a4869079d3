"""The training loop of any Model: graphs built once, optimizer steps (step.py), eval,
checkpoints. Which model and which data are the caller's choice (models.py, recipes.py).

Every graph (train forward+backward for one micro-batch, validation forward, gradient
norm, optimizer step) is built and allocated once before the first step; a step only
writes inputs and computes. Resuming from a checkpoint restores parameters, AdamW
moments, the step, the data loader's position and RNG and the sampling RNG, so the
resumed run computes the same losses as one that was never stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .adapters import format_lora
from .checkpoint import Checkpoint, save_checkpoint
from .config import TrainConfig
from .data import BatchLoader, load_prepared, prepare_text
from .datasets import resolve
from .distributed import Distributed
from .metrics import MetricsWriter, plot_losses, read_metrics
from .model import Model
from .optim import AdamW
from .sample import KVCacheDecoder, WindowDecoder, decoder_for, generate
from .schedule import lr_at
from .step import OptimizerStep
from .tokenizer import Tokenizer

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
    named: str | None = None  # what --data named; checkpoints keep it for a resume


def load_data(
    data: str | None,
    tokenizer: Tokenizer | str,
    out_dir: Path,
    val_fraction: float,
    data_dir: str | Path | None = None,
) -> TrainData:
    """A directory written by ``prepare`` is used as is; otherwise the text ``data`` names
    (datasets.resolve: a dataset, a file, a URL; never a stand-in) is tokenized into
    out_dir/data, validated on the dataset's own split where it has one."""
    if data is not None and (Path(data) / "tokenizer.json").is_file():
        train, val, tok = load_prepared(data)
        where = f"prepared tokens in {data}"
        return TrainData(np.asarray(train), np.asarray(val), tok, where, data)
    corpus = resolve(data, data_dir)
    prepared = prepare_text(
        corpus.train, out_dir / "data", tokenizer, val_fraction, corpus.val, corpus.source
    )
    train, val, tok = load_prepared(prepared.train_path.parent)
    return TrainData(np.asarray(train), np.asarray(val), tok, corpus.source, corpus.named)


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
        model: Model,
        train_config: TrainConfig,
        data: TrainData,
        dist: Distributed | None = None,
    ):
        """``model``: any Model (models.py makes them: GPT-2 from a config or a file, a
        compiled spec), on its own context."""
        tc = train_config
        self.dist = dist or Distributed(None)
        rank, world = self.dist.rank, self.dist.world_size
        self.accum_steps = tc.accum_steps(world)  # a clear error before any work if indivisible
        vocab = data.tokenizer.vocab_size
        if model.vocab_size < vocab:
            raise ValueError(f"model vocab_size {model.vocab_size} < tokenizer vocab_size {vocab}")
        if tc.block_size > model.block_size:
            raise ValueError(
                f"train block_size {tc.block_size} exceeds the model's {model.block_size}"
            )
        self.model, self.ctx = model, model.ctx
        # dropout masks: one stream of (seed, counter) per rank, so ranks do not share masks
        self.model.dropout_rng.seed = tc.seed + rank
        self.train_config, self.data = tc, data
        b, t = tc.batch_size, tc.block_size
        self.train_step = self.model.graph(b, t, "train")
        self.eval_step = self.model.graph(b, t, "loss")
        self.optimizer_step = OptimizerStep.for_run(
            self.ctx, self.model.trainable, self.train_step, tc, self.dist
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
        params, adam_m, adam_v, optimizer_steps = self._state_arrays()
        for group, arrays in (("parameter", params), ("AdamW m", adam_m), ("AdamW v", adam_v)):
            bad = [n for n in arrays if not np.isfinite(arrays[n]).all()]  # one at a time
            if bad:
                raise NonFiniteError(
                    f"not writing {path} at step {self.step}: {group} {bad[0]!r} (and "
                    f"{len(bad) - 1} more) holds NaN or Inf; the previous checkpoint is kept"
                )
        ckpt = Checkpoint(
            step=self.step,
            model_config=self.model.config,
            train_config=self.train_config,
            tokenizer=self.data.tokenizer.to_dict(),
            params=params,
            adam_m=adam_m,
            adam_v=adam_v,
            loader_state=self.loader.state(),
            rng_state=self.sample_rng.bit_generator.state,
            extra={
                "optimizer_steps": optimizer_steps,
                "elapsed_s": self.elapsed_s,
                "world_size": self.dist.world_size,
                "skipped_nonfinite": self.skipped_nonfinite,
                "dropout_counter": self.model.dropout_rng.counter,
                "data": self.data.named,
            },
            spec=self.model.spec_source,
        )
        if self.dist.is_master:
            save_checkpoint(path, ckpt)
        self.dist.barrier()  # the file is complete before any rank goes on (or resumes from it)
        return path

    def _state_arrays(self) -> tuple[Mapping, Mapping, Mapping, int]:
        """Parameters, AdamW's m and v (exchange layout) and the optimizer's step count. On
        one process they are read from the device one tensor at a time as the checkpoint
        is written (model.DeviceArrays; on the CPU as views of the tensors, no copies);
        ZeRO-1 gathers the moments to the master."""
        step, model = self.optimizer_step, self.model
        optimizer = step.optimizer
        params = model.device_arrays(model.params, views=True)
        if step.owners is None and isinstance(optimizer, AdamW):
            m = model.device_arrays(optimizer.m, views=True)
            v = model.device_arrays(optimizer.v, views=True)
            return params, m, v, optimizer.steps
        state = step.state()
        m, v = model.from_device(state["m"]), model.from_device(state["v"])
        return params, m, v, int(state["steps"])

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


class Run:
    """Where a run writes and who hears of it: the output directory and metrics file, the
    progress bar, the log (the master rank's only), and the caller's hooks.

    ``on_metrics`` gets every metrics record as it is written; ``should_stop`` is asked
    after every step, and True ends the run there with a checkpoint to resume from.
    """

    def __init__(
        self,
        out_dir: str | Path = "out",
        metrics_path: str | Path | None = None,
        progress: bool = True,
        log: Callable[[str], None] = print,
        dist: Distributed | None = None,
        on_metrics: Callable[[dict[str, Any]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        sample_prompt: str | None = None,
    ):
        self.dist = dist or Distributed.from_environment()
        master = self.dist.is_master
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = Path(metrics_path) if metrics_path else self.out_dir / "metrics.jsonl"
        self.checkpoint_path = self.out_dir / CHECKPOINT_NAME
        self.progress = progress and master
        self._log = log if master else _quiet
        self.on_metrics, self.should_stop = on_metrics, should_stop
        self.sample_prompt = sample_prompt
        self._writer: MetricsWriter | None = None
        self._bar: Any = None
        self._rate: float | None = None  # tokens/s, exponentially smoothed

    def log(self, message: str) -> None:
        """One line of the run's log; around a progress bar without tearing it."""
        (self._bar.write if self._bar is not None else self._log)(message)

    def open(self, step: int, max_steps: int, resumed: bool) -> None:
        """Start the metrics file (continuing a resumed run's) and the progress bar."""
        if self.dist.is_master:
            self._writer = MetricsWriter(self.metrics_path, resume_step=step if resumed else None)
        if self.progress:
            self._bar = _progress(step, max_steps)

    def record(self, record: dict[str, Any]) -> None:
        """A step's metrics: to the file, the caller's hook and the bar."""
        if self._writer is not None:
            self._writer.write(**record)
        if self.on_metrics is not None:
            self.on_metrics(record)
        if self._bar is not None:
            # the bar shows a smoothed rate; single steps jitter on a shared machine
            tok_s = record["tokens_per_s"]
            self._rate = tok_s if self._rate is None else 0.9 * self._rate + 0.1 * tok_s
            self._bar.set_postfix(
                loss=f"{record['train_loss']:.4f}",
                lr=f"{record['lr']:.2e}",
                tok_s=f"{self._rate:,.0f}",
            )
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def load_run_data(
    data: str | None,
    tokenizer: Tokenizer | str,
    run: Run,
    val_fraction: float,
    data_dir: str | Path | None = None,
) -> TrainData:
    """The run's tokens: the master tokenizes into OUT_DIR/data, the other ranks then read
    what it wrote (out_dir is shared)."""
    dist = run.dist
    dataset = (
        load_data(data, tokenizer, run.out_dir, val_fraction, data_dir) if dist.is_master else None
    )
    dist.barrier()
    if dataset is None:
        prepared = data if data is not None and (Path(data) / "tokenizer.json").is_file() else None
        dataset = load_data(
            prepared or str(run.out_dir / "data"), tokenizer, run.out_dir, val_fraction
        )
    run.log(
        f"data: {dataset.source}: {len(dataset.train)} train / {len(dataset.val)} val tokens, "
        f"vocab {dataset.tokenizer.vocab_size}"
    )
    return dataset


def train(
    model: Model,
    data: TrainData,
    train_config: TrainConfig,
    run: Run | None = None,
    resume: Checkpoint | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` (or go on from the ``resume`` checkpoint of the same
    model) and return losses, the last val loss and a sample.

    Under mpirun every rank calls this; only the master logs, draws the bar, writes
    metrics and checkpoints and samples text (the sample is "" on the other ranks).
    """
    run = run or Run()
    tc, dist = train_config, run.dist
    trainer = Trainer(model, tc, data, dist=dist)
    if resume is not None:
        trainer.restore(resume)
        run.log(f"resumed at step {trainer.step} of {tc.max_steps}")
    ranks = f"{dist.world_size} ranks x " if dist.world_size > 1 else ""
    threads = trainer.ctx.threads
    trained = ""
    if model.lora is not None:
        share = model.num_trainable() / model.num_params()
        trained = (
            f" ({model.num_trainable() / 1e6:.3f}M trained: LoRA {format_lora(model.lora)} "
            f"on {len(model.adapters)} weights, {share:.2%})"
        )
    run.log(
        f"model: {model.describe()}, "
        f"{model.num_params() / 1e6:.2f}M parameters{trained}; {ranks}{trainer.accum_steps} x "
        f"({tc.batch_size} x {tc.block_size}) tokens per step, {threads} "
        f"thread{'s' if threads != 1 else ''}; optimizer state "
        f"{trainer.optimizer_step.optimizer_state_bytes / 1e6:.1f} MB on rank 0"
        + (" (ZeRO-1)" if trainer.optimizer_step.owners is not None else "")
    )
    if trainer.step >= tc.max_steps:
        run.log(
            f"nothing to train: the run is at step {trainer.step} and max_steps is "
            f"{tc.max_steps}; raise --max-steps to train further"
        )
    result = TrainResult(steps=trainer.step, metrics=run.metrics_path)
    tokens_per_step = trainer.accum_steps * tc.tokens_per_micro_batch * dist.world_size
    run.open(trainer.step, tc.max_steps, resumed=resume is not None)
    try:
        while trainer.step < tc.max_steps:
            t0 = time.perf_counter()
            loss, lr, norm = trainer.train_one_step()
            dt = time.perf_counter() - t0
            trainer.elapsed_s += dt
            step = trainer.step
            last = step == tc.max_steps
            if not (math.isfinite(loss) and math.isfinite(norm)):
                run.log(
                    f"step {step}: loss {loss}, gradient norm {norm}: skipped, weights not "
                    f"updated ({trainer.skipped_nonfinite} of --skip-nonfinite {tc.skip_nonfinite})"
                )
            val = None
            if (tc.eval_interval and step % tc.eval_interval == 0) or last:
                val = trainer.evaluate()
                result.val_loss = val
                run.log(f"step {step}: train {loss:.4f}, val {val:.4f} (ppl {math.exp(val):.2f})")
            elif tc.log_interval and step % tc.log_interval == 0:
                tok_s = tokens_per_step / dt
                run.log(f"step {step}: train {loss:.4f}, lr {lr:.2e}, {tok_s:,.0f} tok/s")
            result.train_losses.append(loss)
            run.record(
                {
                    "step": step,
                    "train_loss": loss,
                    "val_loss": val,
                    "lr": lr,
                    "grad_norm": norm,
                    "tokens_per_s": tokens_per_step / dt,
                    "elapsed_s": trainer.elapsed_s,
                }
            )
            if tc.sample_interval and step % tc.sample_interval == 0 and not last:
                if dist.is_master:
                    sample = trainer.sample(run.sample_prompt)
                    run.log(f"--- sample at step {step} ---\n{sample}\n---")
            stop = not last and run.should_stop is not None and run.should_stop()
            if (tc.checkpoint_interval and step % tc.checkpoint_interval == 0) or last or stop:
                result.checkpoint = trainer.save(run.checkpoint_path)
            if stop:
                run.log(f"stopped at step {step}; resume from {result.checkpoint}")
                break
    finally:
        run.close()
    result.steps = trainer.step
    if result.checkpoint is None:
        result.checkpoint = trainer.save(run.checkpoint_path)
    if result.val_loss is None:
        result.val_loss = trainer.evaluate()
    run.log(
        f"validation loss {result.val_loss:.4f} (perplexity {math.exp(result.val_loss):.2f}; "
        f"uniform baseline {math.log(model.vocab_size):.4f}); "
        f"checkpoint {result.checkpoint}"
    )
    if not dist.is_master:
        return result
    result.plot = plot_losses(read_metrics(run.metrics_path), run.out_dir / "loss.png")
    run.log(
        f"loss curves: {result.plot}"
        if result.plot
        else "loss curves: install matplotlib (pip install 'pyggml_train[plot]') for loss.png"
    )
    result.sample = trainer.sample(run.sample_prompt)
    run.log(f"--- sample ---\n{result.sample}\n---")
    return result


def _quiet(_message: str) -> None:
    """The log of a rank other than the master."""


def _progress(start: int, total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)
