"""Numbers on the command line, checked where they enter: argparse types with a range.

Every numeric option of a command that is not a config key (those are checked by
:func:`latentcam.config.validate`) takes its ``type=`` from :func:`integer` or :func:`real`:
a value that is not a number, is NaN or infinite, or lies outside the option's range is
an argparse error, one line that names the option and the range, before the command
starts. Sizes whose cost only shows later (images drawn at once, files rendered) get an
estimate first (:func:`check_cost`).
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable

from latentcam.errors import InputError
from latentcam.io import format_bytes

#: The seeds torch, NumPy and Python all accept.
SEED_MAX = 2**32 - 1


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _range_text(lo: float | None, hi: float | None, lo_open: bool, what: str) -> str:
    if lo is not None and hi is not None and not lo_open:
        return f"{what} from {_num(lo)} to {_num(hi)}"
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {_num(lo)}")
    if hi is not None:
        parts.append(f"<= {_num(hi)}")
    return f"{what} {' and '.join(parts)}".strip()


def integer(
    lo: int | None = None, hi: int | None = None, note: str = "", allowed: str = ""
) -> Callable[[str], int]:
    """An argparse type: an integer in ``[lo, hi]`` (a bound of None: none); ``allowed``
    replaces the range in the message."""
    allowed = allowed or _range_text(lo, hi, False, "an integer") + (f" ({note})" if note else "")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got '{text}'") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def real(
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    note: str = "",
) -> Callable[[str], float]:
    """An argparse type: a finite number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    allowed = _range_text(lo, hi, lo_open, "a finite number") + (f" ({note})" if note else "")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got '{text}'") from None
        low_ok = lo is None or (value > lo if lo_open else value >= lo)
        if not math.isfinite(value) or not low_ok or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


#: Counts of at least one (images, units, directions ...).
count = integer(1)
#: Seeds.
seed = integer(0, SEED_MAX)
#: TCP ports; 0 asks the system for a free one.
port = integer(0, 65535, allowed="a port from 1 to 65535, or 0 to pick a free one")


def available_memory() -> int:
    """Bytes of memory available to a new allocation (``MemAvailable`` on Linux, else the
    free physical pages)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


#: Above this, a command asks for ``--yes`` before it starts (memory or disk).
CONFIRM_BYTES = 2 * 10**9


def check_cost(needed: int, have: int, what: str, where: str, fix: str, yes: bool = False) -> None:
    """Refuse work whose size would not fit, and ask for ``--yes`` before large work.

    Args:
        needed: estimated bytes the work takes.
        have: bytes there are (available memory, free disk).
        what: the work, e.g. "64 samples at 64 px".
        where: "of memory", "on disk in DIR".
        fix: what to lower, e.g. "lower --n".
        yes: the user confirmed large work (``--yes``).

    Raises:
        InputError: ``needed > have`` (always), or ``needed > CONFIRM_BYTES`` without ``yes``.
    """
    estimate = f"{what} need about {format_bytes(needed)} {where}"
    if needed > have:
        raise InputError(f"{estimate}, but only {format_bytes(have)} is there; {fix}")
    if needed > CONFIRM_BYTES and not yes:
        raise InputError(
            f"{estimate} ({format_bytes(have)} there); add --yes to go ahead, or {fix}"
        )
