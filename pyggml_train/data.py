"""Training data: token files, dataset preparation, batching, and finding a corpus.

Token files use llm.c's ``.bin`` shard layout so they can be shared with llm.c's
tools: a header of 256 little-endian int32 (magic 20240520, version 1, token count,
then zeros) followed by the tokens as little-endian uint16.
"""

from __future__ import annotations

import ast
import codecs
import json
import os
import shutil
import sys
import sysconfig
import time
import urllib.request
import warnings
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

TINY_SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
# Copies of tiny shakespeare looked for, relative to the working directory, before any
# download: a data/ folder of one's own, or the shared data folder beside the checkout.
LOCAL_TINY_SHAKESPEARE = ("data/tinyshakespeare.txt", "../shared/data/tinyshakespeare.txt")
DOWNLOAD_TIMEOUT_S = 10.0
DATA_ENV = "PYGGML_DATA"
FALLBACK_TARGET_CHARS = 1_500_000  # size of the offline corpus built from Python's own docs


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

    tokenizer may be a name ('char' builds its vocabulary from this text). The tokenizer
    is saved as tokenizer.json so the token ids can be decoded later. ``encoding``: see
    :func:`read_corpus`.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    text = read_corpus(text_path, encoding)
    if isinstance(tokenizer, str):
        tokenizer = get_tokenizer(tokenizer, text)
    ids = tokenizer.encode(text)  # (N,)
    n_val = int(round(len(ids) * val_fraction))
    if n_val < 2 or len(ids) - n_val < 2:
        raise ValueError(
            f"{text_path} gives {len(ids)} tokens; too few to split with "
            f"val_fraction={val_fraction}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    split = len(ids) - n_val
    tok_path = out / "tokenizer.json"
    _atomic_write(tok_path, [_json_bytes(tokenizer.to_dict())])
    return PreparedData(
        train_path=write_tokens(out / "train.bin", ids[:split]),
        val_path=write_tokens(out / "val.bin", ids[split:]),
        tokenizer_path=tok_path,
        train_tokens=split,
        val_tokens=n_val,
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


# ---- (d) finding a corpus -------------------------------------------------------------------
def cache_dir() -> Path:
    """$XDG_CACHE_HOME/pyggml_train, or ~/.cache/pyggml_train."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pyggml_train"


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def fetch_text(source: str, dest: Path) -> Path:
    """Copy source (an http(s) URL, or a local file path) to dest atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if _is_url(source):
        with urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data = response.read()
        data.decode("utf-8")  # refuse to cache an HTML error page in another encoding
        if not data:
            raise OSError(f"{source} returned no data")
        _atomic_write(dest, [data])
    else:
        if not Path(source).is_file():
            raise FileNotFoundError(f"{source} is neither an http(s) URL nor an existing file")
        shutil.copyfile(source, dest)
    return dest


def _docstrings(node: ast.AST, prefix: str) -> list[str]:
    """Docstrings of a module/class/function and everything nested, in source order."""
    out = []
    doc = ast.get_docstring(node, clean=True)
    if doc:
        out.append(f"{prefix}\n{doc}\n")
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            out.extend(_docstrings(child, f"{prefix}.{child.name}"))
    return out


def python_docs_corpus(target_chars: int = FALLBACK_TARGET_CHARS) -> str:
    """Text that every Python installation carries: its language reference topics, then
    stdlib docstrings in sorted module order, until target_chars is reached.

    Deterministic for a given Python build; used when no corpus can be downloaded.
    """
    import pydoc_data.topics

    parts = [pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)]
    total = sum(map(len, parts))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "test", "tests", "idle_test"}
    for path in sorted(stdlib.rglob("*.py")):
        if total >= target_chars:
            break
        rel = path.relative_to(stdlib)
        if skip & set(rel.parts):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # old escape sequences in some modules
                tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            continue
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        for doc in _docstrings(tree, module):
            parts.append(doc)
            total += len(doc)
    return "\n".join(parts)


TINY_SHAKESPEARE_FILE = "tinyshakespeare.txt"
FETCH_RETRY_S = 60.0  # a failed download is not retried sooner (a studio checks on every edit)
_fetch_failures: dict[str, tuple[float, str]] = {}  # source -> (monotonic time, reason)


