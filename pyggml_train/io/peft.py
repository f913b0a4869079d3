"""LoRA adapters in PEFT's format: a directory with ``adapter_config.json`` and
``adapter_model.safetensors``, which ``peft.PeftModel.from_pretrained`` puts on the
transformers model of the base.

Facts carried over from PEFT: tensors are named ``base_model.model.<module>.lora_A.weight``
(and ``lora_B``) after the module's name in the transformers model, A is (rank, in) and
B (out, rank) for Linear and GPT-2's Conv1D alike (``fan_in_fan_out`` only tells PEFT that
the base weight is stored (in, out)); the scale is ``lora_alpha / r``. Variants that change
that arithmetic (rsLoRA, DoRA, per-module ranks, trained biases) are refused by name.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..adapters import (
    A_SUFFIX,
    B_SUFFIX,
    LoraConfig,
    LoraWeights,
    from_lora_state,
    lora_state,
    module_of,
)
from ..atomic import atomic_dir
from ..config import GPT2Config, LlamaConfig
from .lora import adaptable_weights, check_adapter
from .safetensors import load_safetensors, save_safetensors

CONFIG_FILE = "adapter_config.json"
TENSOR_FILE = "adapter_model.safetensors"
PREFIX = "base_model.model."  # before our state names (adapters.lora_state)
# settings whose non-default value changes the update beyond scale * B @ A
_REFUSED = {
    "use_rslora": False,
    "use_dora": False,
    "rank_pattern": {},
    "alpha_pattern": {},
    "bias": "none",
    "lora_bias": False,
    "modules_to_save": None,
    "target_parameters": None,
}


def _target_modules(lora: LoraWeights, config: GPT2Config | LlamaConfig) -> list[str]:
    """PEFT's target_modules: the adapted modules' short names (q_proj, c_attn) when the
    adapter covers every weight of those names, else each module's full name."""
    modules = sorted(module_of(n) for n in lora.a)
    leaves = {m.rsplit(".", 1)[-1] for m in modules}
    covered = sorted(module_of(n) for n in adaptable_weights(config) if n.split(".")[-2] in leaves)
    return sorted(leaves) if covered == modules else modules


def save_peft(
    path: str | Path,
    lora: LoraWeights,
    config: GPT2Config | LlamaConfig,
    base_model: str | None = None,
) -> Path:
    """Write ``lora`` as a PEFT adapter directory for the base ``config`` describes;
    atomically. ``base_model``: what PEFT records as ``base_model_name_or_path``."""
    path = Path(path)
    check_adapter(lora, config, str(path))
    settings = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": lora.config.rank,
        "lora_alpha": lora.config.alpha,
        "lora_dropout": lora.config.dropout,
        "target_modules": _target_modules(lora, config),
        "fan_in_fan_out": isinstance(config, GPT2Config),  # Conv1D weights are (in, out)
        "inference_mode": True,
        **_REFUSED,
    }
    tensors = {PREFIX + k: np.asarray(v, np.float32) for k, v in lora_state(lora).items()}
    with atomic_dir(path) as tmp:
        save_safetensors(tmp / TENSOR_FILE, tensors, {"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(settings, indent=2), encoding="utf-8")
    return path


def is_peft_dir(path: str | Path) -> bool:
    """Whether ``path`` is a PEFT adapter directory (it holds adapter_config.json)."""
    return (Path(path) / CONFIG_FILE).is_file()


def load_peft(path: str | Path) -> LoraWeights:
    """The LoRA adapter of a PEFT directory (float32, keyed by the base's HF names)."""
    path = Path(path)
    config_file, tensor_file = path / CONFIG_FILE, path / TENSOR_FILE
    for needed in (config_file, tensor_file):
        if not needed.is_file():
            raise FileNotFoundError(
                f"{needed} not found: a PEFT adapter directory holds {CONFIG_FILE} and "
                f"{TENSOR_FILE} (PeftModel.save_pretrained writes both)"
            )
    settings = json.loads(config_file.read_text(encoding="utf-8"))
    if settings.get("peft_type") != "LORA":
        raise ValueError(f"{config_file}: peft_type is {settings.get('peft_type')!r}, not 'LORA'")
    for key, plain in _REFUSED.items():
        if settings.get(key) not in (plain, None, {}, []):  # absent, null or empty: plain
            raise ValueError(
                f"{config_file}: {key} = {settings[key]!r} is not supported (expected "
                f"{plain!r}): only plain LoRA, scale lora_alpha / r, reads into LoraWeights"
            )
    tensors, _ = load_safetensors(tensor_file)
    state = {}
    for key, value in tensors.items():
        if key.endswith(".base_layer.weight"):
            raise ValueError(
                f"{tensor_file}: holds a copy of the base weight {key!r} (PEFT saves one when "
                "target_modules name lm_head or an embedding); only the adapter is read, so "
                "save it with save_pretrained(..., save_embedding_layers=False)"
            )
        if not key.startswith(PREFIX) or not key.endswith((A_SUFFIX, B_SUFFIX)):
            raise ValueError(
                f"{tensor_file}: tensor {key!r} is not {PREFIX}<module>{A_SUFFIX} or {B_SUFFIX}"
            )
        state[key.removeprefix(PREFIX)] = value.astype(np.float32)
    targets = settings.get("target_modules") or ()
    lora_config = LoraConfig(
        rank=int(settings["r"]),
        alpha=float(settings["lora_alpha"]),
        targets=(targets,) if isinstance(targets, str) else tuple(sorted(targets)),  # str: regex
        dropout=float(settings.get("lora_dropout") or 0.0),
    )
    try:
        return from_lora_state(lora_config, state)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
