"""LoRA adapters as data beside a frozen base: what they are, apart from any model or file.

An adapter is named after the base's tensors (their Hugging Face names), so the same
object is trained by a model, written as GGUF or PEFT, read back, and merged, without any
of those places knowing the others. Orientation follows PEFT: ``A`` is (rank, in_features)
and ``B`` is (out_features, rank); the update of a weight W (out_features, in_features) is
``scale * B @ A`` with ``scale = alpha / rank``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LoraConfig:
    """Which linear layers get an adapter, and how large and how strong it is."""

    rank: int = 16
    alpha: float = 32.0
    targets: tuple[str, ...] = ()  # module names or short aliases; empty = the family's default
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {self.rank}")
        if self.alpha <= 0:
            raise ValueError(f"LoRA alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


@dataclass
class LoraWeights:
    """Trained (or loaded) adapter matrices, keyed by the base weight's HF name."""

    config: LoraConfig
    a: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (rank, in_features)
    b: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (out_features, rank)

    def __post_init__(self) -> None:
        if self.a.keys() != self.b.keys():
            missing = sorted(self.a.keys() ^ self.b.keys())
            raise ValueError(f"LoRA A and B must name the same weights; unpaired: {missing}")
        for name, a in self.a.items():
            b = self.b[name]
            r = self.config.rank
            if a.ndim != 2 or b.ndim != 2 or a.shape[0] != r or b.shape[1] != r:
                raise ValueError(
                    f"LoRA {name}: A must be (rank={r}, in) and B (out, rank={r}); "
                    f"got A {a.shape}, B {b.shape}"
                )

    def delta(self, name: str) -> np.ndarray:
        """The update to add to the base weight ``name``: scale * B @ A, (out, in)."""
        return self.config.scale * (
            self.b[name].astype(np.float64) @ self.a[name].astype(np.float64)
        )


# Short names for the linear layers of the families we train: each stands for the module
# names it lists, of whichever family has them (GPT-2 fuses q, k and v in one c_attn).
ALIASES: dict[str, tuple[str, ...]] = {
    "q": ("q_proj",),
    "k": ("k_proj",),
    "v": ("v_proj",),
    "o": ("o_proj", "attn.c_proj"),
    "qkv": ("c_attn",),
    "gate": ("gate_proj",),
    "up": ("up_proj", "mlp.c_fc"),
    "down": ("down_proj", "mlp.c_proj"),
}
# module names that no default adapts: the LM head is as large as the vocabulary
NOT_BY_DEFAULT = ("lm_head",)
A_SUFFIX, B_SUFFIX = ".lora_A.weight", ".lora_B.weight"


def module_of(weight_name: str) -> str:
    """``model.layers.0.self_attn.q_proj.weight`` -> ``model.layers.0.self_attn.q_proj``."""
    return weight_name.removesuffix(".weight")


def matches(module: str, target: str) -> bool:
    """PEFT's rule: a target names a module by its whole name or by a dotted suffix."""
    return module == target or module.endswith("." + target)


def select_targets(weights: list[str], targets: tuple[str, ...]) -> list[str]:
    """The linear weights (HF names, in model order) that ``targets`` adapt.

    Each target is a module name (``q_proj``, ``mlp.c_proj``, ``model.layers.0.mlp.up_proj``)
    or an alias of :data:`ALIASES`; none (an empty tuple) or ``all`` means every linear layer
    but the LM head. A target that names no layer is an error naming the ones there are."""
    modules = {w: module_of(w) for w in weights}
    if not targets or "all" in targets:
        return [w for w, m in modules.items() if m not in NOT_BY_DEFAULT]
    chosen: set[str] = set()
    for target in targets:
        names = ALIASES.get(target, (target,))
        hits = {w for w, m in modules.items() if any(matches(m, n) for n in names)}
        if not hits:
            short = sorted({m.rpartition(".")[2] for m in modules.values()})
            raise ValueError(
                f"LoRA target {target!r} names no linear layer of this model; its linear "
                f"layers are {', '.join(short)} (aliases: {', '.join(ALIASES)}, or 'all')"
            )
        chosen |= hits
    return [w for w in weights if w in chosen]


def parse_lora(text: str) -> LoraConfig:
    """``rank=16,alpha=32,targets=q,k,v,o,dropout=0.05`` as a LoraConfig (what ``--lora``
    and the ``lora`` config field take). Items without ``=`` continue the targets list."""
    fields: dict[str, list[str]] = {}
    key = None
    for item in (s.strip() for s in text.split(",")):
        name, sep, value = item.partition("=")
        if sep:
            key = name.strip()
            if key not in ("rank", "alpha", "targets", "dropout"):
                raise ValueError(
                    f"--lora: unknown key {key!r} in {text!r}; expected rank, alpha, targets, "
                    "dropout, e.g. rank=16,alpha=32,targets=q,k,v,o,dropout=0.05"
                )
            fields[key] = [value.strip()] if value.strip() else []
        elif key == "targets" and item:
            fields[key].append(item)
        elif item:
            raise ValueError(
                f"--lora: {item!r} in {text!r} has no '=' and follows no targets list; "
                "write KEY=VALUE pairs, e.g. rank=16,alpha=32,targets=q,v"
            )
    try:
        rank = int(fields["rank"][0]) if "rank" in fields else LoraConfig.rank
        alpha = float(fields["alpha"][0]) if "alpha" in fields else 2.0 * rank
        dropout = float(fields["dropout"][0]) if "dropout" in fields else 0.0
    except (ValueError, IndexError):
        raise ValueError(
            f"--lora: rank must be an integer and alpha, dropout numbers; got {text!r}"
        ) from None
    return LoraConfig(rank, alpha, tuple(fields.get("targets", ())), dropout)


def format_lora(config: LoraConfig) -> str:
    """The text :func:`parse_lora` reads back as ``config``."""
    text = f"rank={config.rank},alpha={config.alpha:g},dropout={config.dropout:g}"
    return text + (f",targets={','.join(config.targets)}" if config.targets else "")


def lora_state(weights: LoraWeights) -> dict[str, np.ndarray]:
    """The adapter matrices under the names of a model's state dict (and of PEFT's, less
    its ``base_model.model.`` prefix): ``{module}.lora_A.weight``, ``{module}.lora_B.weight``."""
    state = {}
    for name in weights.a:
        state[module_of(name) + A_SUFFIX] = weights.a[name]
        state[module_of(name) + B_SUFFIX] = weights.b[name]
    return state


def lora_names(state: dict[str, np.ndarray]) -> set[str]:
    """The names of a state dict's adapter matrices (see :func:`lora_state`)."""
    return {n for n in state if n.endswith((A_SUFFIX, B_SUFFIX))}


def from_lora_state(config: LoraConfig, state: dict[str, np.ndarray]) -> LoraWeights:
    """The adapters among a state dict's arrays (inverse of :func:`lora_state`); the other
    arrays (a base's weights) are left out."""
    a = {k.removesuffix(A_SUFFIX) + ".weight": v for k, v in state.items() if k.endswith(A_SUFFIX)}
    b = {k.removesuffix(B_SUFFIX) + ".weight": v for k, v in state.items() if k.endswith(B_SUFFIX)}
    return LoraWeights(config, a, b)
