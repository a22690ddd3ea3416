"""Safe file output: nothing half-written, clear errors for paths that cannot be written.

Every file latentcam writes goes through :func:`atomic_write` (or :func:`atomic_path`):
the bytes land in a temporary file in the same folder, which is renamed over the target
only once complete, so an interrupted run never leaves a truncated PNG, NPZ, JSON or cache.

Temporary files and folders are named ``.NAME.<pid>.<random>[.ext].tmp`` after their
target and the writer's process id (:func:`temp_name`). A writer killed outright (SIGKILL,
a lost machine) cannot clean up, so the next writer in the same folder does it:
:func:`remove_stale_temps` deletes the temporaries whose process is gone and that have not
changed for :data:`STALE_AFTER_S` seconds. :func:`atomic_path` sweeps each folder it writes
to once per process; ``synth``, the cache and ``report`` sweep the folder they build in.

Before a command writes anything, :func:`check_output` compares its output path with the
paths it reads: an output that is, lies inside or contains one of its inputs, or that would
land on the files a training run owns (``checkpoints/``, ``logs/``, ``config.yaml``,
``metrics.json``), is refused with one line that says what would be overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import pickle
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from latentcam.errors import InputError, OutputError

log = logging.getLogger(__name__)


def _default_mode() -> int:
    """File mode a plain ``open(..., "w")`` would give (0o666 less the umask)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _default_mode()

#: The spec and weights of an adapted model's run folder (``latentcam import``, see
#: :mod:`latentcam.models.saved`).
ADAPTER_FILES = ("adapter.json", "weights.safetensors")
#: Files and folders of a run folder that only ``latentcam train`` (or ``import``) writes.
RUN_FILES = ("config.yaml", "metrics.json", *ADAPTER_FILES)
RUN_FOLDERS = ("checkpoints", "logs")


def is_run_folder(path: str | Path) -> bool:
    """True for a folder written by ``latentcam train`` (a ``config.yaml`` beside a
    ``checkpoints/`` folder or a ``metrics.json``) or ``latentcam import`` (an
    ``adapter.json``)."""
    path = Path(path)
    if (path / ADAPTER_FILES[0]).is_file():
        return True
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


#: Why latentcam refuses a file that holds pickled objects: unpickling one can run any code.
TENSORS_ONLY = "latentcam loads tensors only (unpickling an object can run any code)"
_PICKLE_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\w+(?:\.\w+)+)")


def pickled_objects(err: BaseException) -> str | None:
    """What a safe load refused, for the message: ``"a pickled __main__.Thing"`` when
    ``torch.load(weights_only=True)`` met a class (``module.Name``) it does not allow,
    ``"a NumPy array of Python objects"`` when ``np.load(allow_pickle=False)`` met one;
    None for other errors (a truncated or damaged file)."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in text:
        found = _PICKLE_GLOBAL.search(text)  # else damaged bytes (an unknown opcode ...)
        return f"a pickled {found[1]}" if found else None
    if isinstance(err, ValueError) and "allow_pickle=False" in text:
        return "a NumPy array of Python objects"
    return None


class TextEncodingError(ValueError):
    """Bytes that :func:`decode_text` cannot read; the message (no file name) says why and
    what to do, to follow the file's path: ``f"{path} {err}"``."""


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def decode_text(raw: bytes) -> str:
    """The text of a file written by a person or another tool: UTF-8, with or without a
    byte-order mark, or UTF-16 with its byte-order mark (as Windows editors save it).
    Line ends (LF, CRLF, CR) all become LF.

    Raises:
        TextEncodingError: anything else: bytes that are not UTF-8 (latin-1, cp1252), or
            UTF-16 without a byte-order mark (NUL bytes in the text).
    """
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError:
            raise TextEncodingError(
                "starts like UTF-16 (a byte-order mark) but is not UTF-16 text; save it as UTF-8"
            ) from None
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            line = raw[: err.start].count(b"\n") + 1
            raise TextEncodingError(
                f"is not UTF-8 text (byte 0x{raw[err.start]:02x} on line {line}: latin-1 or "
                "another 8-bit encoding?); save it as UTF-8, e.g. iconv -f latin1 -t utf-8"
            ) from None
    if "\x00" in text:
        raise TextEncodingError(
            "holds NUL bytes (UTF-16 without a byte-order mark, or not a text file); save it "
            "as UTF-8 text"
        )
    return _LINE_BREAK.sub("\n", text)


