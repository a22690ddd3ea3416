"""Safe file output: nothing half-written, clear errors for paths that cannot be written.

Every file latentcam writes goes through :func:`atomic_write` (or :func:`atomic_path`):
the bytes land in a temporary file in the same folder, which is renamed over the target
only once complete, so an interrupted run never leaves a truncated PNG, NPZ, JSON or cache.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from latentcam.errors import InputError


def _default_mode() -> int:
    """File mode a plain ``open(..., "w")`` would give (0o666 less the umask)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _default_mode()


def ensure_dir(path: str | Path, what: str = "--out") -> Path:
    """Create ``path`` (and parents) if needed and check that it can be written.

    Raises:
        InputError: the path is a file, or the folder cannot be created or written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {path} is a file, not a folder; give a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create {what} folder {path}: {err.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"{what} folder {path} is not writable; choose another folder")
    return path


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success.

    On error the temporary file is removed and ``target`` is left as it was.
    """
    target = Path(target)
    if target.is_dir():
        raise InputError(f"cannot write the file {target}: a folder of that name exists")
    ensure_dir(target.parent, what="output")
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=(suffix or target.suffix) + ".tmp", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; results are meant to be shared
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_write(target: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file for writing; it replaces ``target`` only when the block ends."""
    with atomic_path(target) as tmp, open(tmp, mode) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def write_json(target: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_write(target) as fh:
        json.dump(obj, fh, indent=2, sort_keys=False)
        fh.write("\n")
    return Path(target)
