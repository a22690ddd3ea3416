"""The folder the explorer loads checkpoints from (``latentcam app --runs FOLDER``).

The page can switch to another run, but only to one under this folder: a path it sends is
resolved (``..``, symlinks) and refused when it, or the checkpoint file it stands for,
lies outside. Without ``--runs`` the folder is the run being explored itself
(:meth:`RunsFolder.around`), so the page offers that run's own checkpoints and nothing
else on the machine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from latentcam.errors import CheckpointError, InputError
from latentcam.training.checkpoint import RUN_CHECKPOINTS, resolve_checkpoint

#: How deep below the folder runs are looked for (runs/sweep/variant is depth 2).
MAX_DEPTH = 3
#: At most this many entries are listed (the rest: ``truncated``).
MAX_LISTED = 200


class OutsideRuns(InputError):
    """A path outside the runs folder (the server answers 403)."""


class RunEntry(NamedTuple):
    """One loadable thing under the runs folder.

    Attributes:
        path: relative to the folder, with "/" ("." is the folder itself).
        kind: "run" (a run folder: its best.ckpt, else last.ckpt), "adapted" (an adapted
            model's folder) or "checkpoint" (one .ckpt file).
    """

    path: str
    kind: str


class RunListing(NamedTuple):
    """What :meth:`RunsFolder.list` found: the entries in path order, and whether the
    listing stopped at :data:`MAX_LISTED`."""

    entries: list[RunEntry]
    truncated: bool


def _is_run(folder: Path) -> bool:
    return any((folder / "checkpoints" / name).is_file() for name in RUN_CHECKPOINTS)


def _is_adapted(folder: Path) -> bool:
    from latentcam.models.saved import is_adapter_run

    return is_adapter_run(folder)


class RunsFolder:
    """A folder of runs, resolved once (a symlinked folder counts as its target).

    Raises:
        InputError: ``root`` is not a folder.
    """

    def __init__(self, root: str | Path) -> None:
        given = Path(root)
        if not given.is_dir():
            raise InputError(f"--runs {given} is not a folder; give the folder your runs are in")
        self.root = given.resolve()

    @classmethod
    def around(cls, run: str | Path) -> RunsFolder:
        """The folder of one run: the run folder itself; for a ``.ckpt`` file the run it
        belongs to (``RUN/checkpoints/x.ckpt``), else the folder it lies in."""
        path = Path(run)
        if path.is_dir():
            return cls(path)
        if path.parent.name == "checkpoints":
            return cls(path.parent.parent)
        return cls(path.parent)

    def inside(self, path: Path) -> bool:
        """Whether the resolved ``path`` is the folder or lies below it."""
        return path == self.root or path.is_relative_to(self.root)

    def _outside(self, given: str) -> OutsideRuns:
        return OutsideRuns(
            f"{given} lies outside the runs folder {self.root}; the page loads only runs under "
            "it (start latentcam app with --runs FOLDER to offer others)"
        )

    def resolve(self, given: str) -> Path:
        """The real path of ``given`` (relative to the folder, or absolute), checked to lie
        under the folder together with the checkpoint it stands for.

        Raises:
            InputError: empty or unusable path.
            OutsideRuns: the path, or what it points to, lies outside the folder.
            CheckpointError: nothing to load there.
        """
        text = given.strip()
        if not text:
            raise InputError("give the path of a run folder or a .ckpt file")
        if "\0" in text:
            raise InputError(f"{text!r} is not a path (it holds a NUL character)")
        candidate = Path(text)
        if not candidate.is_absolute():
            candidate = self.root / candidate
        try:
            real = candidate.resolve()
        except (OSError, RuntimeError) as err:  # a symlink loop
            raise InputError(f"cannot resolve {text} ({err})") from None
        if not self.inside(real):
            raise self._outside(text)
        if real.is_dir() and _is_adapted(real):
            from latentcam.models.saved import ADAPTER_FILES

            files = [real / name for name in ADAPTER_FILES]
        elif real.exists():
            files = [resolve_checkpoint(real)]
        else:
            raise CheckpointError(f"checkpoint not found: {text}; choose one of the runs listed")
        if not all(self.inside(f.resolve()) for f in files):
            raise self._outside(text)
        return real

    def list(self) -> RunListing:
        """The runs, adapted models and ``.ckpt`` files under the folder, at most
        :data:`MAX_DEPTH` folders down. Hidden names are skipped, and so is what leads out
        of the folder (a symlink, a run whose checkpoint is one): what is listed loads."""
        entries: list[RunEntry] = []

        def add(path: Path, kind: str) -> None:
            if self.inside(path.resolve()):
                relative = path.relative_to(self.root).as_posix()
                entries.append(RunEntry(relative or ".", kind))

        for folder, dirs, files in os.walk(self.root):
            here = Path(folder)
            depth = len(here.relative_to(self.root).parts)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if _is_adapted(here):
                add(here, "adapted")
                dirs.clear()
                continue
            if _is_run(here):
                if self.inside(resolve_checkpoint(here).resolve()):
                    add(here, "run")
                for name in sorted(os.listdir(here / "checkpoints")):
                    if name.endswith(".ckpt") and not name.startswith("."):
                        add(here / "checkpoints" / name, "checkpoint")
                dirs.clear()
                continue
            for name in sorted(files):
                if name.endswith(".ckpt") and not name.startswith("."):
                    add(here / name, "checkpoint")
            if depth >= MAX_DEPTH:
                dirs.clear()
            if len(entries) >= MAX_LISTED:
                return RunListing(sorted(entries[:MAX_LISTED]), True)
        return RunListing(sorted(entries), False)
