"""Recipes: whole runs put together from a model source, data and the trainer.

- :func:`train_gpt2`: a GPT-2 from a config (a preset), fine-tuned from any model file
  (``--init-from``), or resumed from its checkpoint;
- :func:`train_spec`: a model spec with its own data and optimizer;
- :func:`script_for`: a Python script that reproduces a spec's run.

The CLI, the studio and examples/ call these; the trainer (train.py) takes any Model.
"""

from __future__ import annotations

import dataclasses
import pprint
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import ggml as G
from .adapters import format_lora, lora_names
from .checkpoint import Checkpoint, load_checkpoint
from .config import GRAPH_OPTIONS, GPT2Config, TrainConfig, follow_given, resumed_config
from .data import prepare_text
from .models import adapter_config, from_checkpoint, gpt2_weights, new_model, read_adapter
from .spec import Spec, SpecError, build_model, load_corpus, parse_spec, summary
from .spec import train_config_for as spec_train_config
from .tokenizer import Tokenizer, tokenizer_from_dict
from .train import Run, TrainResult, load_run_data, train


def train_gpt2(
    model_config: GPT2Config | None,
    train_config: TrainConfig | None,
    tokenizer: str = "char",
    data: str | None = None,
    run: Run | None = None,
    resume: str | Path | None = None,
    init_from: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    lora_from: str | Path | None = None,
    data_dir: str | Path | None = None,
) -> TrainResult:
    """Train a GPT-2 of ``model_config`` on ``data`` (a dataset name, a text file or URL,
    a directory written by ``prepare``, or None for tiny shakespeare; datasets.resolve),
    a named dataset's files looked for in ``data_dir`` first.

    resume: a checkpoint to go on from; the model, the train config and the tokenizer are
    then its own (model_config and train_config may be None), and of ``overrides`` (the
    fields the user set) only those a resume may change are applied (config.RESUMABLE;
    the others are refused by name). init_from: fine-tune
    from the weights of any model file we read; the model's shape, and its tokenizer where
    the file has one, come from it.

    LoRA (``train_config.lora``, docs/lora.md) trains adapters on the frozen weights of
    ``init_from``; lora_from: an adapter to go on from (any file models.read_adapter
    reads), whose settings the run takes unless train_config.lora gives them.
    """
    run = run or Run()
    if resume is not None:
        if init_from is not None or lora_from is not None:
            raise ValueError(
                "--init-from and --lora-from start a run from weights; they exclude --resume"
            )
        ckpt = load_checkpoint(resume)
        if ckpt.spec is not None:
            raise ValueError(f"{resume} is a model spec's checkpoint: resume it with --model")
        tc = _resumed(ckpt, overrides or {}, run)
        if data is None and ckpt.extra.get("data") is not None:  # the text it started on
            data = ckpt.extra["data"]
            run.log(f"resume: data {data}, as the checkpoint's run")
        saved = tokenizer_from_dict(ckpt.tokenizer)
        data_set = load_run_data(data, saved, run, tc.val_fraction, data_dir)
        model = from_checkpoint(ckpt, G.Context(tc.device, tc.threads))
        return train(model, data_set, tc, run, resume=ckpt)
    if model_config is None or train_config is None:
        raise ValueError("a new run needs a model config and a train config (e.g. a preset)")
    tok: Tokenizer | str = tokenizer
    init = None
    if (train_config.lora is not None or lora_from is not None) and init_from is None:
        raise ValueError(
            "LoRA trains adapters on the frozen weights of a model: give them with "
            "--init-from (a checkpoint, HF directory, GGUF or llm.c file)"
        )
    adapter = None
    if init_from is not None:
        init = gpt2_weights(init_from)
        model_config, tok = _graph_options(init.config, overrides or {}), init.tokenizer or tok
    if lora_from is not None:
        adapter = read_adapter(lora_from, init.config)
        if train_config.lora is None:
            lora = format_lora(adapter_config(adapter, init.config))
            train_config = dataclasses.replace(train_config, lora=lora)
    train_config.accum_steps(run.dist.world_size)  # an indivisible batch fails before any work
    data_set = load_run_data(data, tok, run, train_config.val_fraction, data_dir)
    model = new_model(model_config, train_config, data_set.tokenizer.vocab_size)
    if init is not None:
        # a LoRA run's checkpoint is a base too: its own adapters stay out
        base = {n: v for n, v in init.params.items() if n not in lora_names(init.params)}
        model.load_state_dict(base, adapters=False)
        run.log(f"initialized from {init_from} ({init.format})")
    if adapter is not None:
        model.load_lora(adapter)
        run.log(f"LoRA adapters from {lora_from}: {len(adapter.a)} weights")
    return train(model, data_set, train_config, run)


def _graph_options(config: Any, overrides: dict[str, Any]) -> Any:
    """A model file's config with the graph options the user set (``matmul_dtype``,
    ``attention``, ``loss_kind``, ``recompute``): they change how it computes, not its
    shape, so a fine-tune may pick them (e.g. bf16 mixed precision)."""
    chosen = {}
    for key, value in overrides.items():
        name = key.removeprefix("model.")
        if name in GRAPH_OPTIONS:
            chosen[name] = value
    return dataclasses.replace(config, **chosen) if chosen else config


