"""Training data: token files, dataset preparation and batching.

Token files use llm.c's ``.bin`` shard layout so they can be shared with llm.c's
tools: a header of 256 little-endian int32 (magic 20240520, version 1, token count,
then zeros) followed by the tokens as little-endian uint16. Which text a run trains
on (named datasets, files, URLs) is datasets.py's.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_open
from .tokenizer import Tokenizer, get_tokenizer, tokenizer_from_dict

TOKENS_MAGIC = 20240520
TOKENS_VERSION = 1
TOKENS_HEADER_INTS = 256
TOKENS_HEADER_BYTES = TOKENS_HEADER_INTS * 4
MAX_TOKEN_ID = np.iinfo(np.uint16).max  # 65535: ids are stored as uint16


# ---- (a) llm.c .bin token files -------------------------------------------------------------
def _atomic_write(path: Path, chunks: list[bytes]) -> None:
    """Write chunks so that readers never see half a file."""
    with atomic_open(path) as f:
        for chunk in chunks:
            f.write(chunk)


def write_tokens(path: str | Path, tokens: np.ndarray | list[int]) -> Path:
    """Write token ids as an llm.c .bin file; ids must fit uint16 (vocab <= 65536)."""
    path = Path(path)
    ids = np.asarray(tokens)
    if ids.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() > MAX_TOKEN_ID):
        raise ValueError(
            f"token ids span [{ids.min()}, {ids.max()}] but the .bin format stores uint16, so "
            f"ids must be in [0, {MAX_TOKEN_ID}] (vocab_size <= {MAX_TOKEN_ID + 1}); "
            "a larger vocabulary needs a different token file format"
        )
    header = np.zeros(TOKENS_HEADER_INTS, dtype="<i4")
    header[:3] = (TOKENS_MAGIC, TOKENS_VERSION, ids.size)
    _atomic_write(path, [header.tobytes(), ids.astype("<u2").tobytes()])
    return path


def read_tokens(path: str | Path) -> np.ndarray:
    """Memory-map the uint16 tokens of an llm.c .bin file, checking header and size."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"token file {path} not found (run prepare() to create it)")
    size = path.stat().st_size
    if size < TOKENS_HEADER_BYTES:
        raise ValueError(
            f"{path} is {size} bytes, shorter than the {TOKENS_HEADER_BYTES}-byte llm.c header: "
            "truncated, or not a token file"
        )
    header = np.fromfile(path, dtype="<i4", count=TOKENS_HEADER_INTS)
    if header[0] != TOKENS_MAGIC:
        raise ValueError(
            f"{path} is not an llm.c token file: expected magic {TOKENS_MAGIC} in the first int32, "
            f"found {header[0]}"
        )
    if header[1] != TOKENS_VERSION:
        raise ValueError(
            f"{path}: token file version {header[1]}, expected {TOKENS_VERSION} (uint16 tokens)"
        )
    count = int(header[2])
    expected = TOKENS_HEADER_BYTES + 2 * count
    if size != expected:
        raise ValueError(
            f"{path}: header says {count} tokens ({expected} bytes) but the file has {size} bytes: "
            f"{'truncated' if size < expected else 'trailing data'}; re-run prepare()"
        )
    if count == 0:
        return np.zeros(0, dtype=np.uint16)
    return np.memmap(path, dtype="<u2", mode="r", offset=TOKENS_HEADER_BYTES, shape=(count,))


