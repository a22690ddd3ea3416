"""Lightning plumbing of a training run: atomic checkpoint files, a validated stop at
``max_steps``, a weight average that warms up, and the divergence error.

- :class:`AtomicCheckpointIO` writes every ``.ckpt`` to a temporary file in the same
  folder, fsyncs it and renames it over the target, so a SIGKILL in the middle of a save
  never leaves a truncated checkpoint; it also refuses to write weights that hold NaN/Inf.
- :class:`StopAtMaxSteps` stops through ``trainer.should_stop`` when ``max_steps`` is
  reached, which makes Lightning validate (and checkpoint) the final step even when it
  falls in the middle of an epoch.
- :class:`WarmupEMAWeightAveraging` keeps an exponential moving average of the weights
  whose decay ramps up with the number of updates (:func:`ema_warmup_decay`), so that the
  average is never dominated by the first, nearly random weights of a short run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import WeightAveraging
from torch.optim.swa_utils import get_ema_multi_avg_fn

from latentcam.checkpoint import nonfinite_entries
from latentcam.errors import TrainingDivergedError
from latentcam.io import atomic_path


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


def ema_warmup_decay(decay: float, num_averaged: int) -> float:
    """The decay of the next update of a moving average that already holds ``num_averaged``
    updates: ``min(decay, (1 + t) / (10 + t))`` with ``t = num_averaged``.

    This is the ``num_updates`` rule of TensorFlow's ``ExponentialMovingAverage``: early on
    the average follows the live weights closely (0.1 at t = 0, 2/11 at t = 1, 0.55 at
    t = 10) and it reaches ``decay`` once ``t >= (10 decay - 1) / (1 - decay)`` (890
    updates for 0.99). With a fixed decay the first weights of a run keep a share of
    ``decay ** (t - 1)`` in the average after t updates (0.99 ** 95 = 0.38 after 96).

    Args:
        decay: the largest decay, in [0, 1).
        num_averaged: t, the updates already in the average (0 or more).

    Returns:
        The decay d_t in [0, decay]: the update is ``avg = d_t avg + (1 - d_t) live``.
    """
    return min(decay, (1 + num_averaged) / (10 + num_averaged))


class WarmupEMAWeightAveraging(WeightAveraging):
    """Lightning's weight averaging with an exponential moving average whose decay warms
    up: update t (after every optimiser step) uses :func:`ema_warmup_decay` ``(decay, t)``.

    t is the ``n_averaged`` count of torch's ``AveragedModel``, which Lightning checkpoints
    with the average (``averaging_state``), so ``--resume`` goes on with the same decays.
    The first update copies the live weights (``AveragedModel`` does so when it holds
    nothing yet), so the rule first applies at t = 1. As with Lightning's
    ``EMAWeightAveraging``, parameters and buffers (BatchNorm statistics) are averaged;
    validation and the end of training swap the average in, and checkpoints store it as
    their ``state_dict`` with the live weights beside it (``current_model_state``).
    """

    def __init__(self, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"the EMA decay must lie in [0, 1), got {decay}")

        @torch.no_grad()
        def warmup_ema_update(
            averaged: list[torch.Tensor], live: list[torch.Tensor], num_averaged: torch.Tensor
        ) -> None:
            # torch's EMA step (foreach lerp on floats), with this update's decay
            step_decay = ema_warmup_decay(decay, int(num_averaged))
            get_ema_multi_avg_fn(step_decay)(averaged, live, num_averaged)

        super().__init__(use_buffers=True, multi_avg_fn=warmup_ema_update)
        self.decay = decay
