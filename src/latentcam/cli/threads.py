"""The ``--threads N`` flag of ``latentcam train`` and ``latentcam app``: torch's CPU threads.

Only the intra-op pool is set (``torch.set_num_threads``), the one that the convolutions and
matrix products of training and of the explorer run on. The inter-op pool
(``torch.set_num_interop_threads``) is left alone: eager training does not use it, and
torch accepts it once per process, before any inter-op work, so a second command in the
same process (the tests, or ``main()`` called twice from Python) would fail on it.
"""

from __future__ import annotations

import argparse
import os

from latentcam.errors import InputError

#: More threads than this per core only add contention (and torch starts them all).
THREADS_PER_CORE = 4


def max_threads() -> int:
    """The largest ``--threads``: :data:`THREADS_PER_CORE` per CPU core of this machine."""
    return THREADS_PER_CORE * (os.cpu_count() or 1)


def add_threads_flag(p: argparse.ArgumentParser, default: int | None, why: str) -> None:
    """Add ``--threads N`` to ``p``; ``why`` ends the help (what the default is and why).
    The range is checked by :func:`check_threads`, in the handler."""
    p.add_argument(
        "--threads", type=int, default=default, metavar="N", help=f"torch CPU threads; {why}"
    )


def check_threads(threads: int | None) -> None:
    """Refuse a thread count below 1 or above :func:`max_threads` (None: the flag was not
    given).

    Raises:
        InputError: ``threads`` out of range.
    """
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")
    if threads is not None and threads > max_threads():
        raise InputError(
            f"--threads must be at most {max_threads()} ({THREADS_PER_CORE} per CPU core here), "
            f"got {threads}"
        )


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)``; None leaves torch's own choice (its default, or
    ``OMP_NUM_THREADS``).

    Raises:
        InputError: ``threads`` < 1.
    """
    check_threads(threads)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