def broken_link(path: str | Path) -> str | None:
    """Why ``path``, a symbolic link, leads to nothing: ``"a symbolic link loop ..."``,
    ``"a symbolic link to a missing file (TARGET: ...)"`` (or to one it cannot reach);
    None when ``path`` is no link or its target can be reached."""
    if not os.path.islink(path):
        return None
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symbolic link loop (it leads back to itself)"
        what = "a missing file" if err.errno == errno.ENOENT else "a file it cannot reach"
        return f"a symbolic link to {what} ({os.readlink(path)}: {err.strerror})"
    return None


def ensure_dir(path: str | Path, what: str = "--out") -> Path:
    """Create ``path`` (and parents) if needed and check that it can be written.

    Raises:
        InputError: the path is a file, or the folder cannot be created or written.
    """
    path = Path(path)
    reason = broken_link(path)
    if reason is not None:
        raise InputError(f"{what} {path} is {reason}; remove the link or give another folder")
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


#: A temporary left by a dead writer is removed once unchanged for this many seconds (a pid
#: can be reused, and a file system shared between machines holds other machines' pids).
STALE_AFTER_S = 10.0
#: ``.NAME.<pid>.<8 random characters>[.ext ...].tmp``: what :func:`temp_name` and
#: :func:`atomic_path` (through ``mkstemp``) make.
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[a-z0-9_]{8}(\.[^.]+)*\.tmp$")
_swept: set[str] = set()


def temp_name(name: str, suffix: str = "") -> str:
    """``.NAME.<pid>.<random><suffix>.tmp``: a hidden temporary name beside ``NAME`` that
    says which process writes it."""
    return f".{name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}.tmp"


def make_temp_dir(parent: str | Path, name: str) -> Path:
    """Create a temporary folder :func:`temp_name` ``(name)`` in ``parent``, with the mode a
    plain ``mkdir`` gives (``mkdtemp``'s would be private, ignoring the umask).

    Raises:
        OutputError: ``parent`` cannot be written (:data:`WRITE_ERRORS`).
    """
    tmp = Path(parent) / temp_name(name)
    with writing(tmp):
        tmp.mkdir()
    return tmp


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True


def _last_change(path: Path) -> float:
    """Newest mtime of ``path`` and, for a folder, of its direct entries (a writer adds files
    in sub-folders, which leaves the folder's own mtime old)."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        with os.scandir(path) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
    return newest


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporaries in ``folder`` left by dead writers: names made by
    :func:`temp_name` (or :func:`atomic_path`) whose pid no longer runs, unchanged for
    :data:`STALE_AFTER_S` seconds. Anything else is left alone.

    Returns:
        The paths removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    now = time.time()
    for name in names:
        match = _TEMP_RE.match(name)
        if match is None or _pid_alive(int(match["pid"])):
            continue
        path = folder / name
        try:
            if now - _last_change(path) < STALE_AFTER_S:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as err:
            log.debug("cannot remove stale temporary %s: %s", path, err)
            continue
        log.info("removed %s, left by an interrupted writer (pid %s)", path, match["pid"])
        removed.append(path)
    return removed


def replace_folder(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` to ``target`` (same parent). An existing ``target``
    (the caller has checked that it may go) is first renamed aside to a temporary name, and
    removed once ``tmp`` is in place.

    Raises:
        OutputError: a rename fails on a full or read-only disk.
    """
    with writing(target):
        try:
            os.rename(tmp, target)  # a missing or empty target
            return
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise
        old = target.parent / temp_name(target.name, ".old")
        os.rename(target, old)
        os.rename(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success.

    On error the temporary file is removed and ``target`` is left as it was. The temporary
    is named ``.NAME.<pid>.<random>.ext.tmp``; the first write of a process into a folder
    removes the temporaries that dead writers left there (:func:`remove_stale_temps`).

    Raises:
        OutputError: the file cannot be written (a full or read-only disk, no permission:
            :data:`WRITE_ERRORS`), raised in the block or by the rename.
    """
    target = Path(target)
    if target.is_dir():
        raise InputError(f"cannot write the file {target}: a folder of that name exists")
    ensure_dir(target.parent, what="output")
    folder = os.path.realpath(target.parent)
    if folder not in _swept:  # once per folder and process
        _swept.add(folder)
        remove_stale_temps(folder)
    with writing(target):
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.{os.getpid()}.",
            suffix=(suffix or target.suffix) + ".tmp",
            dir=target.parent,
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
