"""Training checkpoints: named arrays plus JSON metadata in one .npz, written atomically.

Everything needed to resume exactly lives in one file: parameters, AdamW moments,
the step, the data loader's position and RNG, the configs and the tokenizer. The file
is pickle-free (metadata is a JSON string stored as a uint8 array, loaded with
allow_pickle=False) and written to a temp file in the same directory, then renamed, so
a crash mid-save never leaves a half-written checkpoint under the real name.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_open
from .config import GPT2Config, TrainConfig, from_json, to_json, train_config

FORMAT = "pyggml_train.checkpoint"
CHECKPOINT_VERSION = 1
_META_KEY = "__metadata__"
_GROUPS = ("params", "adam_m", "adam_v")


Arrays = Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]]


def save_arrays(path: str | Path, arrays: Arrays, metadata: dict[str, Any]) -> Path:
    """Atomically write arrays and JSON-able metadata to path (an uncompressed .npz, as
    np.savez writes it). The arrays are written one at a time, in the order given, and
    may be produced lazily (a Mapping read on access, or (name, array) pairs from a
    generator): a checkpoint holds one tensor's host copy at a time, not all of them. An
    exception while producing them leaves the previous file in place."""
    path = Path(path)
    pairs = arrays.items() if isinstance(arrays, Mapping) else arrays
    meta = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    with atomic_open(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, True) as npz:
        _write_npy(npz, _META_KEY, meta)
        seen = {_META_KEY}
        for name, array in pairs:
            if name in seen:
                raise ValueError(
                    f"array name {name!r} is reserved for the metadata"
                    if name == _META_KEY
                    else f"two arrays are named {name!r}"
                )
            seen.add(name)
            _write_npy(npz, name, array)
    return path


def _write_npy(npz: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    """One member of an .npz, streamed in numpy's buffered pieces (no whole copy)."""
    with npz.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def load_arrays(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read what save_arrays wrote; ValueError if the file is truncated or not ours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        # our own handle: np.load leaks its file when the zip directory is unreadable
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(
            f"{path} is not a readable checkpoint (truncated or corrupt?): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if _META_KEY not in arrays:
        raise ValueError(f"{path} is an .npz without {_META_KEY!r}: not a pyggml_train checkpoint")
    try:
        metadata = json.loads(arrays.pop(_META_KEY).tobytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: checkpoint metadata is not valid JSON ({exc})") from None
    return arrays, metadata


def parameter_count(path: str | Path) -> int:
    """How many numbers the checkpoint's model parameters hold, from the array headers only
    (comparing runs must not load every run's weights and optimizer moments)."""
    total = 0
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if not (name.startswith("params/") and name.endswith(".npy")):
                    continue
                with z.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, _ = read(f)
                    total += math.prod(shape)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} is not a readable checkpoint: {exc}") from None
    return total


@dataclass
class Checkpoint:
    """A resumable training state; arrays are keyed by HF parameter name."""

    step: int  # optimizer steps completed
    model_config: GPT2Config | None  # None for a spec's model (see spec)
    train_config: TrainConfig
    tokenizer: dict[str, Any]  # Tokenizer.to_dict()
    # saving reads these groups one array at a time: a Mapping that reads the device on
    # access (model.DeviceArrays) streams them to the file without host copies of them all
    params: Mapping[str, np.ndarray]
    adam_m: Mapping[str, np.ndarray] = field(default_factory=dict)  # AdamW first moments
    adam_v: Mapping[str, np.ndarray] = field(default_factory=dict)  # AdamW second moments
    loader_state: dict[str, Any] = field(default_factory=dict)  # BatchLoader.state()
    rng_state: dict[str, Any] = field(default_factory=dict)  # e.g. Generator.bit_generator.state
    extra: dict[str, Any] = field(default_factory=dict)  # free-form JSON-able (best val loss...)
    spec: dict[str, Any] | None = None  # the model spec's JSON (spec.py) when not a GPT-2


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write ckpt atomically to path."""
    arrays = (  # lazily: a group may read its arrays from the device on access
        (f"{group}/{name}", value)
        for group in _GROUPS
        for name, value in getattr(ckpt, group).items()
    )
    if ckpt.model_config is not None:
        configs = json.loads(to_json(ckpt.model_config, ckpt.train_config, ckpt.tokenizer["type"]))
    elif ckpt.spec is not None:
        configs = {"train": dataclasses.asdict(ckpt.train_config)}
    else:
        raise ValueError("a checkpoint needs a model_config (GPT-2) or a spec")
    metadata = {
        "format": FORMAT,
        "version": CHECKPOINT_VERSION,
        "step": ckpt.step,
        "configs": configs,
        "tokenizer": ckpt.tokenizer,
        "loader_state": ckpt.loader_state,
        "rng_state": ckpt.rng_state,
        "extra": ckpt.extra,
    }
    if ckpt.spec is not None:
        metadata["spec"] = ckpt.spec
    return save_arrays(path, arrays, metadata)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by save_checkpoint."""
    arrays, meta = load_arrays(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: metadata format is {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"{path}: checkpoint version {meta.get('version')}, "
            f"this code reads {CHECKPOINT_VERSION}"
        )
    groups: dict[str, dict[str, np.ndarray]] = {group: {} for group in _GROUPS}
    for key, value in arrays.items():
        group, _, name = key.partition("/")
        if group not in groups:
            raise ValueError(f"{path}: unexpected array {key!r}; expected names under {_GROUPS}")
        groups[group][name] = value
    spec = meta.get("spec")
    if spec is not None:
        model, train = None, train_config(meta["configs"]["train"], str(path))
    else:
        model, train, _ = from_json(json.dumps(meta["configs"]))
    return Checkpoint(
        step=meta["step"],
        model_config=model,
        train_config=train,
        tokenizer=meta["tokenizer"],
        **groups,
        loader_state=meta["loader_state"],
        rng_state=meta["rng_state"],
        extra=meta["extra"],
        spec=spec,
    )
