"""The ``--threads N`` flag of ``latentcam train`` and ``latentcam app``: torch's CPU threads.

Only the intra-op pool is set (``torch.set_num_threads``), the one that the convolutions and
matrix products of training and of the explorer run on. The inter-op pool
(``torch.set_num_interop_threads``) is left alone: eager training does not use it, and
torch accepts it once per process, before any inter-op work, so a second command in the
same process (the tests, or ``main()`` called twice from Python) would fail on it.
"""

from __future__ import annotations

import argparse

from latentcam.errors import InputError


def add_threads_flag(p: argparse.ArgumentParser, default: int | None, why: str) -> None:
    """Add ``--threads N`` to ``p``; ``why`` ends the help (what the default is and why)."""
    p.add_argument(
        "--threads", type=int, default=default, metavar="N", help=f"torch CPU threads; {why}"
    )


def check_threads(threads: int | None) -> None:
    """Refuse a thread count below 1 (None: the flag was not given).

    Raises:
        InputError: ``threads`` < 1.
    """
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")


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
