"""Training throughput in images per second, through the real training path, per precision.

Issue #3 asks for one measured training throughput on a GPU, with and without mixed
precision. For every recipe x precision this script builds what ``latentcam train`` builds
(the run's :class:`LatentcamModule` and :class:`FaceDataModule` on the built-in synthetic
faces) and fits it with a Lightning Trainer on one device: ``--warmup`` steps untimed, then
``--windows`` windows of ``--steps`` optimiser steps each, timed with the device
synchronised at every window's end. No validation, logger or checkpoint runs inside the
timed steps, so the figure is the training loop itself: batch slicing, the host-to-device
copy, forward, loss, backward and the Adam step.

Reported per row: the median images/s over the windows (and the slowest and fastest
window), the step time, and on CUDA the peak GPU memory of the fit. ``deterministic`` is
the config's ``train.deterministic`` (default on, as in ``latentcam train``: on a GPU
Lightning then turns off cuDNN's autotuner); ``--set train.deterministic=false`` measures
without it. Output: a Markdown table (stdout, and ``--out FILE.md``); the last line printed
is a JSON object with the numbers.

    python benchmarks/train_throughput.py --accelerator gpu     # 5 recipes x 32 / bf16 / fp16
    python benchmarks/train_throughput.py --recipes vae256 --precisions 32,bf16-mixed \\
        --set data.batch_size=128 --accelerator gpu
    python benchmarks/train_throughput.py --quick               # seconds on a CPU: tiny, 32
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from latentcam.config import load_config
from latentcam.errors import LatentcamError
from latentcam.io import atomic_write
from latentcam.training.datamodule import FaceDataModule
from latentcam.training.module import LatentcamModule
from latentcam.training.train import resolve_accelerator, resolve_precision

DEFAULT_RECIPES = ("vae64", "vae256", "cvae128", "segvae64_spatial", "segvae256")
DEFAULT_PRECISIONS = ("32", "bf16-mixed", "16-mixed")


@dataclass(frozen=True)
class Row:
    recipe: str
    image_size: int
    batch_size: int
    params: int
    precision: str
    deterministic: bool
    images_per_s: float  # median over the windows
    images_per_s_min: float
    images_per_s_max: float
    ms_per_step: float  # at the median rate
    peak_mem_gib: float | None  # CUDA only


class WindowTimer(pl.Callback):
    """Marks the time after step ``warmup`` and after every ``window`` steps from there,
    synchronising the device first so that queued GPU work is counted."""

    def __init__(self, warmup: int, window: int) -> None:
        self.warmup, self.window = warmup, window
        self.marks: list[float] = []

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        step = trainer.global_step
        if step < self.warmup or (step - self.warmup) % self.window:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.marks.append(time.perf_counter())


def measure(
    recipe: str,
    precision: str,
    args: argparse.Namespace,
) -> Row:
    """Fit ``recipe`` for warmup + windows x steps steps at ``precision``; time the windows."""
    overrides = [
        "data.path=synth",
        f"data.synth_n={args.synth_n}",
        f"train.accelerator={args.accelerator}",
        f"train.precision={precision}",
        *args.set,
    ]
    cfg = load_config([recipe], overrides)
    accelerator = resolve_accelerator(cfg.train.accelerator)
    on_cpu = accelerator == "cpu"
    datamodule = FaceDataModule(cfg, progress=False)
    datamodule.prepare_data()
    datamodule.setup("fit")
    pl.seed_everything(cfg.train.seed, workers=True, verbose=False)
    module = LatentcamModule(cfg)
    timer = WindowTimer(args.warmup, args.steps)
    deterministic: bool | str = False
    if cfg.train.deterministic:
        deterministic = True if on_cpu else "warn"  # as latentcam train sets it
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=resolve_precision(precision, accelerator),  # type: ignore[arg-type]
        max_epochs=-1,
        max_steps=args.warmup + args.steps * args.windows,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        deterministic=deterministic,
        callbacks=[timer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    if not on_cpu and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(module, datamodule=datamodule)
    spans = [b - a for a, b in zip(timer.marks, timer.marks[1:], strict=False)]
    if len(spans) != args.windows:
        raise RuntimeError(f"{recipe}/{precision}: timed {len(spans)} of {args.windows} windows")
    batch = cfg.data.batch_size
    rates = [args.steps * batch / s for s in spans]
    median = statistics.median(rates)
    peak = None
    if not on_cpu and torch.cuda.is_available():
        peak = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return Row(
        recipe=recipe,
        image_size=cfg.model.image_size,
        batch_size=batch,
        params=sum(p.numel() for p in module.model.parameters()),
        precision=str(trainer.precision),
        deterministic=bool(cfg.train.deterministic),
        images_per_s=round(median, 1),
        images_per_s_min=round(min(rates), 1),
        images_per_s_max=round(max(rates), 1),
        ms_per_step=round(1000 * batch / median, 2),
        peak_mem_gib=peak,
    )


def device_name(accelerator: str) -> str:
    if resolve_accelerator(accelerator) != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU, {torch.get_num_threads()} threads"


def table(rows: list[Row], device: str, args: argparse.Namespace) -> str:
    lines = [
        f"Training throughput on {device}; torch {torch.__version__}, "
        f"lightning {pl.__version__}. {args.warmup} warm-up steps, then the median of "
        f"{args.windows} windows of {args.steps} steps (min-max in brackets); synthetic "
        f"faces ({args.synth_n}); overrides: {' '.join(args.set) or 'none'}.",
        "",
        "| recipe | px | batch | params | precision | deterministic | images/s | ms/step "
        "| peak GPU mem (GiB) |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        mem = "" if r.peak_mem_gib is None else f"{r.peak_mem_gib:.2f}"
        lines.append(
            f"| {r.recipe} | {r.image_size} | {r.batch_size} | {r.params / 1e6:.2f} M "
            f"| {r.precision} | {'yes' if r.deterministic else 'no'} "
            f"| {r.images_per_s:,.0f} ({r.images_per_s_min:,.0f}-{r.images_per_s_max:,.0f}) "
            f"| {r.ms_per_step:.2f} | {mem} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(DEFAULT_RECIPES), help="comma list")
    parser.add_argument(
        "--precisions",
        default=",".join(DEFAULT_PRECISIONS),
        help="comma list of train.precision values (32, 16-mixed, bf16-mixed)",
    )
    parser.add_argument("--accelerator", default="auto", help="cpu | gpu | auto")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=25, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=5, help="timed windows")
    parser.add_argument("--synth-n", type=int, default=2048, help="synthetic faces rendered")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for every row, e.g. data.batch_size=128",
    )
    parser.add_argument("--quick", action="store_true", help="tiny recipe, fp32, few steps")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    if args.quick:
        args.recipes, args.precisions = "tiny", "32"
        args.warmup, args.steps, args.windows, args.synth_n = 2, 2, 2, 96
    if min(args.warmup, args.steps, args.windows) < 1:
        parser.error("--warmup, --steps and --windows must be at least 1")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    rows: list[Row] = []
    try:
        for recipe in args.recipes.split(","):
            for precision in args.precisions.split(","):
                row = measure(recipe, precision, args)
                print(json.dumps(asdict(row)), file=sys.stderr, flush=True)
                rows.append(row)
    except LatentcamError as err:
        sys.exit(f"train_throughput: {err}")
    text = table(rows, device_name(args.accelerator), args)
    print(text)
    if args.out:
        with atomic_write(args.out) as fh:
            fh.write(text + "\n")
    print(json.dumps({"device": device_name(args.accelerator), "rows": [asdict(r) for r in rows]}))
    return rows


if __name__ == "__main__":
    main()
