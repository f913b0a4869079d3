"""GPT-2 checkpoints in Hugging Face layout: reading, writing, inferring the config.

HF's GPT-2 stores Linear weights as Conv1D, i.e. (in, out), so a layer is
``x @ W + b``. The ggml model, the numpy reference and checkpoints all speak this one
naming so weights can move between them (and to/from HF files) without renames. The
names, shapes and init come from GPT-2's layers (gpt2.GPT2Net, layers.Param); the LM
head is tied to ``transformer.wte.weight`` and has no tensor of its own.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .config import GPT2Config
from .gpt2 import PREFIX, GPT2Net
from .layers import init_values
from .safetensors_io import load_safetensors, save_safetensors

# buffers HF stores in some GPT-2 files that are not parameters (causal mask, -inf fill)
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
# every GPT-2 size (124M..1.5B) uses 64-wide heads; lets n_head be inferred from C
GPT2_HEAD_DIM = 64


def param_shapes(config: GPT2Config) -> dict[str, tuple[int, ...]]:
    """All parameter names (in HF order) and shapes for config; vocab rows are unpadded."""
    return {p.name: p.shape for p in GPT2Net(config).params()}


def param_count(config: GPT2Config) -> int:
    """Number of trainable parameters (tied lm_head counted once)."""
    return sum(math.prod(s) for s in param_shapes(config).values())


def init_params(config: GPT2Config, seed: int = 0) -> dict[str, np.ndarray]:
    """GPT-2 initialisation, float32, HF layout (all at once; see iter_init_params)."""
    return dict(iter_init_params(config, seed))


def iter_init_params(config: GPT2Config, seed: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """GPT-2 initialisation one tensor at a time (each layer's Param.init, layers.py):
    weights and embeddings ~ N(0, 0.02), the residual projections (attn.c_proj,
    mlp.c_proj) 0.02/sqrt(2*n_layer), biases 0, LayerNorm weight 1."""
    for p, value in init_values(GPT2Net(config).params(), seed):
        yield p.name, value


def _canonical(name: str) -> str:
    return name if name.startswith(PREFIX) or name == "lm_head.weight" else PREFIX + name


def infer_config(tensors: dict[str, np.ndarray], source: str = "checkpoint") -> GPT2Config:
    """Read a GPT2Config off tensor shapes (n_head from GPT-2's 64-wide heads)."""
    for needed in ("wte.weight", "wpe.weight"):
        if PREFIX + needed not in tensors:
            raise ValueError(f"{source} has no {PREFIX}{needed}; is this a GPT-2 checkpoint?")
    vocab, c = tensors[PREFIX + "wte.weight"].shape
    layers = {int(m.group(1)) for n in tensors if (m := re.match(r"transformer\.h\.(\d+)\.", n))}
    if c % GPT2_HEAD_DIM != 0:
        raise ValueError(
            f"can't infer n_head for n_embd={c} (not a multiple of GPT-2's head width "
            f"{GPT2_HEAD_DIM}); pass config= explicitly"
        )
    return GPT2Config(
        vocab_size=vocab,
        block_size=tensors[PREFIX + "wpe.weight"].shape[0],
        n_layer=max(layers) + 1 if layers else 0,
        n_head=c // GPT2_HEAD_DIM,
        n_embd=c,
    )


def _config_from_json(path: Path) -> GPT2Config:
    """Model config from an HF config.json (keys n_ctx/n_positions, layer_norm_epsilon)."""
    hf = json.loads(path.read_text())
    return GPT2Config(
        vocab_size=hf["vocab_size"],
        block_size=hf.get("n_positions", hf.get("n_ctx")),
        n_layer=hf["n_layer"],
        n_head=hf["n_head"],
        n_embd=hf["n_embd"],
        ln_eps=hf.get("layer_norm_epsilon", 1e-5),
    )


def load_hf_checkpoint(
    path: str | Path, config: GPT2Config | None = None
) -> tuple[dict[str, np.ndarray], GPT2Config]:
    """Load GPT-2 weights from a local model.safetensors (file, or a directory holding it).

    Names may lack the ``transformer.`` prefix; attention mask buffers are skipped and an
    ``lm_head.weight`` is accepted only when it equals wte (GPT-2 ties them). Without
    config, a ``config.json`` beside the file is used, else the shapes decide.
    Returns float32 arrays keyed by prefixed HF names, and the config.
    """
    path = Path(path)
    file = path / "model.safetensors" if path.is_dir() else path
    raw, _ = load_safetensors(file)
    tensors: dict[str, np.ndarray] = {}
    for name, value in raw.items():
        if not name.endswith(_IGNORED_SUFFIXES):
            tensors[_canonical(name)] = value.astype(np.float32, copy=False)
    lm_head = tensors.pop("lm_head.weight", None)
    if config is None:
        config_json = file.parent / "config.json"
        config = _config_from_json(config_json) if config_json.is_file() else None
        config = config or infer_config(tensors, str(file))
    expected = param_shapes(config)
    for name, shape in expected.items():
        if name not in tensors:
            raise ValueError(f"{file}: tensor {name} is missing (expected shape {shape})")
        if tensors[name].shape != shape:
            raise ValueError(
                f"{file}: tensor {name} has shape {tensors[name].shape}, expected {shape} "
                f"for {config}"
            )
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise ValueError(f"{file}: unexpected tensors {extra[:5]} for {config}")
    if lm_head is not None and not np.array_equal(lm_head, tensors[PREFIX + "wte.weight"]):
        raise ValueError(
            f"{file}: lm_head.weight differs from transformer.wte.weight, but GPT-2 ties them; "
            "untied heads are not supported"
        )
    return {name: tensors[name] for name in expected}, config


def save_hf_checkpoint(path: str | Path, params: dict[str, np.ndarray], config: GPT2Config) -> Path:
    """Write params as an HF-compatible model.safetensors (+ config.json for a directory).

    path ending in ``.safetensors`` is the file; otherwise it is a directory that gets
    ``model.safetensors`` and an HF-style ``config.json``. Returns the tensor file path.
    """
    path = Path(path)
    expected = param_shapes(config)
    missing = sorted(set(expected) - set(params))
    if missing:
        raise ValueError(f"params lack {missing[:5]} required for {config}")
    for name, shape in expected.items():
        if params[name].shape != shape:
            raise ValueError(f"{name} has shape {params[name].shape}, expected {shape}")
    tensors = {name: np.asarray(params[name], dtype=np.float32) for name in expected}
    if path.suffix == ".safetensors":
        file = path
    else:
        path.mkdir(parents=True, exist_ok=True)
        file = path / "model.safetensors"
        (path / "config.json").write_text(json.dumps(_hf_config_dict(config), indent=2))
    save_safetensors(file, tensors, metadata={"format": "pt"})
    return file


def _hf_config_dict(config: GPT2Config) -> dict[str, object]:
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "vocab_size": config.require_vocab_size(),
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "layer_norm_epsilon": config.ln_eps,
        "tie_word_embeddings": True,
    }