def _resumed(ckpt: Checkpoint, overrides: dict[str, Any], run: Run) -> TrainConfig:
    """The checkpoint's TrainConfig with what a resume may change, keeping its global batch
    on any number of ranks: a run of N ranks without tokens_per_step stepped on N
    micro-batches, so on another world size it goes on with tokens_per_step = N * B * T."""
    tokenizer = tokenizer_from_dict(ckpt.tokenizer).name
    overrides = dict(overrides)
    for note in follow_given(ckpt.train_config, overrides, "checkpoint"):
        run.log(f"resume: {note}")
    tc, changes = resumed_config(
        ckpt.model_config, ckpt.train_config, tokenizer, overrides, "the resumed run"
    )
    for change in changes:
        run.log(f"resume changes {change}")
    saved_world, world = int(ckpt.extra.get("world_size", 1)), run.dist.world_size
    if tc.tokens_per_step is None and saved_world != world:
        tc = dataclasses.replace(tc, tokens_per_step=saved_world * tc.tokens_per_micro_batch)
    return tc


def train_spec(
    spec: Spec | dict[str, Any],
    out_dir: str | Path = "out",
    data_dir: str | Path | None = None,
    resume: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    on_metrics: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    log: Callable[[str], None] = print,
    progress: bool = False,
    metrics_path: str | Path | None = None,
) -> TrainResult:
    """Train (or resume) a spec with the trainer: metrics, checkpoints, samples.

    The corpus is tokenized into out_dir/data. ``on_metrics`` gets each metrics record
    (step, train_loss, val_loss, lr, grad_norm, tokens_per_s, elapsed_s) as it is
    written; ``should_stop`` is asked after every step and ends the run early with a
    checkpoint to resume from. A resumed run takes the spec from its checkpoint, and of
    ``overrides`` only what a resume may change (config.RESUMABLE).
    """
    out = Path(out_dir)
    run = Run(out, metrics_path, progress, log, None, on_metrics, should_stop)
    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resume)
        if ckpt.spec is None:
            raise SpecError(None, f"{resume} is a GPT-2 checkpoint, not a spec's")
        spec = ckpt.spec
    raw = spec.source if isinstance(spec, Spec) else spec
    first = parse_spec(raw, data_dir)  # the vocabulary is checked again once tokenized
    d = first.nodes[first.data].params
    corpus = load_corpus(d["source"], d["path"], data_dir, first.nodes[first.data])
    log(f"data: {corpus.source}")
    prepared = prepare_text(
        corpus.train, out / "data", d["tokenizer"], d["val_fraction"], corpus.val, corpus.source
    )
    data_set = load_run_data(
        str(prepared.train_path.parent), d["tokenizer"], run, d["val_fraction"]
    )
    spec = parse_spec(raw, data_dir, vocab_size=data_set.tokenizer.vocab_size)
    if ckpt is not None:
        tc = _resumed(ckpt, overrides or {}, run)
    else:
        tc = spec_train_config(spec, prepared.train_tokens, overrides)
    model = build_model(spec, G.Context(tc.device, tc.threads), seed=tc.seed)
    return train(model, data_set, tc, run, resume=ckpt)


SCRIPT = """\
#!/usr/bin/env python3
\"\"\"Reproduce the pyggml_train run of the spec {name!r}.

Written by pyggml_train.recipes.script_for. The model, one node per line (output shapes):
{summary}

    python {script} [--out-dir OUT] [--data-dir DIR] [--set max_steps=10 ...] [--resume]
\"\"\"

import argparse

from pyggml_train.recipes import train_spec

SPEC = {spec}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\\n")[0])
    parser.add_argument("--out-dir", default="out", help="checkpoint, metrics, data")
    parser.add_argument("--data-dir", help="where the corpus files are (see docs/spec.md)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config fields")
    parser.add_argument("--resume", action="store_true", help="continue OUT_DIR/checkpoint.npz")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    resume = f"{{args.out_dir}}/checkpoint.npz" if args.resume else None
    result = train_spec(SPEC, args.out_dir, args.data_dir, resume=resume, overrides=overrides)
    print(f"final val loss: {{result.val_loss:.4f}}")


if __name__ == "__main__":
    main()
"""


def script_name(spec: Spec | dict[str, Any]) -> str:
    """A file name for the script of ``spec``: its name in lower case, runs of other
    characters as one hyphen (``small-gpt.py``), as the studio names its download."""
    name = spec.name if isinstance(spec, Spec) else str(spec.get("name", ""))
    words = "".join(c if c.isascii() and c.isalnum() else " " for c in name.lower()).split()
    return f"{'-'.join(words) or 'untitled'}.py"


def script_for(spec: Spec | dict[str, Any], data_dir: str | Path | None = None) -> str:
    """A Python script that reproduces the run of ``spec`` through train_spec.

    The spec is embedded as a literal, and its layers are listed in the docstring when the
    spec is valid (a dict is parsed with data_dir for that).
    """
    if not isinstance(spec, Spec):
        spec = parse_spec(spec, data_dir)
    lines = "\n".join(f"    {line}" for line in summary(spec))
    literal = pprint.pformat(spec.source, indent=1, width=100, sort_dicts=False)
    return SCRIPT.format(name=spec.name, summary=lines, spec=literal, script=script_name(spec))
