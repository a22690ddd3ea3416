"""Lightning plumbing of a training run: atomic checkpoint files, a validated stop at
``max_steps``, and the divergence error.

- :class:`AtomicCheckpointIO` writes every ``.ckpt`` to a temporary file in the same
  folder, fsyncs it and renames it over the target, so a SIGKILL in the middle of a save
  never leaves a truncated checkpoint; it also refuses to write weights that hold NaN/Inf.
- :class:`StopAtMaxSteps` stops through ``trainer.should_stop`` when ``max_steps`` is
  reached, which makes Lightning validate (and checkpoint) the final step even when it
  falls in the middle of an epoch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from latentcam.errors import TrainingDivergedError
from latentcam.io import atomic_path


def nonfinite_entries(state_dict: dict[str, Any], show: int = 3) -> list[str]:
    """Names of (up to ``show``) floating tensors in ``state_dict`` holding NaN or Inf."""
    bad: list[str] = []
    for name, value in state_dict.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            if not bool(torch.isfinite(value).all()):
                bad.append(name)
                if len(bad) >= show:
                    break
    return bad


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file beside the target, fsync, then rename.

    Raises:
        TrainingDivergedError: the model weights contain NaN/Inf (a diverged model is
            never saved, so the last good checkpoint stays in place).
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        bad = nonfinite_entries(checkpoint.get("state_dict", {}))
        if bad:
            raise TrainingDivergedError(
                f"refusing to save checkpoint {path} at step {checkpoint.get('global_step')}: "
                f"weights {', '.join(bad)} hold NaN/Inf (training diverged; lower train.lr, "
                "set train.grad_clip, or check the input data); the last good checkpoint is kept"
            )
        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as fh:
            torch.save(checkpoint, fh)
            fh.flush()
            os.fsync(fh.fileno())


class StopAtMaxSteps(pl.Callback):
    """Request a stop once ``global_step >= max_steps`` (no-op when ``max_steps <= 0``).

    Lightning's own ``max_steps`` ends the loop without validating a step that falls inside
    an epoch; stopping through ``trainer.should_stop`` validates it first, so that the final
    weights are measured and checkpointed.
    """

    def __init__(self, max_steps: int) -> None:
        self.max_steps = max_steps

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self.max_steps > 0 and trainer.global_step >= self.max_steps:
            trainer.should_stop = True
