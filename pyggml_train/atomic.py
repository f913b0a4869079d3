"""Atomic file writes: readers see the old file or the whole new one, never half of it.

The new content goes to a temporary file beside the target (``.NAME.PID.XXXX.tmp``),
is flushed to disk, and replaces the target by rename. A process killed mid-write
leaves only its temporary file behind; the next write of the same target removes the
temporaries of writers that are no longer alive, so they do not pile up. A full disk
(or a file size limit) raises OSError naming the file, and the old file stays.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporary files that dead writers of ``path`` left; returns them."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _temporary_beside(path: Path) -> tuple[int, str]:
    """A private temporary file in ``path``'s folder; a missing or unwritable folder is an
    error about ``path``, not about a temporary name the caller never chose."""
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"cannot write {path}: the folder {path.parent} does not exist; create it first "
            "or choose another path"
        )
    try:
        return tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"
        )
    except OSError as exc:
        raise OSError(f"cannot write {path}: {exc.strerror}") from None


@contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write; it replaces ``path`` (by rename) only if the block succeeds."""
    path = Path(path)
    remove_stale_temporaries(path)
    fd, tmp = _temporary_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _default_mode(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        if exc.errno is None:
            raise
        raise OSError(
            exc.errno,
            f"could not write {path}: {exc.strerror} (disk full or a file size limit?); "
            f"the previous {path.name}, if any, is unchanged",
        ) from exc
    except BaseException:
        os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _default_mode(path: str | Path, directory: bool = False) -> None:
    """Give a temporary (mkstemp/mkdtemp make them private, 0600/0700) the mode a plain
    open()/mkdir() would have had under the umask, before it takes the target's name."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (a crash of the machine, not only of the process)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that opens files itself; it replaces
    ``path`` (by rename) only if the block succeeds, and is removed otherwise."""
    path = Path(path)
    remove_stale_temporaries(path)
    fd, tmp = _temporary_beside(path)
    os.close(fd)
    try:
        yield Path(tmp)
        _default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A temporary directory beside ``path`` to fill; it takes ``path``'s place only if
    the block succeeds (a previous ``path`` is moved aside, then removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.{os.getpid()}."
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=prefix, suffix=".d"))
    try:
        yield tmp
        _default_mode(tmp, directory=True)
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=prefix, suffix=".old"))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(path.parent)