# ---- (b) text -> train.bin / val.bin ------------------------------------------------------
LOSSY = "lossy"  # --encoding lossy: UTF-8 with undecodable bytes replaced by U+FFFD
# byte-order marks, longest first: UTF-32 LE begins with UTF-16 LE's mark
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def read_corpus(path: str | Path, encoding: str | None = None) -> str:
    """The text of a corpus file, decoded so that a wrong guess is an error that helps.

    Without ``encoding``, a byte-order mark picks UTF-8/16/32 (Windows Notepad writes
    one), else the text must be UTF-8. ``encoding`` names any Python codec, or
    :data:`LOSSY`. An undecodable byte is a ValueError naming the file, the byte, its
    offset and the two ways out, instead of a bare codec message.
    """
    path = Path(path)
    raw = path.read_bytes()
    if encoding == LOSSY:
        return raw.decode("utf-8-sig", errors="replace")
    codec = encoding or next((c for bom, c in _BOMS if raw.startswith(bom)), "utf-8")
    try:
        return raw.decode(codec)
    except LookupError:
        raise ValueError(
            f"unknown encoding {encoding!r} for {path}; give a Python codec name such as "
            f"utf-8, latin-1 or cp1252, or {LOSSY!r}"
        ) from None
    except UnicodeDecodeError as exc:
        byte = raw[exc.start]
        how = f"a byte-order mark says {codec}" if encoding is None and codec != "utf-8" else codec
        raise ValueError(
            f"{path} is not valid {codec.upper()} ({how}): byte 0x{byte:02x} at offset "
            f"{exc.start} ({exc.reason}); if it is in another encoding pass --encoding NAME "
            f"(e.g. latin-1 or cp1252), or --encoding {LOSSY} to replace undecodable bytes "
            "with U+FFFD"
        ) from None


@dataclass
class PreparedData:
    """Where prepare() put things and how many tokens each split holds."""

    train_path: Path
    val_path: Path
    tokenizer_path: Path
    train_tokens: int
    val_tokens: int


def prepare(
    text_path: str | Path,
    out_dir: str | Path,
    tokenizer: Tokenizer | str,
    val_fraction: float = 0.1,
    encoding: str | None = None,
) -> PreparedData:
    """Tokenize a text file and split it: the tail val_fraction of tokens validates.
    ``encoding``: see :func:`read_corpus`; the rest as :func:`prepare_text`."""
    return prepare_text(
        read_corpus(text_path, encoding), out_dir, tokenizer, val_fraction, what=str(text_path)
    )


