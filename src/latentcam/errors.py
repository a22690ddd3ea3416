"""Errors meant for people.

Every error raised on bad input is a :class:`LatentcamError`: its message says what was
wrong, where (file, key or value), and what to do. The command line prints the message
alone and exits with status 2; nothing in the library catches and hides them.
"""

from __future__ import annotations


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters shown as escapes (``\\n``,
    ``\\x1b``), so that a message naming a file called ``"a\\nb.png"`` stays one line and
    cannot drive the terminal; other characters (``é``, ``顔``) are kept."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


class LatentcamError(Exception):
    """Base class of every user-facing error (exit status 2 on the command line). Its
    message is always one line (:func:`one_line`), whatever file names it quotes."""

    exit_code = 2

    def __init__(self, *args: object) -> None:
        super().__init__(*(one_line(a) if isinstance(a, str) else a for a in args))


class DataError(LatentcamError):
    """A dataset, file or layout on disk cannot be read as asked."""


class ConfigError(LatentcamError):
    """A configuration key or value is unknown or invalid."""


class CheckpointError(LatentcamError):
    """A checkpoint is missing, corrupt, or does not fit the model or data."""


class InputError(LatentcamError):
    """A tensor, index, layer name or argument passed to the API is invalid."""


class OutputError(LatentcamError):
    """A file cannot be written: the disk is full, read-only, or not ours to write; or the
    free space a write needs is not there. Temporary files are removed first."""


class TrainingDivergedError(LatentcamError):
    """The loss or the weights became NaN/Inf; the last good checkpoint is kept."""
