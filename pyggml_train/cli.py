"""pyggml-train: train a GPT-2 on your text, sample from it, export it.

commands:
  train    train (or resume) a model on a named dataset or a text file
             pyggml-train train --data wikitext-2 --max-steps 300
  sample   continue a prompt with a trained checkpoint
             pyggml-train sample --checkpoint out/checkpoint.npz --prompt "ROMEO:"
  prepare  tokenize a text once into train.bin / val.bin for repeated runs
             pyggml-train prepare --data input.txt --out-dir data
  export   write a checkpoint for llama.cpp (GGUF), Hugging Face or llm.c, or a LoRA
           adapter for llama.cpp (gguf-lora) or PEFT
             pyggml-train export --format gguf --out model.gguf
  config   list the settings --set accepts, with the preset's values
             pyggml-train config --preset char-tiny
  studio   compose, train and sample model specs in the browser
             pyggml-train studio --data-dir studio-data

`pyggml-train COMMAND --help` describes a command's flags.
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .adapters import lora_names
from .config import follow_given, list_presets, load_preset, settings_help
from .data import prepare_text
from .datasets import DATASETS, DATASETS_ENV, fetch, resolve
from .distributed import Distributed
from .io import (
    ADAPTER_FORMATS,
    FORMATS,
    GGUF_DTYPES,
    LLMC_DTYPES,
    export_adapter,
    export_model,
)
from .io.bpe import gpt2_from_files
from .io.lora import merge_lora
from .memory import check_training_fits
from .models import gpt2_weights, load_sampler, read_adapter
from .recipes import train_gpt2, train_spec
from .spec import SpecError, load_spec, train_config_for
from .tokenizer import GPT2Tokenizer
from .train import CHECKPOINT_NAME, NonFiniteError, Run

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
    "lora": "lora",
    "base_dtype": "base_dtype",
}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout and shows every flag's default that has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default == [] or default == argparse.SUPPRESS
        if "default" in text or unset or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def add_train_arguments(p: argparse.ArgumentParser, preset: str = "char-tiny") -> None:
    """The train flags; examples/train_gpt2.py reuses them with its own defaults."""
    p.add_argument(
        "--preset",
        help=f"one of {', '.join(list_presets())} or a .json path (default: {preset}); "
        "the flags below default to the preset's values (pyggml-train config --preset P)",
    )
    p.set_defaults(default_preset=preset)
    p.add_argument(
        "--data",
        help=f"a named dataset ({', '.join(DATASETS)}), a text file, a URL or a prepared "
        "directory (default: $PYGGML_DATA, else tinyshakespeare); a dataset is downloaded "
        "once into the cache and checked against its recorded SHA-256",
    )
    p.add_argument("--tokenizer", choices=["char", "gpt2"], help="override the preset's tokenizer")
    add_encoding_argument(p)
    p.add_argument("--model", metavar="SPEC.json", help="train a model spec (docs/spec.md)")
    p.add_argument(
        "--data-dir",
        help=f"a folder searched first for a named dataset's files and a spec's text files "
        f"(then ${DATASETS_ENV}, then the cache)",
    )
    p.add_argument("--max-steps", type=int, help="optimizer steps")
    p.add_argument("--batch-size", type=int, help="sequences per micro-batch (per MPI rank)")
    p.add_argument(
        "--tokens-per-step",
        type=int,
        help="global batch in tokens, all ranks together; sets gradient accumulation",
    )
    p.add_argument("--block-size", type=int, help="tokens per sequence (also the model context)")
    p.add_argument(
        "--lr", type=float, help="peak learning rate (min_lr follows it unless --set min_lr=X)"
    )
    p.add_argument("--device", help="cpu, cuda, vulkan or metal (default: cpu; docs/devices.md)")
    p.add_argument("--threads", type=int, help="CPU threads (default: the preset's, 2)")
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
    p.add_argument(
        "--lora",
        metavar="SETTINGS",
        help="train LoRA adapters on the frozen --init-from weights, e.g. "
        "rank=16,alpha=32,targets=q,k,v,o,gate,up,down,dropout=0.05 (docs/lora.md)",
    )
    p.add_argument(
        "--lora-from",
        metavar="PATH",
        help="go on from the LoRA adapter in PATH (a LoRA run's checkpoint, a llama.cpp adapter "
        "GGUF or a PEFT directory) on the --init-from weights; its settings unless --lora "
        "gives them",
    )
    p.add_argument(
        "--base-dtype",
        choices=["f32", "bf16", "q8_0"],
        help="with --lora: store the frozen Linear weights in this type (default: f32)",
    )
    p.add_argument("--metrics", help="metrics JSONL path (default: OUT_DIR/metrics.jsonl)")
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="any other model or train setting, e.g. --set n_layer=2 dropout=0.1; "
        "--set help (or pyggml-train config) lists them with defaults and meanings",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--zero",
        type=int,
        choices=[0, 1],
        help="under mpirun: 1 shards the AdamW moments across ranks (ZeRO-1) (default: 0)",
    )


def add_encoding_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--encoding",
        metavar="NAME",
        help="text encoding of --data: a Python codec (latin-1, cp1252, ...) or 'lossy' (UTF-8, "
        "undecodable bytes become U+FFFD) (default: UTF-8, or what a byte-order mark says)",
    )


def _note(name: str, message: str) -> None:
    print(f"{name}: {message}", file=sys.stderr)


def _set_overrides(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict[str, object]:
    """The config fields the flags and --set name, as given (strings parsed later)."""
    overrides: dict[str, object] = {
        name: getattr(args, flag)
        for flag, name in _OVERRIDES.items()
        if flag not in skip and getattr(args, flag, None) is not None
    }
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}; --set help lists the keys")
        overrides[key] = value
    return overrides


def run_train(args: argparse.Namespace) -> int:
    preset = args.preset or args.default_preset
    if "help" in args.set:
        print(settings_help(preset))
        return 0
    if args.model is not None:
        return run_train_spec(args)
    overrides = _set_overrides(args)
    dist = Distributed.from_environment()
    resume = _resume_path(args)
    model_cfg, train_cfg, tokenizer = None, None, "char"  # a resumed run's are its checkpoint's
    if resume is None:
        _, preset_train, _ = load_preset(preset)
        for note in follow_given(preset_train, overrides):
            if dist.is_master:
                _note("pyggml-train train", note)
        model_cfg, train_cfg, tokenizer = load_preset(preset, **overrides)
        check_training_fits(model_cfg, train_cfg)
    data = args.data
    if args.encoding is not None:
        if resume is not None or args.init_from is not None:
            raise ValueError(
                "--encoding tokenizes a new corpus; a resumed or fine-tuned run keeps its "
                "tokenizer: prepare the text with it first (pyggml-train prepare --encoding)"
            )
        data = str(Path(args.out_dir) / "data")
        if dist.is_master:  # the other ranks read what the master prepares (train's barrier)
            corpus = resolve(args.data, args.data_dir, args.encoding)
            val_fraction = train_cfg.val_fraction
            prepare_text(corpus.train, data, tokenizer, val_fraction, corpus.val, corpus.source)
    run = Run(args.out_dir, args.metrics, not args.no_progress, dist=dist)
    result = train_gpt2(
        model_cfg,
        train_cfg,
        tokenizer,
        data=data,
        run=run,
        resume=resume,
        init_from=args.init_from,
        overrides=overrides,
        lora_from=args.lora_from,
        data_dir=args.data_dir,
    )
    if dist.is_master:
        print(f"final val loss: {result.val_loss:.4f}")
    return 0


def run_train_spec(args: argparse.Namespace) -> int:
    """``train --model SPEC.json``: the spec sets model, data and optimizer; flags and --set
    override TrainConfig fields. A flag the spec replaces is refused, saying why."""
    refused = {
        "--init-from": (args.init_from, "it loads GPT-2 weights, a spec builds its own model"),
        "--lora": (args.lora, "LoRA adapts GPT-2 and Llama-family models, not specs"),
        "--lora-from": (args.lora_from, "LoRA adapts GPT-2 and Llama-family models, not specs"),
        "--preset": (args.preset, "the spec is the model and the optimizer"),
        "--data": (args.data, "the spec's TextDataset node names the corpus (or --data-dir)"),
        "--tokenizer": (args.tokenizer, "the spec's TextDataset node names the tokenizer"),
        "--encoding": (args.encoding, "a spec's text files are read as UTF-8 (or by their BOM)"),
    }
    for flag, (value, why) in refused.items():
        if value is not None:
            raise ValueError(f"{flag} does not apply with --model: {why}")
    overrides = _set_overrides(args, skip=("tokenizer",))
    spec = load_spec(args.model, args.data_dir)
    source = spec.nodes[spec.data].params["source"]
    if source in DATASETS:  # fetched (or a clear error offline) before any work
        fetch(source, args.data_dir)
    try:
        spec_train = train_config_for(spec)
    except SpecError:  # a schedule in epochs: its steps depend on the corpus
        spec_train = None
    resume = _resume_path(args)
    if resume is None and spec_train is not None:  # a resume follows its checkpoint's
        for note in follow_given(spec_train, overrides, "spec"):
            _note("pyggml-train train", note)
    result = train_spec(
        spec,
        args.out_dir,
        args.data_dir,
        resume=resume,
        overrides=overrides,
        progress=not args.no_progress,
        metrics_path=args.metrics,
    )
    print(f"final val loss: {result.val_loss:.4f}")
    return 0


def _resume_path(args: argparse.Namespace) -> Path | None:
    """--resume's checkpoint: the one given, or OUT_DIR's (a bare --resume)."""
    if args.resume is None:
        return None
    return Path(args.out_dir) / CHECKPOINT_NAME if args.resume == "auto" else Path(args.resume)


def run_sample(args: argparse.Namespace) -> int:
    if args.max_new_tokens < 0:
        raise ValueError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    sampler = load_sampler(_model_path(args.checkpoint), args.threads, args.device, args.lora_from)
    text = sampler.generate(
        args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed
    )
    print(text)
    return 0


def _model_path(path: str) -> Path:
    """A model file, or a run's directory (OUT_DIR), which means its checkpoint."""
    given = Path(path)
    if given.is_dir() and (given / CHECKPOINT_NAME).is_file():
        return given / CHECKPOINT_NAME
    return given


