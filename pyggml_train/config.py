"""Typed model and training configuration, with JSON presets.

Presets are JSON files in ``pyggml_train/presets/`` holding
``{"model": {...}, "train": {...}, "tokenizer": "char" | "gpt2"}``; overrides are
checked against the dataclass field types so a typo or a wrong type fails early
with a message naming the valid fields instead of surfacing mid-training.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from .adapters import LoraConfig, parse_lora

PRESET_DIR = Path(__file__).parent / "presets"
TOKENIZERS = ("char", "gpt2")  # what a run builds by name
# what a model file carries (tokenizer.json, tokenizer.model), named in checkpoints
FILE_TOKENIZERS = ("hf", "sentencepiece")
DATA_MODES = ("random", "sequential")
LOSS_KINDS = ("sparse", "dense", "gather")  # cross-entropy formulations (docs/training.md)
ATTENTION_KINDS = ("auto", "fused", "unfused")  # auto: fused on the CPU, unfused elsewhere
# dtype of the Linear and LM-head weights in their matmuls; auto: bf16 where the CPU
# multiplies bf16 natively (AVX512-BF16 or AMX, pyggml_train.kernels), else f32
MATMUL_DTYPES = ("f32", "bf16", "auto")
RECOMPUTE = ("none", "blocks")  # blocks: keep block inputs only, recompute in the backward
LLAMA_TYPES = ("llama", "qwen2")  # model_type values of LlamaConfig
# storage of a LoRA run's frozen Linear weights (embeddings and norms stay f32)
BASE_DTYPES = ("f32", "bf16", "q8_0")
OPTIMIZERS = ("adamw", "adam", "sgd")  # adam: AdamW without weight decay; sgd: plain SGD
LOSS_CHUNK_ROWS = 512  # default rows per chunk of the sparse loss head (GPT2Config)


# how a model's graphs compute, not what it is: every family's config has these fields, and
# a fine-tune may choose them (recipes.py)
GRAPH_OPTIONS = {
    "loss_kind": LOSS_KINDS,
    "attention": ATTENTION_KINDS,
    "matmul_dtype": MATMUL_DTYPES,
    "recompute": RECOMPUTE,
}


_Shape = typing.TypeVar("_Shape", bound="_ModelShape")


class _ModelShape:
    """What every model family's config shares: a vocabulary that may wait for the
    tokenizer, and heads that split n_embd."""

    vocab_size: int | None
    n_embd: int
    n_head: int

    @property
    def head_dim(self) -> int:
        """Width of one attention head (C // n_head)."""
        return self.n_embd // self.n_head

    def require_vocab_size(self) -> int:
        """Return vocab_size, or explain how to set it when a preset left it to the tokenizer."""
        if self.vocab_size is None:
            raise ValueError(
                "vocab_size is None (the preset takes it from the tokenizer); call "
                "config.with_vocab_size(tokenizer.vocab_size) first"
            )
        return self.vocab_size

    def with_vocab_size(self: _Shape, vocab_size: int) -> _Shape:
        """Copy with the vocabulary fixed, e.g. from a char tokenizer built on the data."""
        return dataclasses.replace(self, vocab_size=vocab_size)


@dataclass
class GPT2Config(_ModelShape):
    """Shape of a GPT-2 model; the defaults are the 124M GPT-2."""

    vocab_size: int | None = 50257  # tokens the tokenizer emits; None = take it from the tokenizer
    block_size: int = 1024  # maximum context length (rows of the position embedding)
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads per block
    n_embd: int = 768  # residual stream width C
    padded_vocab_size: int | None = (
        None  # compute-time rows of wte/logits (e.g. 50304); None = no padding
    )
    dropout: float = 0.0  # dropout probability; 0.0 = none (GPT-2 inference and most small runs)
    ln_eps: float = 1e-5  # LayerNorm epsilon used by GPT-2
    bias: bool = True  # GPT-2 has biases in every Linear and LayerNorm; kept as a field to say so
    # how the graphs compute (same parameters, same math up to rounding; docs/training.md)
    loss_kind: str = "sparse"  # "sparse" is the smallest and fastest cross-entropy
    attention: str = "auto"  # "fused" attn_causal op (CPU, Vulkan) or "unfused" mul_mat + soft_max
    matmul_dtype: str = "f32"  # "bf16": mixed precision on bf16 casts of f32 master weights
    recompute: str = "none"  # "blocks": activation recomputation (less memory, one more forward)
    loss_chunk_rows: int = LOSS_CHUNK_ROWS  # loss head rows per chunk (recompute, eval); 0: all

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError with a fix suggestion if the sizes can't form a GPT-2."""
        if self.vocab_size is not None:
            _check_positive(self, "vocab_size")
        for name in ("block_size", "n_layer", "n_head", "n_embd"):
            _check_positive(self, name)
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}) so every "
                f"head gets the same width; e.g. use n_embd={_round_to(self.n_embd, self.n_head)}"
            )
        if self.padded_vocab_size is not None:
            _check_positive(self, "padded_vocab_size")
            if self.vocab_size is not None and self.padded_vocab_size < self.vocab_size:
                raise ValueError(
                    f"padded_vocab_size ({self.padded_vocab_size}) must be >= vocab_size "
                    f"({self.vocab_size}); use None for no padding"
                )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.ln_eps <= 0:
            raise ValueError(f"ln_eps must be > 0, got {self.ln_eps}")
        if not self.bias:
            raise ValueError("bias=False is not supported: GPT-2 has biases everywhere")
        for name, choices in GRAPH_OPTIONS.items():
            _check_choice(self, name, choices)
        _check_chunk_rows(self)


