"""Every way to get a Model: from a config, a spec, our checkpoint, a Hugging Face
directory, a GGUF or an llm.c file.

Formats (io/) read weights, configs and tokenizers; the spec compiler (spec/) builds
spec models; this module puts them together, so the trainer, ``sample``, ``export``,
``--init-from`` and the studio all load models the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import ggml as G
from .adapters import LoraConfig, LoraWeights, from_lora_state, module_of, select_targets
from .checkpoint import Checkpoint, load_checkpoint
from .config import GPT2Config, LlamaConfig, TrainConfig
from .gpt2 import GPT2
from .io import ModelFile, detect_format, read_model_file
from .io.lora import adaptable_weights, check_adapter
from .io.lora_gguf import load_gguf_lora
from .io.peft import CONFIG_FILE as PEFT_CONFIG
from .io.peft import TENSOR_FILE as PEFT_TENSORS
from .io.peft import is_peft_dir, load_peft
from .llama import Llama
from .model import Model
from .sample import Sampler, decoder_for
from .spec import SpecError, as_gpt2, build_model, parse_spec
from .tokenizer import Tokenizer, tokenizer_from_dict


def from_config(
    config: GPT2Config | LlamaConfig,
    params: dict[str, np.ndarray] | None = None,
    ctx: G.Context | None = None,
    seed: int = 0,
    lora: LoraConfig | None = None,
    base_dtype: str = "f32",
) -> Model:
    """The model family a config describes (GPT-2, Llama or Qwen2), with ``params`` or
    initialised from ``seed``; ``lora``: LoRA adapters on the frozen base, stored in
    ``base_dtype`` (model.Model)."""
    family = Llama if isinstance(config, LlamaConfig) else GPT2
    return family(config, params=params, ctx=ctx, seed=seed, lora=lora, base_dtype=base_dtype)


def new_model(
    config: GPT2Config | LlamaConfig, train_config: TrainConfig, vocab_size: int
) -> Model:
    """A freshly initialised model of any family for a run: on its device and threads, from
    its seed, with the run's LoRA adapters if it has them; a config that leaves the
    vocabulary open takes ``vocab_size`` (the tokenizer's)."""
    if config.vocab_size is None:
        config = config.with_vocab_size(vocab_size)
    ctx = G.Context(train_config.device, train_config.threads)
    tc = train_config
    return from_config(config, ctx=ctx, seed=tc.seed, lora=tc.lora_config, base_dtype=tc.base_dtype)


def _with_weights(
    config: GPT2Config | LlamaConfig | None,
    spec: dict | None,
    params: dict[str, np.ndarray],
    tokenizer: Tokenizer | None,
    ctx: G.Context,
    **kwargs,
) -> Model:
    """The model a file describes, by its family's config or by the JSON of its spec, set
    to ``params``, with the file's tokenizer (a spec's vocabulary is that tokenizer's)."""
    if spec is not None and kwargs.get("lora") is not None:
        raise ValueError(
            "LoRA adapts GPT-2 and Llama-family models; this file is a model spec's: "
            "train it without --lora"
        )
    if spec is not None:
        model = build_model(parse_spec(spec, vocab_size=tokenizer.vocab_size), ctx, params=params)
    else:
        model = from_config(config, params, ctx, **kwargs)
    model.tokenizer = tokenizer
    return model


def from_checkpoint(ckpt: Checkpoint, ctx: G.Context, lora: LoraConfig | None = None) -> Model:
    """The model of a training checkpoint, a spec's or a family's, with its weights (and
    its LoRA adapters, when the run trained some); ``lora``: room for other adapters on
    the checkpoint's weights (the caller loads them)."""
    tokenizer = tokenizer_from_dict(ckpt.tokenizer)
    own = ckpt.train_config.lora_config
    if own is not None and lora is not None:
        raise ValueError(
            "this checkpoint's run trained LoRA adapters already; to use other adapters, "
            "give a base without them (e.g. the checkpoint --init-from started from)"
        )
    lora = lora or own
    kwargs = {"lora": lora, "base_dtype": ckpt.train_config.base_dtype} if lora is not None else {}
    return _with_weights(ckpt.model_config, ckpt.spec, ckpt.params, tokenizer, ctx, **kwargs)


def adapter_from_checkpoint(path: Path, config: GPT2Config | LlamaConfig) -> LoraWeights:
    """The LoRA adapters a run of ours trained, from its checkpoint."""
    ckpt = load_checkpoint(path)
    lora = ckpt.train_config.lora_config
    if lora is None:
        raise ValueError(
            f"{path} is a checkpoint of a run without LoRA (every weight trained), not an "
            "adapter; fine-tune from it with --init-from"
        )
    return from_lora_state(lora, ckpt.params)


# an adapter file's kind -> its reader (our checkpoints; io/ for the foreign formats):
# --lora-from, sampling and export read adapters through read_adapter, which picks here
ADAPTER_READERS: dict[str, Callable[[Path, GPT2Config | LlamaConfig], LoraWeights]] = {
    "checkpoint": adapter_from_checkpoint,
    "gguf": load_gguf_lora,
    "peft": lambda path, _config: load_peft(path),  # PEFT names the base's modules
}


def read_adapter(path: str | Path, config: GPT2Config | LlamaConfig) -> LoraWeights:
    """The LoRA adapter in ``path`` for the base ``config`` describes, whatever file it is
    (:data:`ADAPTER_READERS`): a LoRA run's checkpoint, a llama.cpp adapter GGUF, or a PEFT
    directory (or either of its two files); refused if it does not fit the base."""
    path = Path(path)
    if path.name in (PEFT_CONFIG, PEFT_TENSORS):
        path = path.parent
    fmt = "peft" if is_peft_dir(path) else detect_format(path)
    if fmt not in ADAPTER_READERS:
        raise ValueError(
            f"{path} is a {fmt} model file, not a LoRA adapter; adapters are read from a LoRA "
            f"run's checkpoint, a llama.cpp adapter GGUF or a PEFT directory ({PEFT_CONFIG} "
            f"+ {PEFT_TENSORS})"
        )
    lora = ADAPTER_READERS[fmt](path, config)
    check_adapter(lora, config, str(path))
    return lora


def load_model(path: str | Path, ctx: G.Context | None = None, **kwargs) -> Model:
    """The model in any file we read, with its weights: a training checkpoint (a spec's
    too), a Hugging Face directory (GPT-2, Llama, Qwen2) or .safetensors, an llm.c .bin, a
    GPT-2 GGUF (f32/f16/q8_0, dequantized). ``model.tokenizer`` is the file's tokenizer,
    None where it carries none. kwargs go to the family's constructor (e.g. ``seed``)."""
    f = read_model_file(path)
    return _with_weights(f.config, f.spec, f.params, f.tokenizer, ctx or G.Context("cpu"), **kwargs)


def gpt2_weights(path: str | Path) -> ModelFile:
    """A model file's weights under its family's HF names with its config (GPT-2's, or a
    Llama's): what export and ``--init-from`` take. A model-spec checkpoint qualifies if
    its spec is GPT-2-shaped."""
    loaded = read_model_file(path)
    if loaded.spec is None:
        return loaded
    try:
        config, names = as_gpt2(parse_spec(loaded.spec, vocab_size=loaded.tokenizer.vocab_size))
    except SpecError as e:
        raise ValueError(
            f"{path} is a model-spec checkpoint that export and --init-from can't read as GPT-2: "
            f"{e.message}"
        ) from None
    params: dict[str, np.ndarray] = {names[k]: v for k, v in loaded.params.items()}
    return ModelFile(params, config, loaded.tokenizer, loaded.format)


def adapter_config(weights: LoraWeights, config: GPT2Config | LlamaConfig) -> LoraConfig:
    """The LoraConfig that builds, on the base ``config`` describes, a model with exactly
    ``weights``' adapters: the file's when its targets select them (a PEFT file's
    target_modules may match more layers than it adapts), else the adapted modules' names."""
    linear = list(adaptable_weights(config))
    try:
        if set(select_targets(linear, weights.config.targets)) == set(weights.a):
            return weights.config
    except ValueError:  # targets naming no layer of this base (e.g. another family's)
        pass
    adapted = tuple(module_of(n) for n in linear if n in weights.a)
    return dataclasses.replace(weights.config, targets=adapted)


def load_sampler(
    path: str | Path,
    threads: int | None = None,
    device: str | None = None,
    lora_from: str | Path | None = None,
) -> Sampler:
    """A Sampler for any model file we read that carries a tokenizer, with the LoRA
    adapter in ``lora_from`` if given. A training checkpoint's device and threads are the
    defaults."""
    path = Path(path)
    ckpt = load_checkpoint(path) if detect_format(path) == "checkpoint" else None
    loaded = read_model_file(path) if ckpt is None else None
    base = ckpt.model_config if ckpt is not None else loaded.config
    if lora_from is not None and base is None:
        raise ValueError(f"{path} is a model spec's; LoRA adapts GPT-2 and Llama-family models")
    adapter = read_adapter(lora_from, base) if lora_from is not None else None
    lora = {"lora": adapter_config(adapter, base)} if adapter is not None else {}
    if ckpt is not None:
        tc = ckpt.train_config
        model = from_checkpoint(ckpt, G.Context(device or tc.device, threads or tc.threads), **lora)
    else:
        f, ctx = loaded, G.Context(device or "cpu", threads)
        model = _with_weights(f.config, f.spec, f.params, f.tokenizer, ctx, **lora)
    if adapter is not None:
        model.load_lora(adapter)
    if model.tokenizer is None:
        raise ValueError(
            f"{path} carries no tokenizer, so its text can't be encoded; sample from a file "
            "that has one (our checkpoint, a GGUF, an HF directory with tokenizer files)"
        )
    return Sampler(model, model.tokenizer, decoder_for(model))
