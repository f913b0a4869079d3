"""The corpora a TextDataset node names, and where their files are."""

from __future__ import annotations

import functools
from pathlib import Path

from ..data import cache_dir, read_corpus
from .schema import Node, SpecError

CORPORA = {"tinyshakespeare": "tinyshakespeare.txt", "the-verdict": "the-verdict.txt"}


def corpus_path(
    source: str, path: str, data_dir: str | Path | None, node: Node | None = None
) -> Path | None:
    """The text file a TextDataset reads, or None for a bundled corpus not yet at hand.

    A bundled corpus is looked up in data_dir, then in the download cache; tiny
    shakespeare missing there is fetched when training starts (data.resolve_text).
    A 'file' source must exist: relative paths are taken from data_dir.
    """
    where = (lambda m: node.error(m)) if node else (lambda m: SpecError(None, m))  # noqa: E731
    if source == "file":
        if not path:
            raise where("source 'file' needs a path to a text file")
        file = Path(path)
        if not file.is_absolute() and data_dir is not None:
            file = Path(data_dir) / file
        if not file.is_file():
            raise where(f"path {path!r} is not a file ({file})")
        return file
    name = CORPORA[source]
    dirs = [Path(d) for d in (data_dir, cache_dir()) if d is not None]
    for d in dirs:
        if (d / name).is_file():
            return d / name
    if source == "tinyshakespeare":
        return None
    raise where(
        f"{name} is not in {' or '.join(map(str, dirs))}; copy it there, or use source "
        "'file' with a path"
    )


@functools.lru_cache(maxsize=16)
def _char_vocab_cached(path: str, mtime_ns: int, size: int) -> int:
    return len(set(read_corpus(path)))  # as prepare() decodes it (a BOM, UTF-16)


def char_vocab_size(path: Path) -> int:
    """Distinct characters of a text file (the char tokenizer's vocabulary), cached."""
    st = path.stat()
    return _char_vocab_cached(str(path), st.st_mtime_ns, st.st_size)