@dataclass
class LlamaConfig(_ModelShape):
    """Shape of a Llama-family model (Hugging Face's LlamaConfig in our field names); the
    defaults are SmolLM2-135M's. ``model_type`` names the family in files and checkpoints."""

    vocab_size: int | None = 49152  # None = take it from the tokenizer
    block_size: int = 8192  # maximum context length (HF max_position_embeddings)
    n_layer: int = 30  # transformer blocks
    n_head: int = 9  # query heads
    n_kv_head: int = 3  # key/value heads, each shared by n_head / n_kv_head query heads
    n_embd: int = 576  # residual stream width C
    d_ff: int = 1536  # SwiGLU hidden width (HF intermediate_size)
    rope_theta: float = 100000.0  # rotary base
    norm_eps: float = 1e-5  # RMSNorm epsilon (HF rms_norm_eps)
    tie_embeddings: bool = True  # the LM head multiplies by embed_tokens
    qkv_bias: bool = False  # biases on q_proj, k_proj, v_proj (Qwen2 has them)
    init_std: float = 0.02  # N(0, std) init of every matrix (HF initializer_range)
    model_type: str = "llama"  # "llama" or "qwen2" (the HF model_type and GGUF architecture)
    # how the graphs compute, as GPT2Config's
    loss_kind: str = "sparse"
    attention: str = "auto"
    matmul_dtype: str = "f32"
    recompute: str = "none"
    loss_chunk_rows: int = LOSS_CHUNK_ROWS

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field when the sizes can't form the model."""
        if self.vocab_size is not None:
            _check_positive(self, "vocab_size")
        for name in ("block_size", "n_layer", "n_head", "n_kv_head", "n_embd", "d_ff"):
            _check_positive(self, name)
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); e.g. "
                f"n_embd={_round_to(self.n_embd, self.n_head)}"
            )
        if self.n_head % self.n_kv_head:
            raise ValueError(
                f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head}): "
                "each key/value head serves an equal group of query heads"
            )
        if self.head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head size, got {self.head_dim}")
        if self.rope_theta <= 0 or self.norm_eps <= 0 or self.init_std <= 0:
            raise ValueError("rope_theta, norm_eps and init_std must be > 0")
        for name, choices in {"model_type": LLAMA_TYPES, **GRAPH_OPTIONS}.items():
            _check_choice(self, name, choices)
        _check_chunk_rows(self)


@dataclass
class Qwen2Config(LlamaConfig):
    """Qwen2: a Llama with Q/K/V biases, a larger rotary base and RMSNorm eps 1e-6."""

    rope_theta: float = 1000000.0
    norm_eps: float = 1e-6
    qkv_bias: bool = True
    model_type: str = "qwen2"


LLAMA_CONFIGS: dict[str, type[LlamaConfig]] = {"llama": LlamaConfig, "qwen2": Qwen2Config}


