"""Safe file output: nothing half-written, clear errors for paths that cannot be written.

Every file latentcam writes goes through :func:`atomic_write` (or :func:`atomic_path`):
the bytes land in a temporary file in the same folder, which is renamed over the target
only once complete, so an interrupted run never leaves a truncated PNG, NPZ, JSON or cache.

Before a command writes anything, :func:`check_output` compares its output path with the
paths it reads: an output that is, lies inside or contains one of its inputs, or that would
land on the files a training run owns (``checkpoints/``, ``logs/``, ``config.yaml``,
``metrics.json``), is refused with one line that says what would be overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from latentcam.errors import InputError, OutputError


def _default_mode() -> int:
    """File mode a plain ``open(..., "w")`` would give (0o666 less the umask)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _default_mode()

#: Files and folders of a run folder that only ``latentcam train`` writes.
RUN_FILES = ("config.yaml", "metrics.json")
RUN_FOLDERS = ("checkpoints", "logs")


def is_run_folder(path: str | Path) -> bool:
    """True for a folder written by ``latentcam train``: a ``config.yaml`` beside a
    ``checkpoints/`` folder or a ``metrics.json``."""
    path = Path(path)
    return (path / "config.yaml").is_file() and (
        (path / "checkpoints").is_dir() or (path / "metrics.json").is_file()
    )


def _inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies under it (both resolved)."""
    return path == folder or folder in path.parents


def _describe(path: Path) -> str:
    if path.is_dir():
        return f"the run {path}" if is_run_folder(path) else f"the input folder {path}"
    return f"the input file {path}"


def _run_clash(out: Path, run: Path, owns_run: bool) -> str | None:
    """What ``out`` (resolved) would overwrite in the run folder ``run``, or None."""
    if out == run and not owns_run:
        return f"is the run folder {run} itself, whose files it would overwrite"
    for name in RUN_FOLDERS:
        if _inside(out, run / name):
            return f"lies in {run / name}, which holds the run's {name}"
    for name in RUN_FILES:
        if out == run / name:
            return f"is the run's own {name} ({run / name})"
    return None


def check_output(
    out: str | Path,
    inputs: Iterable[str | Path | None] = (),
    what: str = "--out",
    owns_run: bool = False,
) -> Path:
    """Refuse an output path that would overwrite what a command reads or a run owns.

    Paths are compared with symlinks resolved. ``out`` is refused when it

    - is one of ``inputs``, lies inside one (a dataset folder, a file), or contains one;
      inside an input *run* folder is allowed (``RUN/explain``), except as below;
    - is a run folder (unless ``owns_run``: ``latentcam train`` writes its own run), or
      lies in a run's ``checkpoints/`` or ``logs/``, or is its ``config.yaml`` or
      ``metrics.json``: for every run folder ``out`` lies in, input or not.

    Args:
        out: the file or folder the command will write.
        inputs: the paths it reads (run folders, checkpoints, dataset folders, files);
            None and ``"synth"`` (the built-in faces, not a path) are skipped.
        what: how the message names ``out`` (the flag).
        owns_run: ``out`` may be a run folder (training into it).

    Returns:
        ``out`` as a Path (not resolved).

    Raises:
        InputError: one line naming what would be overwritten and what to do.
    """
    out = Path(out).expanduser()
    target = Path(os.path.realpath(out))
    for folder in (target, *target.parents):
        if is_run_folder(folder):
            clash = _run_clash(target, folder, owns_run)
            if clash:
                raise InputError(
                    f"{what} {out} {clash}; write outside the run's checkpoints/, logs/, "
                    f"config.yaml and metrics.json, e.g. into a new folder {folder / 'outputs'}"
                )
    for given in inputs:
        if given is None or str(given) == "synth":
            continue
        source = Path(os.path.realpath(Path(given).expanduser()))
        if not source.exists():
            continue
        run_input = source.is_dir() and is_run_folder(source)
        if target == source:
            raise InputError(
                f"{what} {out} is {_describe(source)} that this command reads and would "
                "overwrite it; choose another path"
            )
        if source in target.parents and not run_input:
            raise InputError(
                f"{what} {out} lies inside {_describe(source)} that this command reads, and "
                "would add files to it; choose a path outside it"
            )
        if target in source.parents:
            raise InputError(
                f"{what} {out} contains {_describe(source)} that this command reads, which it "
                "could overwrite; choose a folder that holds none of the inputs"
            )
    return out


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


#: errno values of a write that cannot succeed here, and what the message says of each.
WRITE_ERRORS: dict[int, str] = {
    errno.ENOSPC: "the disk is full; free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up; free some space or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.EACCES: "permission denied; write to a folder of your own",
    errno.EPERM: "operation not permitted; write to a folder of your own",
    errno.EFBIG: "the file is too large for this file system; write elsewhere",
}


def write_error(err: OSError, path: str | Path) -> OutputError | OSError:
    """The one-line :class:`OutputError` for an ``OSError`` raised while writing ``path``
    (the error's own file name is named when it has one); ``err`` itself when its errno
    is not one of :data:`WRITE_ERRORS` (a bug, not a place that cannot be written)."""
    if err.errno not in WRITE_ERRORS:
        return err
    where = err.filename if err.filename else path
    return OutputError(f"cannot write {where}: {WRITE_ERRORS[err.errno]}")


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn the :data:`WRITE_ERRORS` of the block into :class:`OutputError` naming ``path``."""
    try:
        yield
    except OSError as err:
        raise write_error(err, path) from None


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KB"`` (powers of 1000, as disk sizes are quoted)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def check_free_space(folder: str | Path, needed: int, what: str, fix: str) -> None:
    """Refuse to start a write of ``needed`` bytes into ``folder`` when the disk has less
    free space (a memory-mapped file on a full disk dies of SIGBUS, with no message).

    Raises:
        OutputError: less than ``needed`` bytes free; the message says ``what`` needed
            them, how much is free, and ``fix``.
    """
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise OutputError(
            f"{what} needs about {format_bytes(needed)} in {folder}, but only "
            f"{format_bytes(free)} is free there; {fix}"
        )


def reserve(path: str | Path, nbytes: int) -> None:
    """Allocate ``nbytes`` of disk for the file ``path`` now (``posix_fallocate``), so that a
    memory map of it can never run out of space half-way (SIGBUS); a file system that
    cannot preallocate is left as it is.

    Raises:
        OutputError: the disk has no room for the file.
    """
    if not hasattr(os, "posix_fallocate") or nbytes <= 0:
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as err:
        if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise write_error(err, path) from None
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success.

    On error the temporary file is removed and ``target`` is left as it was.

    Raises:
        OutputError: the file cannot be written (a full or read-only disk, no permission:
            :data:`WRITE_ERRORS`), raised in the block or by the rename.
    """
    target = Path(target)
    if target.is_dir():
        raise InputError(f"cannot write the file {target}: a folder of that name exists")
    ensure_dir(target.parent, what="output")
    with writing(target):
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=(suffix or target.suffix) + ".tmp", dir=target.parent
        )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; results are meant to be shared
        yield tmp
        os.replace(tmp, target)
    except OSError as err:
        raise write_error(err, target) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
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
