"""``train(cfg, out)``: one training run, from a resolved config to a run folder.

The run folder (DESIGN.md, "Run directory")::

    RUN/config.yaml                 the resolved config (what ``--config`` would reproduce)
    RUN/checkpoints/last.ckpt       the latest validated weights (every validation)
    RUN/checkpoints/best.ckpt       the weights with the lowest val/loss
    RUN/logs/version_N/metrics.csv  per-step and per-epoch logs (one version per session;
                                    TensorBoard events beside them when tensorboard is installed)
    RUN/metrics.json                written last: final validation metrics, per-unit KL,
                                    train time, parameter count; its presence marks a
                                    finished run

Lightning's Trainer does the loop: CPU, one GPU, or many GPUs/nodes with DDP
(``train.devices``, ``train.strategy``, ``train.num_nodes``); ``train.epochs``,
``train.max_steps`` and ``train.max_minutes`` bound the run, whichever comes first, and
the final step is always validated and checkpointed. With ``train.ema_decay`` > 0
:class:`~latentcam.training.callbacks.WarmupEMAWeightAveraging` keeps a moving average of
the weights (and BatchNorm statistics) whose decay warms up, ``min(decay, (1 + t) / (10 +
t))`` at update t (TensorFlow's rule), so that a short run's average is not that of its
first, nearly random weights: validation metrics, ``best``/``last`` checkpoints and the
trained model are the average's, and each checkpoint also carries the live weights and the
update count so ``--resume`` goes on exactly.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger

from latentcam.checkpoint import (
    check_finite_weights,
    config_of,
    read_checkpoint,
    resolve_resume,
)
from latentcam.config import RunConfig, to_dict, to_yaml
from latentcam.errors import CheckpointError, ConfigError, InputError
from latentcam.io import atomic_write, check_output, ensure_dir, write_json, writing
from latentcam.training.callbacks import (
    AtomicCheckpointIO,
    StopAtMaxSteps,
    WarmupEMAWeightAveraging,
)
from latentcam.training.datamodule import FaceDataModule
from latentcam.training.module import ACTIVE_KL_THRESHOLD, LatentcamModule, seg_target_is_binary

log = logging.getLogger(__name__)

#: Lightning warnings that do not apply to these runs (main-process data loading is the
#: fastest on 2 cores; tiny smoke runs have fewer batches than the logging interval).
_EXPECTED_WARNINGS = (
    r".*does not have many workers.*",
    r".*is smaller than the logging interval.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*isinstance\(treespec, LeafSpec\).*",  # Lightning on this torch version
)


class TrainResult(NamedTuple):
    """What :func:`train` produced.

    Attributes:
        run_dir: the run folder.
        best_ckpt: ``RUN/checkpoints/best.ckpt`` (lowest val/loss), or None if none was saved.
        last_ckpt: ``RUN/checkpoints/last.ckpt``, or None.
        metrics: the content of ``RUN/metrics.json``.
    """

    run_dir: Path
    best_ckpt: Path | None
    last_ckpt: Path | None
    metrics: dict[str, Any]


def resolve_accelerator(accelerator: str) -> str:
    """``auto`` -> ``gpu`` when CUDA is available, else ``cpu``; other names unchanged."""
    if accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return accelerator


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto`` -> ``bf16-mixed`` on a GPU that supports it, ``16-mixed`` on other GPUs,
    ``32-true`` on the CPU; explicit values pass through (``32`` -> ``32-true``)."""
    if precision == "auto":
        if accelerator in ("gpu", "cuda"):
            return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        return "32-true"
    return {"32": "32-true", "64": "64-true"}.get(precision, precision)


def is_launching_process() -> bool:
    """True in the process that started the run (global rank 0 before and after DDP
    launches its workers); False in the workers Lightning or a cluster launcher starts."""
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(var, "0") or "0"
        if value.isdigit() and int(value) != 0:
            return False
    return True


def _check_resumable(cfg: RunConfig, ckpt_path: Path) -> int:
    """The checkpoint's global step; its model must be the one ``cfg`` describes."""
    checkpoint = read_checkpoint(ckpt_path)
    check_finite_weights(checkpoint)
    saved = to_dict(config_of(checkpoint))["model"]
    wanted = to_dict(cfg)["model"]
    diff = [
        f"model.{k}={saved[k]!r} (config: {wanted[k]!r})" for k in wanted if saved[k] != wanted[k]
    ]
    if diff:
        raise CheckpointError(
            f"cannot resume from {ckpt_path}: its model differs from the config: "
            f"{'; '.join(diff)}. Drop those settings (with --resume the CLI takes the model "
            "from the checkpoint), or start a new run"
        )
    return int(checkpoint.get("global_step", 0))