@dataclass
class TrainConfig:
    """Optimisation, evaluation and runtime settings for one training run."""

    batch_size: int = 8  # sequences per micro-batch B
    block_size: int = 256  # tokens per training sequence T (<= model block_size)
    max_steps: int = 1000  # optimizer steps
    lr: float = 6e-4  # peak learning rate after warmup
    min_lr: float = 6e-5  # floor of the cosine decay (10% of lr is the usual choice)
    warmup_steps: int = 100  # linear warmup length in steps
    optimizer: str = "adamw"  # "adamw", "adam" (no weight decay) or "sgd" (w -= lr g, decay)
    weight_decay: float = 0.1  # AdamW/SGD decay, applied to 2-D weights only (adam: none)
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.95  # AdamW second-moment decay (0.95 is steadier than 0.999 for LMs)
    eps: float = 1e-8  # AdamW denominator epsilon
    grad_clip: float | None = 1.0  # clip the global gradient norm to this; None = no clipping
    tokens_per_step: int | None = (
        None  # tokens per optimizer step, all ranks together; None = one micro-batch per rank
    )
    eval_interval: int = 100  # steps between validation evaluations; 0 = never
    eval_steps: int = 20  # validation micro-batches averaged per evaluation
    val_fraction: float = 0.1  # tail fraction of the corpus held out for validation
    data_mode: str = "random"  # "random" windows or "sequential" sweeps over the tokens
    seed: int = 1337  # seeds initialisation, batch sampling and text sampling
    threads: int = 2  # CPU threads for the ggml backend
    device: str = "cpu"  # ggml backend name
    log_interval: int = 10  # steps between train-loss log lines; 0 = none
    checkpoint_interval: int = 0  # steps between checkpoints; 0 = only at the end
    sample_interval: int = 200  # steps between text samples; 0 = never
    sample_tokens: int = 200  # tokens generated per sample
    temperature: float = 1.0  # sampling temperature
    top_k: int | None = None  # keep only the k most likely tokens when sampling; None = all
    skip_nonfinite: int = 0  # steps with a NaN/Inf loss or gradient norm skipped before stopping
    zero: int = 0  # ZeRO stage over MPI ranks: 0 = AdamW moments on every rank, 1 = sharded
    lora: str | None = None  # LoRA on a frozen base: "rank=16,alpha=32,targets=q,v"; None = off
    base_dtype: str = "f32"  # with lora: the frozen Linear weights in "f32", "bf16" or "q8_0"
    overlap: bool = True  # MPI: sum each block's gradients while the backward goes on
    # (recompute='blocks' splits the backward; else the sums follow it, as with False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field and the accepted range."""
        for name in (
            "batch_size",
            "block_size",
            "max_steps",
            "eval_steps",
            "threads",
            "sample_tokens",
        ):
            _check_positive(self, name)
        for name in (
            "warmup_steps",
            "eval_interval",
            "log_interval",
            "checkpoint_interval",
            "sample_interval",
            "skip_nonfinite",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ValueError(
                f"need 0 <= min_lr <= lr and lr > 0, got lr={self.lr}, min_lr={self.min_lr}; "
                f"set the floor of the decay with --set min_lr=X (e.g. {self.lr / 10:g}, lr/10)"
            )
        if self.warmup_steps > self.max_steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must be <= max_steps ({self.max_steps}); "
                f"lower it with --set warmup_steps=N (e.g. {self.max_steps // 10})"
            )
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.eps <= 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 or None (no clipping), got {self.grad_clip}")
        if (
            self.tokens_per_step is not None
            and self.tokens_per_step % self.tokens_per_micro_batch != 0
        ):
            raise ValueError(
                f"tokens_per_step ({self.tokens_per_step}) must be a multiple of "
                f"batch_size*block_size ({self.tokens_per_micro_batch}); "
                f"e.g. {_round_to(self.tokens_per_step, self.tokens_per_micro_batch)}"
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        _check_choice(self, "data_mode", DATA_MODES)
        _check_choice(self, "optimizer", OPTIMIZERS)
        if not self.device:
            raise ValueError("device must be a backend name such as 'cpu'")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k is not None and self.top_k <= 0:
            raise ValueError(f"top_k must be > 0 or None, got {self.top_k}")
        if self.zero not in (0, 1):
            raise ValueError(f"zero must be 0 (off) or 1 (shard AdamW moments), got {self.zero}")
        if self.lora is not None:
            parse_lora(self.lora)  # a clear error now, not when the model is built
        _check_choice(self, "base_dtype", BASE_DTYPES)
        if self.base_dtype != "f32" and self.lora is None:
            raise ValueError(
                f"base_dtype {self.base_dtype!r} stores the frozen weights of a LoRA run; "
                "without --lora every weight trains in f32: add --lora or drop --base-dtype"
            )

    @property
    def lora_config(self) -> LoraConfig | None:
        """The parsed ``lora`` setting (None: every weight trains)."""
        return parse_lora(self.lora) if self.lora is not None else None

    @property
    def tokens_per_micro_batch(self) -> int:
        """Tokens in one forward/backward pass (B * T)."""
        return self.batch_size * self.block_size

    @property
    def grad_accum_steps(self) -> int:
        """Micro-batches accumulated per optimizer step to reach tokens_per_step."""
        return self.accum_steps(1)

    def accum_steps(self, world_size: int) -> int:
        """Micro-batches each of ``world_size`` ranks accumulates per optimizer step so that
        all of them together process tokens_per_step tokens (nanoGPT/llm.c semantics:
        batch_size is per rank, tokens_per_step is the global total)."""
        if self.tokens_per_step is None:
            return 1
        per_pass = self.tokens_per_micro_batch * world_size  # tokens of one pass of all ranks
        if self.tokens_per_step % per_pass != 0:
            raise ValueError(
                f"tokens_per_step ({self.tokens_per_step}) must be a multiple of "
                f"batch_size * block_size * world_size ({self.batch_size} * {self.block_size} "
                f"* {world_size} = {per_pass}); e.g. tokens_per_step="
                f"{_round_to(self.tokens_per_step, per_pass)}, or a batch_size that divides it"
            )
        return self.tokens_per_step // per_pass


def follow_given(base: TrainConfig, given: dict[str, Any], source: str = "preset") -> list[str]:
    """Fill in the schedule settings that follow the ones the user gave, and say how.

    A peak ``lr`` given alone takes ``min_lr`` along (same ratio as in ``base``), and a
    ``max_steps`` given alone below ``base``'s warmup keeps the warmup's fraction; a value
    the user gave is never changed (a contradiction fails validation, naming the fix).
    Updates ``given`` in place; returns one note per value filled in.
    """
    notes = []
    if "lr" in given and "min_lr" not in given and base.lr > 0:
        lr = _coerce(TrainConfig, "lr", given["lr"])
        given["min_lr"] = min_lr = lr * base.min_lr / base.lr
        notes.append(
            f"min_lr {min_lr:g} (keeps the {source}'s min_lr/lr ratio {base.min_lr / base.lr:g}; "
            "--set min_lr=X to choose it)"
        )
    if "max_steps" in given and "warmup_steps" not in given:
        steps = _coerce(TrainConfig, "max_steps", given["max_steps"])
        if base.warmup_steps > steps > 0:
            fraction = base.warmup_steps / base.max_steps
            given["warmup_steps"] = warmup = min(steps, int(steps * fraction))
            notes.append(
                f"warmup_steps {warmup} (the {source}'s {base.warmup_steps} exceeds max_steps "
                f"{steps}; keeps its {fraction:.0%} share; --set warmup_steps=N to choose it)"
            )
    return notes


def field_meanings(cls: type) -> dict[str, str]:
    """The comment beside each dataclass field in its source: the one place a field's
    meaning is written, so help text and code cannot drift apart."""
    meanings: dict[str, str] = {}
    current = None
    for line in inspect.getsource(cls).splitlines():
        field = re.match(r"    (\w+): ", line)
        if field:
            current = field.group(1)
        comment = line.partition("  # ")[2].strip()
        if current and comment and current not in meanings:
            meanings[current] = comment
    return meanings


def settings_help(preset: str | Path) -> str:
    """Every key ``--set`` takes, with the preset's value and a one-line meaning."""
    model, train, tokenizer = load_preset(preset)
    lines = [f"settings of preset {preset} (pyggml-train train --set KEY=VALUE ...):"]
    for section, obj in (("model", model), ("train", train)):
        lines.append(f"{section}:")
        meanings = field_meanings(type(obj))
        for f in dataclasses.fields(obj):
            value = repr(getattr(obj, f.name))
            lines.append(f"  {f.name:<20} {value:<10} {meanings.get(f.name, '')}")
    lines.append(f"tokenizer: {tokenizer!r} ('char' or 'gpt2')")
    lines.append(
        "A key in both sections (block_size) sets both; prefix model. or train. to set one."
    )
    return "\n".join(lines)


def _round_to(value: int, multiple: int) -> int:
    """Nearest positive multiple, to suggest a valid value in error messages."""
    return multiple * max(1, round(value / multiple))


def _check_choice(obj: object, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in choices:
        raise ValueError(
            f"{type(obj).__name__}.{name} must be one of {choices}, got {value!r}; "
            f"e.g. --set {name}={choices[0]}"
        )


def _check_chunk_rows(obj: GPT2Config | LlamaConfig) -> None:
    if obj.loss_chunk_rows < 0:
        raise ValueError(
            f"{type(obj).__name__}.loss_chunk_rows must be >= 0 (0: the loss head in one "
            f"piece), got {obj.loss_chunk_rows}; e.g. --set loss_chunk_rows={LOSS_CHUNK_ROWS}"
        )


def _check_positive(obj: object, name: str) -> None:
    value = getattr(obj, name)
    if value <= 0:
        raise ValueError(f"{type(obj).__name__}.{name} must be > 0, got {value}")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(cls: type, name: str, value: Any) -> Any:
    """Convert value (possibly a CLI string) to the declared type of cls.name, or raise."""
    annotation = _field_types(cls)[name]
    args = typing.get_args(annotation)
    optional = typing.get_origin(annotation) in (Union, types.UnionType) and type(None) in args
    base = next(a for a in args if a is not type(None)) if optional else annotation
    where = f"{cls.__name__}.{name}"
    # "none" spells None only where a field can be None (a str field may take "none")
    spelled_none = isinstance(value, str) and value.lower() in ("none", "null") and base is not str
    if value is None or spelled_none:
        if optional:
            return None
        raise ValueError(f"{where} can't be None; give a {base.__name__}")
    if isinstance(value, str) and base is not str:
        text = value.strip().lower()
        if base is bool:
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{where} expects a bool (true/false), got {value!r}")
        try:
            value = float(text) if base is float else _parse_int(text)
        except ValueError:
            raise ValueError(f"{where} expects {base.__name__}, got {value!r}") from None
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, base) or (base is not bool and isinstance(value, bool)):
        raise ValueError(f"{where} expects {base.__name__}, got {type(value).__name__} {value!r}")
    return value


def _parse_int(text: str) -> int:
    """Parse "128" or an integral float spelling such as "5e4"."""
    try:
        return int(text)
    except ValueError:
        number = float(text)
        if not number.is_integer():
            raise
        return int(number)


def _build(cls: type, values: dict[str, Any], source: str) -> Any:
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} field(s) {unknown} in {source}; "
            f"valid fields: {', '.join(valid)}"
        )
    return cls(**{k: _coerce(cls, k, v) for k, v in values.items()})


