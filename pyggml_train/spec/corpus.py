"""Where a TextDataset's text comes from: a named dataset (datasets.py, the one registry)
or a text file in the data folder; and the character vocabulary it gives."""

from __future__ import annotations

import functools
from pathlib import Path

from ..data import read_corpus
from ..datasets import DATASETS, Corpus, load, locate
from .schema import Node, SpecError

SOURCES = (*DATASETS, "file")  # a TextDataset's ``source`` choices


def _error(node: Node | None, message: str) -> SpecError:
    return node.error(message) if node else SpecError(None, message)


def text_file(path: str, data_dir: str | Path | None, node: Node | None = None) -> Path:
    """The text file of source 'file': ``path``, relative paths taken from data_dir."""
    if not path:
        raise _error(node, "source 'file' needs a path to a text file")
    file = Path(path)
    if not file.is_absolute() and data_dir is not None:
        file = Path(data_dir) / file
    if not file.is_file():
        raise _error(node, f"path {path!r} is not a file ({file})")
    return file


def corpus_files(
    source: str, path: str, data_dir: str | Path | None, node: Node | None = None
) -> list[Path] | None:
    """The files a TextDataset reads, or None for a named dataset not at hand yet (it is
    fetched when training starts; the studio's check says so). A dataset file that fails
    its checksum is an error on the node."""
    if source == "file":
        return [text_file(path, data_dir, node)]
    try:
        return locate(DATASETS[source], data_dir)
    except ValueError as exc:
        raise _error(node, str(exc)) from None


def load_corpus(
    source: str, path: str, data_dir: str | Path | None, node: Node | None = None
) -> Corpus:
    """The texts a run trains on; a named dataset is fetched if needed (datasets.fetch:
    offline, an error naming the file, where to put it and its URL)."""
    if source == "file":
        file = text_file(path, data_dir, node)
        return Corpus(read_corpus(file), None, str(file), str(file))
    return load(source, data_dir)


@functools.lru_cache(maxsize=16)
def _char_vocab_cached(source: str, files: tuple[tuple[str, int, int], ...]) -> int:
    paths = [Path(f[0]) for f in files]
    if source == "file":
        return len(set(read_corpus(paths[0])))  # as prepare() decodes it (a BOM, UTF-16)
    train, val = DATASETS[source].read(paths)
    return len(set(train) | set(val or ""))  # as prepare_text builds the vocabulary


def char_vocab_size(source: str, files: list[Path]) -> int:
    """Distinct characters of a TextDataset's texts (the char tokenizer's vocabulary),
    cached per file version."""
    key = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    return _char_vocab_cached(source, key)