def prepare_text(
    text: str,
    out_dir: str | Path,
    tokenizer: Tokenizer | str,
    val_fraction: float = 0.1,
    val_text: str | None = None,
    what: str = "the text",
) -> PreparedData:
    """Tokenize ``text`` into out_dir/train.bin and val.bin: ``val_text`` validates where
    the dataset has its own validation split, else the tail val_fraction of the tokens.

    tokenizer may be a name ('char' builds its vocabulary from both texts). The tokenizer
    is saved as tokenizer.json so the token ids can be decoded later.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if isinstance(tokenizer, str):
        tokenizer = get_tokenizer(tokenizer, text + (val_text or ""))
    ids = tokenizer.encode(text)  # (N,)
    if val_text is None:
        n_val = int(round(len(ids) * val_fraction))
        if n_val < 2 or len(ids) - n_val < 2:
            raise ValueError(
                f"{what} gives {len(ids)} tokens; too few to split with val_fraction={val_fraction}"
            )
        train_ids, val_ids = ids[: len(ids) - n_val], ids[len(ids) - n_val :]
    else:
        train_ids, val_ids = ids, tokenizer.encode(val_text)
        if len(train_ids) < 2 or len(val_ids) < 2:
            raise ValueError(
                f"{what} gives {len(train_ids)} train and {len(val_ids)} validation tokens; "
                "each split needs at least 2"
            )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok_path = out / "tokenizer.json"
    _atomic_write(tok_path, [_json_bytes(tokenizer.to_dict())])
    return PreparedData(
        train_path=write_tokens(out / "train.bin", train_ids),
        val_path=write_tokens(out / "val.bin", val_ids),
        tokenizer_path=tok_path,
        train_tokens=len(train_ids),
        val_tokens=len(val_ids),
    )


def _json_bytes(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


def load_prepared(out_dir: str | Path) -> tuple[np.ndarray, np.ndarray, Tokenizer]:
    """The (train tokens, val tokens, tokenizer) that prepare() wrote to out_dir."""
    out = Path(out_dir)
    tok_path = out / "tokenizer.json"
    if not tok_path.is_file():
        raise FileNotFoundError(f"{tok_path} not found; run prepare() on a text file first")
    try:
        tokenizer = tokenizer_from_dict(json.loads(tok_path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # JSON and Unicode too
        raise ValueError(
            f"{tok_path} is not a readable tokenizer (truncated or garbled?): "
            f"{type(exc).__name__}: {exc}; run prepare() again"
        ) from None
    splits = read_tokens(out / "train.bin"), read_tokens(out / "val.bin")
    for name, ids in zip(("train.bin", "val.bin"), splits, strict=True):
        # one pass over the tokens: an id the model's embedding has no row for would
        # otherwise stop training only at its first batch
        top = int(ids.max(initial=0))
        if top >= tokenizer.vocab_size:
            raise ValueError(
                f"{out / name} holds token id {top}, outside the tokenizer's vocabulary of "
                f"{tokenizer.vocab_size} ({tok_path}): the file is garbled or was made with "
                "another tokenizer; run prepare() again"
            )
    return splits[0], splits[1], tokenizer


# ---- (c) batches --------------------------------------------------------------------------
class BatchLoader:
    """Serves (B, T) int32 inputs and next-token targets from a 1-D token array.

    mode "random": each row starts at a uniformly drawn offset (seeded).
    mode "sequential": rows tile the tokens in order, wrapping to the start when the
    next row would run past the end; every token is visited once per sweep.
    state()/set_state() capture the position and RNG so a resumed run sees the same batches.

    With ``world_size`` ranks, every rank draws the same global micro-batch of
    batch_size * world_size rows and keeps rows [rank * B, (rank + 1) * B): the ranks read
    disjoint, deterministic shares, together the batch one process would read at
    batch_size * world_size. The state is the same on every rank, and drawing N rows at
    once walks the RNG and the position as N draws of one row do, so a checkpoint of N
    ranks resumes on any number of ranks with the same global batches.
    """

    def __init__(
        self,
        tokens: np.ndarray,
        batch_size: int,
        block_size: int,
        mode: str = "random",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if mode not in ("random", "sequential"):
            raise ValueError(f"mode must be 'random' or 'sequential', got {mode!r}")
        if batch_size <= 0 or block_size <= 0:
            raise ValueError(
                f"batch_size and block_size must be > 0, got {batch_size}, {block_size}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if tokens.ndim != 1 or len(tokens) < block_size + 1:
            raise ValueError(
                f"need at least block_size + 1 = {block_size + 1} tokens for one (input, target) "
                f"window, got {len(tokens)}; use a smaller block_size or more data"
            )
        self.tokens = tokens
        self.batch_size = batch_size
        self.block_size = block_size
        self.mode = mode
        self.rank, self.world_size = rank, world_size
        self._rng = np.random.default_rng(seed)
        self._position = 0  # sequential: start of the next row

    def _row_starts(self) -> np.ndarray:
        """Starts of the global micro-batch's rows (B * world_size,)."""
        n, t = len(self.tokens), self.block_size
        rows = self.batch_size * self.world_size
        if self.mode == "random":
            return self._rng.integers(0, n - t, size=rows)  # start in [0, n-t-1]
        starts = np.empty(rows, dtype=np.int64)
        for b in range(rows):
            if self._position + t + 1 > n:
                self._position = 0
            starts[b] = self._position
            self._position += t
        return starts

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """Inputs x (B, T) and targets y (B, T); y[b, t] is the token that follows x[b, t]."""
        mine = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        starts = self._row_starts()[mine]  # (B,) this rank's rows
        offsets = starts[:, None] + np.arange(self.block_size + 1)  # (B, T+1)
        window = np.asarray(self.tokens[offsets], dtype=np.int32)  # (B, T+1)
        return window[:, :-1], window[:, 1:]  # (B, T), (B, T)

    def __iter__(self) -> BatchLoader:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        return self.next_batch()

    def state(self) -> dict[str, Any]:
        """JSON-able position and RNG state."""
        return {"mode": self.mode, "position": self._position, "rng": self._rng.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        """Resume from state(); the mode must match."""
        if state.get("mode") != self.mode:
            raise ValueError(
                f"loader state is for mode {state.get('mode')!r}, this loader is {self.mode!r}"
            )
        self._position = int(state["position"])
        self._rng.bit_generator.state = state["rng"]