def run_export(args: argparse.Namespace) -> int:
    checkpoint = _model_path(args.checkpoint)
    loaded = gpt2_weights(checkpoint)
    cfg = loaded.config
    adapter_out = args.format in ADAPTER_FORMATS
    if args.adapter is not None and not (adapter_out or args.merge_lora):
        raise ValueError(
            f"--adapter is written with --format {' or '.join(ADAPTER_FORMATS)}, or merged "
            f"into the weights with --merge-lora; --format {args.format} alone writes the base"
        )
    if adapter_out and args.merge_lora:
        raise ValueError(
            f"--merge-lora writes the merged model (--format {', '.join(FORMATS)}); "
            f"--format {args.format} writes the adapter alone"
        )
    # a LoRA run's checkpoint holds base and adapters: the base is the one without them
    adapters = lora_names(loaded.params)
    params = {n: v for n, v in loaded.params.items() if n not in adapters}
    if adapter_out or args.merge_lora:
        if args.adapter is None and not adapters:
            raise ValueError(
                f"--format {args.format}{' --merge-lora' if args.merge_lora else ''} needs a "
                "LoRA adapter: pass --adapter PATH (a LoRA run's checkpoint, a llama.cpp "
                f"adapter GGUF or a PEFT directory), or export a LoRA run's checkpoint"
            )
        lora = read_adapter(args.adapter or checkpoint, cfg)
        summary = f"{lora.config.rank}-rank LoRA on {len(lora.a)} weights"
        if adapter_out:
            out = export_adapter(args.out, args.format, lora, cfg, args.dtype)
            print(f"wrote {out} ({args.format}, {args.dtype}): {summary}")
            return 0
        params = merge_lora(params, lora, cfg)
        _note("pyggml-train export", f"merged {summary}")
    tokenizer = loaded.tokenizer
    if tokenizer is None:
        if args.tokenizer != "gpt2":
            raise ValueError(
                f"{args.checkpoint} carries no tokenizer ({loaded.format}); pass --tokenizer gpt2 "
                "if the model was trained on GPT-2 BPE"
            )
        tokenizer = GPT2Tokenizer()
    gpt2_bpe = gpt2_from_files(*args.gpt2_bpe) if args.gpt2_bpe else None
    out = export_model(args.out, args.format, params, cfg, tokenizer, args.dtype, gpt2_bpe)
    print(
        f"wrote {out} ({args.format}, {args.dtype}): {cfg.n_layer} layers, C={cfg.n_embd}, "
        f"vocab {cfg.vocab_size} ({tokenizer.name})"
    )
    return 0


