"""Where the reliability tests write their counts and messages for docs/reliability.md."""

from __future__ import annotations

import os
from pathlib import Path


def tally_file(stem: str, suffix: str) -> Path | None:
    """``FOLDER/<stem>-<worker><suffix>`` (the folder made) when
    ``LATENTCAM_RELIABILITY_TALLY=FOLDER`` is set, else None: one file per xdist worker, so
    that workers never write to the same file."""
    folder = os.environ.get("LATENTCAM_RELIABILITY_TALLY")
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return Path(folder) / f"{stem}-{worker}{suffix}"
