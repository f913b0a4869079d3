"""Every way to get a Model: from a config, a spec, our checkpoint, a Hugging Face
directory, a GGUF or an llm.c file.

Formats (io/) read weights, configs and tokenizers; the spec compiler (spec/) builds
spec models; this module puts them together, so the trainer, ``sample``, ``export``,
``--init-from`` and the studio all load models the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import ggml as G
from .checkpoint import Checkpoint, load_checkpoint
from .config import GPT2Config, LlamaConfig, TrainConfig
from .gpt2 import GPT2
from .io import ModelFile, detect_format, read_model_file
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
) -> Model:
    """The model family a config describes (GPT-2, Llama or Qwen2), with ``params`` or
    initialised from ``seed``."""
    family = Llama if isinstance(config, LlamaConfig) else GPT2
    return family(config, params=params, ctx=ctx, seed=seed)


def new_model(
    config: GPT2Config | LlamaConfig, train_config: TrainConfig, vocab_size: int
) -> Model:
    """A freshly initialised model of any family for a run: on its device and threads, from
    its seed; a config that leaves the vocabulary open takes ``vocab_size`` (the tokenizer's)."""
    if config.vocab_size is None:
        config = config.with_vocab_size(vocab_size)
    ctx = G.Context(train_config.device, train_config.threads)
    return from_config(config, ctx=ctx, seed=train_config.seed)


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
    if spec is not None:
        model = build_model(parse_spec(spec, vocab_size=tokenizer.vocab_size), ctx, params=params)
    else:
        model = from_config(config, params, ctx, **kwargs)
    model.tokenizer = tokenizer
    return model


def from_checkpoint(ckpt: Checkpoint, ctx: G.Context) -> Model:
    """The model of a training checkpoint, a spec's or a family's, with its weights."""
    tokenizer = tokenizer_from_dict(ckpt.tokenizer)
    return _with_weights(ckpt.model_config, ckpt.spec, ckpt.params, tokenizer, ctx)


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


def load_sampler(
    path: str | Path, threads: int | None = None, device: str | None = None
) -> Sampler:
    """A Sampler for any model file we read that carries a tokenizer. A training
    checkpoint's device and threads are the defaults."""
    path = Path(path)
    if detect_format(path) == "checkpoint":
        ckpt = load_checkpoint(path)
        tc = ckpt.train_config
        model = from_checkpoint(ckpt, G.Context(device or tc.device, threads or tc.threads))
    else:
        ctx = G.Context(device or "cpu", threads)
        model = load_model(path, ctx)
    if model.tokenizer is None:
        raise ValueError(
            f"{path} carries no tokenizer, so its text can't be encoded; sample from a file "
            "that has one (our checkpoint, a GGUF, an HF directory with tokenizer files)"
        )
    return Sampler(model, model.tokenizer, decoder_for(model))
