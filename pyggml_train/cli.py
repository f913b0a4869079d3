"""``pyggml-train train|sample|prepare|export|studio``: a thin argparse layer over train.py,
sample.py, io/ and the studio."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .config import list_presets, load_preset
from .data import prepare, resolve_text
from .distributed import Distributed
from .io import FORMATS, GGUF_DTYPES, LLMC_DTYPES, export_model, load_model
from .io.bpe import gpt2_from_files
from .spec import load_sampler, load_spec, train_spec
from .tokenizer import GPT2Tokenizer
from .train import CHECKPOINT_NAME, NonFiniteError, train

# CLI flag -> config override name (a bare name sets the model and train fields it names)
_OVERRIDES = {
    "max_steps": "max_steps",
    "batch_size": "batch_size",
    "block_size": "block_size",
    "lr": "lr",
    "device": "device",
    "threads": "threads",
    "seed": "seed",
    "tokenizer": "tokenizer",
    "skip_nonfinite": "skip_nonfinite",
    "tokens_per_step": "tokens_per_step",
    "zero": "zero",
}


def add_train_arguments(p: argparse.ArgumentParser, preset: str = "char-tiny") -> None:
    """The train flags; examples/train_gpt2.py reuses them with its own defaults."""
    p.add_argument(
        "--preset", default=preset, help=f"one of {', '.join(list_presets())} or a .json path"
    )
    p.add_argument(
        "--data", help="text file, URL or prepared directory (default: tiny shakespeare)"
    )
    p.add_argument("--tokenizer", choices=["char", "gpt2"], help="override the preset's tokenizer")
    p.add_argument("--model", metavar="SPEC.json", help="train a model spec (docs/spec.md)")
    p.add_argument("--data-dir", help="where a spec's corpus files are (default: the cache)")
    p.add_argument("--max-steps", type=int, help="optimizer steps")
    p.add_argument("--batch-size", type=int, help="sequences per micro-batch (per MPI rank)")
    p.add_argument(
        "--tokens-per-step",
        type=int,
        help="global batch in tokens, all ranks together; sets gradient accumulation",
    )
    p.add_argument("--block-size", type=int, help="tokens per sequence (also the model context)")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--device", help="cpu, cuda, vulkan or metal (docs/devices.md)")
    p.add_argument("--threads", type=int, help="CPU threads")
    p.add_argument("--seed", type=int, help="seed of init, batches and sampling")
    p.add_argument(
        "--skip-nonfinite",
        type=int,
        metavar="N",
        help="skip up to N steps with a NaN/Inf loss or gradient norm (default 0: stop)",
    )
    p.add_argument("--out-dir", default="out", help="checkpoint, metrics and plot directory")
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        help=f"checkpoint to resume (no value: OUT_DIR/{CHECKPOINT_NAME})",
    )
    p.add_argument(
        "--init-from",
        metavar="PATH",
        help="fine-tune from weights: a checkpoint, HF directory/.safetensors, llm.c .bin or GGUF",
    )
    p.add_argument("--metrics", help="metrics JSONL path (default: OUT_DIR/metrics.jsonl)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="other config fields")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--zero",
        type=int,
        choices=[0, 1],
        help="under mpirun: 1 shards the AdamW moments across ranks (ZeRO-1)",
    )


def run_train(args: argparse.Namespace) -> int:
    if args.model is not None:
        return run_train_spec(args)
    overrides = {
        name: getattr(args, flag)
        for flag, name in _OVERRIDES.items()
        if getattr(args, flag, None) is not None
    }
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key] = value
    if args.max_steps is not None and "warmup_steps" not in overrides:
        # a short run keeps the preset's warmup fraction instead of failing validation
        _, preset_train, _ = load_preset(args.preset)
        if preset_train.warmup_steps > args.max_steps:
            overrides["warmup_steps"] = args.max_steps // 10
    model_cfg, train_cfg, tokenizer = load_preset(args.preset, **overrides)
    resume = args.resume
    if resume == "auto":
        resume = Path(args.out_dir) / CHECKPOINT_NAME
    dist = Distributed.from_environment()
    result = train(
        model_cfg,
        train_cfg,
        tokenizer,
        data=args.data,
        out_dir=args.out_dir,
        resume=resume,
        metrics_path=args.metrics,
        progress=not args.no_progress,
        dist=dist,
        init_from=args.init_from,
    )
    if dist.is_master:
        print(f"final val loss: {result.val_loss:.4f}")
    return 0


def run_train_spec(args: argparse.Namespace) -> int:
    """``train --model SPEC.json``: the spec sets model, data and optimizer; flags and --set
    override TrainConfig fields."""
    if args.init_from is not None:
        raise ValueError("--init-from loads GPT-2 weights; it does not apply to --model specs")
    if args.data is not None or args.tokenizer is not None:
        raise ValueError(
            "with --model, the spec's TextDataset node chooses the corpus and the tokenizer; "
            "edit it (source, path, tokenizer) or pass --data-dir"
        )
    overrides = {
        name: getattr(args, flag)
        for flag, name in _OVERRIDES.items()
        if flag != "tokenizer" and getattr(args, flag, None) is not None
    }
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key] = value
    resume = args.resume
    if resume == "auto":
        resume = Path(args.out_dir) / CHECKPOINT_NAME
    result = train_spec(
        load_spec(args.model, args.data_dir),
        args.out_dir,
        args.data_dir,
        resume=resume,
        overrides=overrides,
        progress=not args.no_progress,
    )
    print(f"final val loss: {result.val_loss:.4f}")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    sampler = load_sampler(args.checkpoint, args.threads, args.device)
    text = sampler.generate(
        args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed
    )
    print(text)
    return 0


def run_export(args: argparse.Namespace) -> int:
    loaded = load_model(args.checkpoint)
    tokenizer = loaded.tokenizer
    if tokenizer is None:
        if args.tokenizer != "gpt2":
            raise ValueError(
                f"{args.checkpoint} carries no tokenizer ({loaded.format}); pass --tokenizer gpt2 "
                "if the model was trained on GPT-2 BPE"
            )
        tokenizer = GPT2Tokenizer()
    gpt2_bpe = gpt2_from_files(*args.gpt2_bpe) if args.gpt2_bpe else None
    out = export_model(
        args.out, args.format, loaded.params, loaded.config, tokenizer, args.dtype, gpt2_bpe
    )
    cfg = loaded.config
    print(
        f"wrote {out} ({args.format}, {args.dtype}): {cfg.n_layer} layers, C={cfg.n_embd}, "
        f"vocab {cfg.vocab_size} ({tokenizer.name})"
    )
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    path, source = resolve_text(args.data)
    prepared = prepare(path, args.out_dir, args.tokenizer, args.val_fraction)
    print(
        f"{source}: {prepared.train_tokens} train / {prepared.val_tokens} val tokens in "
        f"{Path(args.out_dir)} (use --data {args.out_dir} to train on them)"
    )
    return 0


def run_studio(args: argparse.Namespace) -> int:
    """Serve the workbench; the web stack and npm assets are optional, so say what is missing."""
    try:
        import uvicorn

        from .studio.app import create_app
    except ImportError as exc:
        raise SystemExit(
            f"pyggml-train studio needs the studio extra ({exc}): "
            "pip install 'pyggml_train[studio]'"
        ) from None
    from .studio import assets

    if assets.missing():
        raise SystemExit(f"pyggml-train studio: {assets.how_to_fetch()}")
    data_dir = Path(args.data_dir).resolve()
    print(f"studio: data in {data_dir}; open http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(create_app(data_dir), host=args.host, port=args.port, log_level="warning")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyggml-train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_arguments(sub.add_parser("train", help="train or resume a GPT-2"))

    s = sub.add_parser("sample", help="generate text from a checkpoint")
    s.add_argument("--checkpoint", default=f"out/{CHECKPOINT_NAME}")
    s.add_argument("--prompt", default="", help="text to continue (default: token 0)")
    s.add_argument("--max-new-tokens", type=int, default=200)
    s.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    s.add_argument("--top-k", type=int)
    s.add_argument("--top-p", type=float)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device")
    s.add_argument("--threads", type=int)

    e = sub.add_parser("export", help="write a model for llama.cpp (GGUF), Hugging Face or llm.c")
    e.add_argument("--checkpoint", default=f"out/{CHECKPOINT_NAME}", help="any model file we read")
    e.add_argument("--format", choices=FORMATS, required=True)
    e.add_argument("--out", required=True, help="output file (a directory for --format hf)")
    e.add_argument(
        "--dtype",
        choices=sorted({*GGUF_DTYPES, *LLMC_DTYPES}),
        default="f32",
        help=f"tensor type: GGUF {'/'.join(GGUF_DTYPES)}, llm.c {'/'.join(LLMC_DTYPES)}",
    )
    e.add_argument(
        "--tokenizer", choices=["gpt2"], help="for a file without a tokenizer (llm.c .bin)"
    )
    e.add_argument(
        "--gpt2-bpe",
        nargs=2,
        metavar=("VOCAB_BPE", "ENCODER_JSON"),
        help="GPT-2's vocab.bpe and encoder.json (default: tiktoken's cached GPT-2 files)",
    )

    p = sub.add_parser("prepare", help="tokenize a text into train.bin / val.bin")
    p.add_argument("--data", help="text file or URL (default: tiny shakespeare)")
    p.add_argument("--tokenizer", choices=["char", "gpt2"], default="char")
    p.add_argument("--out-dir", default="data")
    p.add_argument("--val-fraction", type=float, default=0.1)

    w = sub.add_parser("studio", help="the workbench: build, train and sample specs in a browser")
    w.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    w.add_argument("--port", type=int, default=8000)
    w.add_argument(
        "--data-dir", default="studio-data", help="specs, text files (data/) and runs live here"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "train": run_train,
        "sample": run_sample,
        "prepare": run_prepare,
        "studio": run_studio,
        "export": run_export,
    }
    return run_command(f"pyggml-train {args.command}", handlers[args.command], args)


def run_command(
    name: str, handler: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> int:
    """``handler(args)``, with a bad value, a missing file or a diverged run reported as
    one line ``NAME: error: ...`` and exit status 2 instead of a traceback."""
    try:
        # under mpirun an error on one rank ends them all, naming the rank
        with Distributed.from_environment().abort_on_error(name):
            return handler(args)
    except (ValueError, OSError, NonFiniteError) as exc:  # OSError: e.g. a full disk
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