def _prepare_run_dir(run_dir: Path, continuing: bool, overwrite: bool) -> None:
    """Create ``run_dir``; refuse one that holds another run unless ``overwrite``.

    ``continuing`` means resuming from a checkpoint inside ``run_dir`` itself.
    """
    ensure_dir(run_dir, what="--out")
    for partial in (run_dir / "checkpoints").glob(".*.tmp"):  # a save cut short by a kill
        log.info("removing %s, left by an interrupted checkpoint save", partial)
        partial.unlink(missing_ok=True)
    finished = (run_dir / "metrics.json").is_file()
    started = any((run_dir / "checkpoints").glob("*.ckpt"))
    if continuing:
        (run_dir / "metrics.json").unlink(missing_ok=True)  # rewritten when this session ends
        return
    if not (finished or started):
        return
    if not overwrite:
        state = "a finished run" if finished else "checkpoints of an unfinished run"
        raise InputError(
            f"{run_dir} already holds {state}; use --overwrite or --resume (--overwrite "
            f"replaces it, --resume {run_dir} continues it), or choose another --out"
        )
    log.info("overwriting the run in %s", run_dir)
    for sub in ("checkpoints", "logs"):
        if (run_dir / sub).is_dir():
            shutil.rmtree(run_dir / sub)
    for name in ("metrics.json", "config.yaml"):
        (run_dir / name).unlink(missing_ok=True)


def _loggers(run_dir: Path) -> list[Logger]:
    """CSV logs in RUN/logs/version_N (one version per session), TensorBoard events beside
    them when tensorboard is installed."""
    csv = CSVLogger(save_dir=str(run_dir), name="logs")
    loggers: list[Logger] = [csv]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="logs", version=csv.version))
    except ModuleNotFoundError:  # lightning checks for tensorboard/tensorboardX on init
        log.debug("tensorboard is not installed: CSV logs only")
    return loggers


@contextmanager
def _quiet_expected_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        for pattern in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        yield


def _build_trainer(
    cfg: RunConfig, run_dir: Path, progress: bool, extra: Sequence[pl.Callback] = ()
) -> pl.Trainer:
    tcfg = cfg.train
    accelerator = resolve_accelerator(tcfg.accelerator)
    on_cpu = accelerator == "cpu"
    folder = run_dir / "checkpoints"
    # Two callbacks: Lightning's save_last only saves when the top-k checkpoint changed.
    # Both save after every validation (which also runs at the final step).
    best = ModelCheckpoint(
        dirpath=folder,
        filename="best",
        monitor="val/loss",
        mode="min",
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
        save_on_train_epoch_end=False,
    )
    last = ModelCheckpoint(
        dirpath=folder,
        filename="last",
        monitor=None,
        save_top_k=1,
        enable_version_counter=False,
        save_on_train_epoch_end=False,
    )
    callbacks: list[pl.Callback] = [best, last, StopAtMaxSteps(tcfg.max_steps), *extra]
    if tcfg.ema_decay > 0:
        # Lightning swaps the average in for validation and at the end of training, and
        # writes it as the checkpoint's state_dict (the live weights beside it, for --resume)
        callbacks.append(WarmupEMAWeightAveraging(decay=tcfg.ema_decay))
    try:
        return pl.Trainer(
            accelerator=accelerator,
            devices=tcfg.devices,
            strategy=tcfg.strategy,
            num_nodes=tcfg.num_nodes,
            precision=resolve_precision(tcfg.precision, accelerator),  # type: ignore[arg-type]
            max_epochs=tcfg.epochs if tcfg.epochs > 0 else -1,
            max_steps=tcfg.max_steps,
            max_time=timedelta(minutes=tcfg.max_minutes) if tcfg.max_minutes > 0 else None,
            gradient_clip_val=tcfg.grad_clip if tcfg.grad_clip > 0 else None,
            val_check_interval=tcfg.val_check_interval,
            log_every_n_steps=tcfg.log_every_n_steps,
            # CPU kernels are deterministic; on a GPU, ops without a deterministic kernel warn.
            deterministic=(True if on_cpu else "warn") if tcfg.deterministic else False,
            callbacks=callbacks,
            logger=_loggers(run_dir),
            default_root_dir=str(run_dir),
            enable_progress_bar=progress,
            enable_model_summary=progress,
            plugins=[AtomicCheckpointIO()],
            use_distributed_sampler=False,  # the datamodule shards batches itself
        )
    except (MisconfigurationException, ValueError) as err:
        raise ConfigError(
            f"cannot set up training with train.accelerator={tcfg.accelerator}, "
            f"train.devices={tcfg.devices}, train.strategy={tcfg.strategy}, "
            f"train.precision={tcfg.precision}: {err}"
        ) from None


def _json_safe(value: float) -> float | None:
    return value if math.isfinite(value) else None