def run_config(args: argparse.Namespace) -> int:
    print(settings_help(args.preset))
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    corpus = resolve(args.data, args.data_dir, args.encoding)
    prepared = prepare_text(
        corpus.train, args.out_dir, args.tokenizer, args.val_fraction, corpus.val, corpus.source
    )
    print(
        f"{corpus.source}: {prepared.train_tokens} train / {prepared.val_tokens} val tokens in "
        f"{Path(args.out_dir)} (use --data {args.out_dir} to train on them)"
    )
    return 0


def _check_port_free(host: str, port: int) -> None:
    """Refuse a taken port before announcing the address: the server would fail after."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise OSError(
                f"port {port} on {host} is taken (another studio, or another server); "
                f"choose another with --port {port + 1}, or stop the one using it"
            ) from None


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

    _check_port_free(args.host, args.port)
    if assets.missing():
        raise SystemExit(f"pyggml-train studio: {assets.how_to_fetch()}")
    data_dir = Path(args.data_dir).resolve()
    print(f"studio: data in {data_dir}; open http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(create_app(data_dir), host=args.host, port=args.port, log_level="warning")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyggml-train", description=__doc__, formatter_class=_HelpFormatter
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="one of the commands above"
    )

    def command(name: str, purpose: str) -> argparse.ArgumentParser:
        # the purpose is listed once, in the description's table with an example
        return sub.add_parser(name, description=purpose, formatter_class=_HelpFormatter)

    add_train_arguments(command("train", "train or resume a GPT-2 on a text file"))

    s = command("sample", "generate text from a checkpoint")
    s.add_argument(
        "--checkpoint",
        default=f"out/{CHECKPOINT_NAME}",
        help="a checkpoint written by train (its tokenizer and config come with it)",
    )
    s.add_argument(
        "--lora-from",
        metavar="PATH",
        help="apply the LoRA adapter in PATH (a LoRA run's checkpoint, a llama.cpp adapter GGUF "
        "or a PEFT directory) to the model",
    )
    s.add_argument("--prompt", default="", help="text to continue (default: token 0)")
    s.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate")
    s.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    s.add_argument(
        "--top-k", type=int, help="sample among the k most likely tokens only (default: all)"
    )
    s.add_argument(
        "--top-p",
        type=float,
        help="sample among the most likely tokens whose probabilities sum to p (default: 1)",
    )
    s.add_argument(
        "--seed", type=int, default=0, help="seed of the sampling (same seed, same text)"
    )
    s.add_argument(
        "--device", help="cpu, cuda or metal (default: the device the checkpoint trained on)"
    )
    s.add_argument(
        "--threads",
        type=int,
        help="CPU threads (default: those the checkpoint trained with; a model under 16M "
        "parameters decodes on one, which is faster)",
    )

    e = command(
        "export",
        "write a model for llama.cpp (GGUF), Hugging Face or llm.c, or a LoRA adapter of it",
    )
    e.add_argument(
        "--checkpoint", default=f"out/{CHECKPOINT_NAME}", help="any model file we read: the base"
    )
    e.add_argument(
        "--format",
        choices=FORMATS + ADAPTER_FORMATS,
        required=True,
        help="gguf: llama.cpp and friends; hf: a transformers directory; llmc: llm.c's .bin; "
        "gguf-lora: a LoRA adapter for llama.cpp (--lora); peft: a PEFT adapter directory",
    )
    e.add_argument(
        "--out", required=True, help="output file (a directory for --format hf and peft)"
    )
    e.add_argument(
        "--adapter",
        metavar="PATH",
        help="the LoRA adapter of the base to write (--format gguf-lora/peft) or merge "
        "(--merge-lora): a LoRA run's checkpoint, a llama.cpp adapter GGUF or a PEFT "
        "directory (default: the --checkpoint's own, for a LoRA run's) (docs/lora.md)",
    )
    e.add_argument(
        "--merge-lora",
        action="store_true",
        help="write the base with the adapter added to its weights (any model --format)",
    )
    e.add_argument(
        "--dtype",
        choices=sorted({*GGUF_DTYPES, *LLMC_DTYPES}),
        default="f32",
        help=f"tensor type: GGUF {'/'.join(GGUF_DTYPES)}, llm.c {'/'.join(LLMC_DTYPES)}, "
        "gguf-lora f32/f16",
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

    p = command("prepare", "tokenize a text into train.bin / val.bin")
    p.add_argument(
        "--data",
        help=f"a named dataset ({', '.join(DATASETS)}), a text file or a URL "
        "(default: $PYGGML_DATA, else tinyshakespeare)",
    )
    p.add_argument(
        "--tokenizer",
        choices=["char", "gpt2"],
        default="char",
        help="char: one token per character of this text; gpt2: GPT-2's BPE",
    )
    p.add_argument("--out-dir", default="data", help="where train.bin, val.bin go")
    p.add_argument(
        "--data-dir",
        help=f"a folder searched first for a named dataset's files (then ${DATASETS_ENV}, "
        "then the cache)",
    )
    p.add_argument(
        "--val-fraction", type=float, default=0.1, help="tail of the tokens held out to validate"
    )
    add_encoding_argument(p)

    c = command("config", "list every setting (--set KEY=VALUE) with its value and meaning")
    c.add_argument(
        "--preset", default="char-tiny", help=f"one of {', '.join(list_presets())} or a .json path"
    )

    w = command("studio", "the workbench: build, train and sample specs in a browser")
    w.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    w.add_argument("--port", type=int, default=8000, help="TCP port to serve on")
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
        "config": run_config,
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
    except (ValueError, OSError, NonFiniteError, MemoryError) as exc:  # OSError: a full disk
        print(f"{name}: error: {exc or type(exc).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