def tiny_shakespeare(
    data_dir: str | Path | None = None, source: str | None = None
) -> tuple[Path, str]:
    """Tiny shakespeare for a run that names it: (path, where it came from).

    Looked for in data_dir, the local copies (:data:`LOCAL_TINY_SHAKESPEARE`) and the
    cache, else fetched (from ``source``, default :data:`TINY_SHAKESPEARE_URL`) into the
    cache. Never another corpus: when none of these works
    (offline), FileNotFoundError says where to put the file and how to provide it.
    """
    dirs = [Path(data_dir)] if data_dir is not None else []
    candidates = [d / TINY_SHAKESPEARE_FILE for d in dirs] + list(map(Path, LOCAL_TINY_SHAKESPEARE))
    for path in [*candidates, cache_dir() / TINY_SHAKESPEARE_FILE]:
        if path.is_file():
            return path, f"tiny shakespeare ({path})"
    cached = cache_dir() / TINY_SHAKESPEARE_FILE
    source = source or TINY_SHAKESPEARE_URL
    failed = _fetch_failures.get(source)
    if failed is not None and time.monotonic() - failed[0] < FETCH_RETRY_S:
        reason = failed[1]
    else:
        try:
            fetch_text(source, cached)
            _fetch_failures.pop(source, None)
            return cached, f"tiny shakespeare (fetched from {source} into {cached})"
        except (OSError, UnicodeDecodeError) as exc:  # URLError and timeouts are OSErrors
            reason = f"{type(exc).__name__}: {exc}"
            _fetch_failures[source] = (time.monotonic(), reason)
    where = dirs[0] if dirs else cache_dir()
    raise FileNotFoundError(
        f"tiny shakespeare ({TINY_SHAKESPEARE_FILE}) is not at hand and could not be "
        f"downloaded ({reason}); put {TINY_SHAKESPEARE_FILE} in {where} (the data folder: "
        "pyggml-train train --data-dir DIR reads DIR, pyggml-train studio --data-dir DIR "
        "reads DIR/data), or train on a text of your own: a TextDataset with source 'file' "
        "and its path, or a text uploaded in the studio"
    )


def resolve_text(data: str | None = None, source: str = TINY_SHAKESPEARE_URL) -> tuple[Path, str]:
    """Find the training text: (path, one-line description of where it came from).

    Precedence: ``data`` (a file path, or an http(s) URL fetched into the cache), then
    $PYGGML_DATA (same forms), then a local copy of tiny shakespeare
    (:data:`LOCAL_TINY_SHAKESPEARE`), then the cached one, then fetching ``source`` (the
    URL, or a local file) into the cache; if that fails (offline), a corpus built from the
    Python installation's own documentation, cached too, and said so on stderr. That
    stand-in is for a run that named no corpus: one that names tiny shakespeare (a spec's
    TextDataset) uses :func:`tiny_shakespeare`, which never substitutes.
    """
    for given, origin in ((data, "--data"), (os.environ.get(DATA_ENV) or None, f"${DATA_ENV}")):
        if given is None:
            continue
        if _is_url(given):
            dest = cache_dir() / (given.rstrip("/").rsplit("/", 1)[-1] or "data.txt")
            if not dest.is_file():
                fetch_text(given, dest)
            return dest, f"{given} (from {origin}, cached at {dest})"
        path = Path(given).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{origin} names {given}, which is not a file")
        return path, f"{path} (from {origin})"
    for local in map(Path, LOCAL_TINY_SHAKESPEARE):
        if local.is_file():
            return local, f"tiny shakespeare (the local copy {local})"
    cached = cache_dir() / "tinyshakespeare.txt"
    if cached.is_file():
        return cached, f"tiny shakespeare (cached at {cached})"
    try:
        fetch_text(source, cached)
        return cached, f"tiny shakespeare (fetched from {source} into {cached})"
    except (OSError, UnicodeDecodeError) as exc:  # URLError and timeouts are OSErrors
        reason = f"{type(exc).__name__}: {exc}"
    fallback = cache_dir() / "python-docs.txt"
    if not fallback.is_file():
        _atomic_write(fallback, [python_docs_corpus(FALLBACK_TARGET_CHARS).encode("utf-8")])
    size_mb = fallback.stat().st_size / 1e6
    message = (
        f"could not fetch tiny shakespeare ({reason}); training on {size_mb:.1f} MB of Python's "
        f"own documentation instead ({fallback}); pass --data FILE to choose a corpus"
    )
    print(f"pyggml_train: {message}", file=sys.stderr)
    return fallback, message