def train_config(values: dict[str, Any], source: str) -> TrainConfig:
    """A TrainConfig from field values, strings (CLI) parsed to each field's type."""
    return _build(TrainConfig, values, source)


def list_presets() -> list[str]:
    """Names of the bundled presets (file stems in pyggml_train/presets/)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def _preset_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"preset file {path} not found")
        return path
    candidate = PRESET_DIR / f"{name_or_path}.json"
    if not candidate.is_file():
        raise ValueError(
            f"unknown preset {name_or_path!r}; available: {', '.join(list_presets())} "
            "(or a path to a .json file)"
        )
    return candidate


def _split_overrides(
    overrides: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """Route each override to the model and/or train section.

    "model.x" / "train.x" target one section; a bare name goes to every section that
    has it (so ``block_size`` sets both the model context and the training length).
    """
    model_fields = {f.name for f in dataclasses.fields(GPT2Config)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    model: dict[str, Any] = {}
    train: dict[str, Any] = {}
    tokenizer = None
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        if name == "tokenizer" and not section:
            tokenizer = value
        elif section == "model" or (not section and name in model_fields):
            model[name] = value
        if section == "train" or (not section and name in train_fields):
            train[name] = value
        if section not in ("", "model", "train") or (
            not section and name not in model_fields | train_fields | {"tokenizer"}
        ):
            raise ValueError(
                f"unknown override {key!r}; valid model fields: {', '.join(sorted(model_fields))}; "
                f"valid train fields: {', '.join(sorted(train_fields))}; or 'tokenizer'"
            )
    return model, train, tokenizer


def _from_dict(
    data: dict[str, Any], source: str, overrides: dict[str, Any]
) -> tuple[GPT2Config | LlamaConfig, TrainConfig, str]:
    unknown = sorted(set(data) - {"model", "train", "tokenizer"})
    if unknown:
        raise ValueError(
            f"unknown top-level key(s) {unknown} in {source}; "
            "expected 'model', 'train', 'tokenizer'"
        )
    model_over, train_over, tok_over = _split_overrides(overrides)
    model_values = {**data.get("model", {}), **model_over}
    # a Llama-family config names its model_type; GPT-2's has no such field
    family = LLAMA_CONFIGS.get(model_values.get("model_type"), LlamaConfig)
    family = family if "model_type" in model_values else GPT2Config
    model = _build(family, model_values, source)
    train = _build(TrainConfig, {**data.get("train", {}), **train_over}, source)
    tokenizer = tok_over if tok_over is not None else data.get("tokenizer", "gpt2")
    if tokenizer not in TOKENIZERS + FILE_TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {tokenizer!r} in {source}")
    if train.block_size > model.block_size:
        raise ValueError(
            f"train.block_size ({train.block_size}) exceeds the model context model.block_size "
            f"({model.block_size}); lower train.block_size or raise model.block_size"
        )
    return model, train, tokenizer


def load_preset(name_or_path: str | Path, **overrides: Any) -> tuple[GPT2Config, TrainConfig, str]:
    """Load a bundled preset by name (or a JSON file by path) and apply typed overrides.

    Returns (model config, train config, tokenizer name). Overrides are field names
    (``n_layer=2``), optionally qualified (``**{"train.block_size": 64}``); strings are
    parsed to the field type so CLI ``key=value`` pairs can be passed through.
    """
    path = _preset_path(name_or_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"preset {path} is not valid JSON (truncated or garbled?): {exc}"
        ) from None
    return _from_dict(data, str(path), overrides)


def to_json(model: GPT2Config | LlamaConfig, train: TrainConfig, tokenizer: str) -> str:
    """Serialise the three settings in the preset file format."""
    return json.dumps(
        {
            "model": dataclasses.asdict(model),
            "train": dataclasses.asdict(train),
            "tokenizer": tokenizer,
        },
        indent=2,
    )


def from_json(text: str) -> tuple[GPT2Config | LlamaConfig, TrainConfig, str]:
    """Inverse of to_json (also reads preset files' contents)."""
    return _from_dict(json.loads(text), "JSON text", {})


# TrainConfig fields a resumed run may change: the schedule and its length, the intervals,
# sampling, and where it runs. The rest (batch, data, optimizer, seed) would make the resumed
# run another run, and the model's shape is the checkpoint's.
RESUMABLE = (
    "max_steps",
    "lr",
    "min_lr",
    "warmup_steps",
    "eval_interval",
    "eval_steps",
    "log_interval",
    "checkpoint_interval",
    "sample_interval",
    "sample_tokens",
    "temperature",
    "top_k",
    "skip_nonfinite",
    "threads",
    "device",
    "zero",
    "overlap",
)


def resumed_config(
    model: GPT2Config | None,
    train: TrainConfig,
    tokenizer: str,
    overrides: dict[str, Any],
    source: str,
) -> tuple[TrainConfig, list[str]]:
    """A checkpoint's TrainConfig with the overrides a resume may apply (:data:`RESUMABLE`),
    and a line per field that changed. Any other override that differs from the checkpoint
    is refused by name (ValueError); one that repeats the checkpoint's value is fine."""
    model_over, train_over, tok_over = _split_overrides(overrides)
    refused = []
    if tok_over is not None and tok_over != tokenizer:
        refused.append(f"tokenizer ({tokenizer} -> {tok_over})")
    for name, value in model_over.items():
        if name in train_over:
            continue  # e.g. block_size: judged as the train field below
        current = getattr(model, name) if model is not None else None
        if model is None or _coerce(GPT2Config, name, value) != current:
            refused.append(f"{name} (the model's shape is the checkpoint's)")
    changes: dict[str, Any] = {}
    for name, value in train_over.items():
        new, old = _coerce(TrainConfig, name, value), getattr(train, name)
        if new == old:
            continue
        if name in RESUMABLE:
            changes[name] = new
        else:
            refused.append(f"{name} ({old} -> {new})")
    if refused:
        raise ValueError(
            f"a resumed run can't change {', '.join(refused)}; it may change "
            f"{', '.join(RESUMABLE)}. Start a new run (another --out-dir) to change the rest"
        )
    values = {**dataclasses.asdict(train), **changes}
    resumed = _build(TrainConfig, values, source)
    return resumed, [f"{k}: {getattr(train, k)} -> {v}" for k, v in changes.items()]
