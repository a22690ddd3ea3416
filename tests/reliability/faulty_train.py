"""``latentcam`` with test-only fault hooks, launched as a subprocess by test_kill.py.

Usage: ``python faulty_train.py train --out RUN ...`` (any ``latentcam`` arguments).
The hooks are set by environment variables, and nothing is patched in the package itself:

``FAULT_MARKS`` (required)
    a folder; at the start of every training step the file ``step-{global_step}`` is
    created in it, so the test knows how far training got (``global_step`` counts the
    optimiser steps completed so far).
``FAULT_STEP_SLEEP``
    seconds to sleep at the start of every training step (so that a kill sent after
    ``step-N`` appears lands inside step N's training code, not in a save).
``FAULT_HANG_IN_SAVE=1``
    the first checkpoint save of the session writes half of its bytes into the
    temporary file that :class:`latentcam.training.callbacks.AtomicCheckpointIO`
    renames afterwards, writes ``saving.json`` (temporary path, global step, full size)
    into ``FAULT_MARKS``, and then hangs: a kill sent then lands in the middle of a save.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def _mark(folder: Path, name: str, text: str = "") -> None:
    """Create ``folder/name`` atomically (the test may read it at any moment)."""
    tmp = folder / f".{name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, folder / name)


def install_hooks(marks: Path, step_sleep: float, hang_in_save: bool) -> None:
    import torch

    from latentcam.training.module import LatentcamModule

    training_step = LatentcamModule.training_step

    def marked_training_step(self: Any, batch: Any, batch_idx: int) -> Any:
        _mark(marks, f"step-{int(self.global_step)}")
        if step_sleep > 0:
            time.sleep(step_sleep)
        return training_step(self, batch, batch_idx)

    LatentcamModule.training_step = marked_training_step  # type: ignore[method-assign]

    if not hang_in_save:
        return
    save = torch.save

    def hanging_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if not hasattr(f, "write"):  # only saves into an open file: the checkpoint writer's
            save(obj, f, *args, **kwargs)
            return
        buffer = io.BytesIO()
        save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        info = {"tmp": str(f.name), "step": int(obj.get("global_step", -1)), "bytes": len(data)}
        _mark(marks, "saving.json", json.dumps(info))
        time.sleep(600)  # killed here
        f.write(data[len(data) // 2 :])

    torch.save = hanging_save


def main() -> int:
    marks = Path(os.environ["FAULT_MARKS"])
    install_hooks(
        marks,
        step_sleep=float(os.environ.get("FAULT_STEP_SLEEP", "0")),
        hang_in_save=os.environ.get("FAULT_HANG_IN_SAVE") == "1",
    )
    from latentcam.cli import main as latentcam_main

    return latentcam_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