def train(
    cfg: RunConfig,
    out: str | Path,
    resume: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    callbacks: Sequence[pl.Callback] = (),
) -> TrainResult:
    """Train the model ``cfg`` describes into the run folder ``out``.

    Args:
        cfg: the resolved run config (see :func:`latentcam.config.load_config`).
        out: the run folder (created if needed).
        resume: continue from a checkpoint: a ``.ckpt`` file, a run folder (its
            ``checkpoints/last.ckpt``) or ``"last"`` (that of ``out``); training goes on
            from the saved global step, epoch and optimiser state.
        overwrite: replace a run that ``out`` already holds (its checkpoints, logs and
            metrics); without it such a folder is refused.
        progress: show Lightning's progress bar and model summary.
        callbacks: more Lightning callbacks for the Trainer (e.g. a caller's own progress
            display, as the demo's); they must not change the training.

    Returns:
        TrainResult(run_dir, best_ckpt, last_ckpt, metrics).

    Raises:
        InputError: ``out`` holds a run and neither ``overwrite`` nor ``resume`` is given.
        CheckpointError: the checkpoint to resume from is missing, corrupt, or of another model.
        ConfigError: the run has no bound, or an invalid device/strategy/precision setting.
        TrainingDivergedError: the loss became NaN/Inf (the last good checkpoint is kept).
        DataError: the data cannot be read or lacks the labels the model needs.
        OutputError: a checkpoint, log or the metrics cannot be written (a full or
            read-only disk); the last complete checkpoint is kept.
    """
    tcfg = cfg.train
    if tcfg.epochs <= 0 and tcfg.max_steps <= 0 and tcfg.max_minutes <= 0:
        raise ConfigError(
            "the run has no end: set train.epochs, train.max_steps or train.max_minutes > 0"
        )
    seg_target_is_binary(cfg)  # config consistency, before any work
    run_dir = check_output(out, [cfg.data.path], what="--out", owns_run=True)
    ckpt_path = resolve_resume(resume, run_dir) if resume is not None else None
    start_step = _check_resumable(cfg, ckpt_path) if ckpt_path is not None else 0
    datamodule = FaceDataModule(cfg, progress=progress)
    datamodule.prepare_data()  # read and check the data before the run folder is touched
    datamodule.setup("fit")
    if is_launching_process():
        inside = ckpt_path is not None and run_dir.resolve() in ckpt_path.resolve().parents
        _prepare_run_dir(run_dir, continuing=inside, overwrite=overwrite)
        with atomic_write(run_dir / "config.yaml") as fh:
            fh.write(to_yaml(cfg))

    pl.seed_everything(tcfg.seed, workers=True, verbose=False)
    module = LatentcamModule(cfg)
    trainer = _build_trainer(cfg, run_dir, progress, callbacks)

    # a full or read-only disk under a checkpoint save or Lightning's own logs: one line
    with _quiet_expected_warnings(), writing(run_dir):
        started = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        train_seconds = time.perf_counter() - started
        if not module.last_val:  # no step ran in this session (e.g. resumed at max_steps)
            trainer.validate(module, datamodule=datamodule, verbose=False)

    checkpoint_cbs = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
    best_cb = next(cb for cb in checkpoint_cbs if cb.monitor is not None)
    last_cb = next(cb for cb in checkpoint_cbs if cb.monitor is None)
    best = Path(best_cb.best_model_path) if best_cb.best_model_path else None
    last = Path(last_cb.best_model_path) if last_cb.best_model_path else None
    best_score = best_cb.best_model_score
    metrics: dict[str, Any] = {
        "model": cfg.model.kind,
        **{k: _json_safe(v) for k, v in module.last_val.items()},
        "kl_per_unit": [_json_safe(v) for v in module.last_val_kl_per_unit],
        "active_units_threshold_nats": ACTIVE_KL_THRESHOLD,
    }
    if module.last_val_iou_per_class:
        metrics["iou_per_class"] = {
            k: _json_safe(v) for k, v in module.last_val_iou_per_class.items()
        }
    metrics.update(
        {
            "global_step": int(trainer.global_step),
            "start_step": start_step,
            "epochs_completed": int(trainer.current_epoch),
            "train_seconds": round(train_seconds, 3),
            "param_count": int(sum(p.numel() for p in module.model.parameters())),
            "world_size": int(trainer.world_size),
            "precision": str(trainer.precision),
            "best_val_loss": _json_safe(float(best_score)) if best_score is not None else None,
            "best_checkpoint": str(best) if best else None,
            "last_checkpoint": str(last) if last else None,
            "resumed_from": str(ckpt_path) if ckpt_path else None,
        }
    )
    if trainer.is_global_zero:
        write_json(run_dir / "metrics.json", metrics)
        log.info("run finished: %s (step %d)", run_dir, trainer.global_step)
    return TrainResult(run_dir=run_dir, best_ckpt=best, last_ckpt=last, metrics=metrics)
