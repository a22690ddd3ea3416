"""``latentcam demo``: everything the tool does, on built-in synthetic faces, in minutes.

Renders synthetic faces (cached after the first run), trains a VAE, a CVAE and a binary
SegVAE (the paper's mask of the face parts) for a fixed number of optimiser steps each, then
explains, traverses and evaluates each run and writes one HTML report per run plus
``OUT/index.html`` linking them with the headline numbers. Each run is an ordinary run folder
(``OUT/vae`` ...) that every other command accepts.

The budgets are steps, not minutes, so the same seed gives the same models and the same
metrics on a quiet machine and on a busy one; a busy machine only takes longer. The step
budgets and recipes (:data:`DEMO_RUNS`) were chosen to reach the quality targets of issue 19
in under 10 minutes on two quiet CPU cores; what they reach is measured in
docs/benchmarks/demo_steps.md. ``minutes`` is an optional cap on top.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import lightning.pytorch as pl
from tqdm.auto import tqdm

from latentcam.config import RunConfig, load_config
from latentcam.data.dataset import SYNTH, load_face_data
from latentcam.io import check_output, ensure_dir
from latentcam.report.build import build_report
from latentcam.report.html import Report
from latentcam.report.trust import merge_glances, read_glance
from latentcam.training.train import train

log = logging.getLogger(__name__)


class DemoRun(NamedTuple):
    """One model of the demo.

    Attributes:
        name: its run folder under the demo's output (and its name in the index).
        recipe: the packaged recipe it starts from.
        overrides: the demo's changes to the recipe (``key=value``).
        steps: optimiser steps it trains (its budget; the onecycle schedule spans them).
        quiet_step_s: seconds per step, validation included, on two quiet CPU cores
            (measured; only the progress bar's estimate uses it).
        quiet_report_s: seconds to explain, traverse, evaluate and report on two quiet cores.
    """

    name: str
    recipe: str
    overrides: tuple[str, ...]
    steps: int
    quiet_step_s: float
    quiet_report_s: float


#: Warm-up over the first 10% of the steps to the peak lr, then cosine annealing: the schedule
#: scales with the budget, so ``--max-steps`` gives a shorter run that still ends annealed.
_ONECYCLE = ("train.lr_schedule=onecycle", "train.lr=3e-3")

#: The demo's models, budgets and recipe changes (docs/benchmarks/demo_steps.md).
DEMO_RUNS: tuple[DemoRun, ...] = (
    DemoRun("vae", "vae64", ("model.latent_dim=32", *_ONECYCLE), 450, 0.34, 46.0),
    # 16 units and a KL weight of 4: a tighter code, so the decoder takes the attributes from
    # the condition rather than from z (higher flip rates than beta 1: demo_steps.md)
    DemoRun(
        "cvae",
        "vae64",
        ("model.kind=cvae", "model.latent_dim=16", "train.beta=4.0", *_ONECYCLE),
        400,
        0.35,
        46.0,
    ),
    # the paper's binary mask of the face parts (BCE + soft Jaccard, KL weight 0) from
    # segvae64_spatial's net with its bottleneck at the 4x4 map: 2 channels x 4 x 4 = 32
    # units, explained like the others. The paper's vector bottleneck (segvae64) stayed below
    # the IoU target at this budget even with 16 units (demo_steps.md). No weight average:
    # the onecycle annealing already settles the weights
    DemoRun(
        "segvae",
        "segvae64_spatial",
        ("model.min_feature_size=4", "model.latent_dim=2", "train.ema_decay=0.0", *_ONECYCLE),
        300,
        0.32,
        48.0,
    ),
)

#: Seconds per 1000 synthetic faces rendered and cached, on two quiet cores (the bar's estimate).
_QUIET_RENDER_S_PER_1000 = 6.5


def demo_configs(
    n_images: int = 3000,
    seed: int = 0,
    max_steps: int | None = None,
    minutes: float | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, RunConfig]:
    """The demo's run configs, by run name (``vae``, ``cvae``, ``segvae``).

    Args:
        n_images: synthetic faces rendered (64 px; 80/10/10 split).
        seed: the training seed of every run (the faces are always those of seed 0).
        max_steps: train every model this many steps instead of its budget
            (:data:`DEMO_RUNS`), e.g. a tiny demo for a test or an undertrained one.
        minutes: an optional wall-clock cap on the training, shared by the models in
            proportion to their steps; a model it stops early misses its budget (the demo
            warns).
        overrides: ``key=value`` config overrides for every model, after the demo's own
            (e.g. a smaller model, for a test).
    """
    steps = {r.name: r.steps if max_steps is None else max_steps for r in DEMO_RUNS}
    total = sum(steps.values())
    configs = {}
    for run in DEMO_RUNS:
        cap = 0.0 if minutes is None else minutes * steps[run.name] / total
        configs[run.name] = load_config(
            [run.recipe],
            [
                *run.overrides,
                "data.path=synth",
                f"data.synth_n={n_images}",
                "train.epochs=10000",  # the step budget ends the run
                f"train.max_steps={steps[run.name]}",
                f"train.max_minutes={cap:.3f}",
                f"train.seed={seed}",
                *overrides,
            ],
        )
    return configs


class _StepBar(pl.Callback):
    """Advance the demo's bar by a model's quiet seconds per step after every step."""

    def __init__(self, bar: tqdm, step_s: float) -> None:
        self.bar = bar
        self.step_s = step_s

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.bar.update(self.step_s)
        self.bar.set_postfix_str(f"step {trainer.global_step}/{trainer.max_steps}", refresh=False)


@contextmanager
def _stage(bar: tqdm, what: str, quiet_s: float) -> Iterator[None]:
    """Name the stage on the bar; on exit, move the bar to the stage's end."""
    start = bar.n
    bar.set_description_str(f"demo: {what}")
    bar.set_postfix_str("")
    yield
    bar.update(max(0.0, start + quiet_s - bar.n))


def _stage_weights(
    configs: Mapping[str, RunConfig], n_images: int
) -> tuple[float, dict[str, float]]:
    """The bar's units: quiet seconds of rendering, and of each model's training + report."""
    runs = {r.name: r for r in DEMO_RUNS}
    render = _QUIET_RENDER_S_PER_1000 * n_images / 1000
    per_model = {
        name: cfg.train.max_steps * runs[name].quiet_step_s + runs[name].quiet_report_s
        for name, cfg in configs.items()
    }
    return render, per_model


def run_demo(
    out: str | Path = "latentcam-demo",
    n_images: int = 3000,
    seed: int = 0,
    max_steps: int | None = None,
    minutes: float | None = None,
    progress: bool = True,
    overrides: Sequence[str] = (),
) -> Path:
    """Run the demo into ``out`` and return the path of ``out/index.html``.

    One progress bar, in quiet-machine seconds, with an ETA, covers every stage: render, then
    per model train, then explain, traverse, evaluate and report (whose own bars show below).

    Args:
        out: output folder (runs, reports and the index are written under it).
        n_images: synthetic faces rendered (64 px).
        seed: training seed; the same seed gives the same models and metrics.
        max_steps, minutes, overrides: see :func:`demo_configs`.
        progress: show the progress bars.
    """
    out = ensure_dir(check_output(out))
    started = time.perf_counter()
    configs = demo_configs(n_images, seed, max_steps, minutes, overrides)
    render_s, model_s = _stage_weights(configs, n_images)
    quiet_step_s = {r.name: r.quiet_step_s for r in DEMO_RUNS}
    bar = tqdm(
        total=round(render_s + sum(model_s.values())),
        disable=not progress,
        unit="s",
        bar_format="{desc}{postfix} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]",
        dynamic_ncols=True,
    )
    summary: list[dict[str, Any]] = []
    with bar:
        with _stage(bar, f"render {n_images} faces", render_s):
            first = next(iter(configs.values()))
            load_face_data(SYNTH, first.model.image_size, synth_n=n_images, progress=progress)
        for name, cfg in configs.items():
            budget = cfg.train.max_steps
            train_s = budget * quiet_step_s[name]
            log.info("demo: training the %s for %d steps", name, budget)
            with _stage(bar, f"train {name}", train_s):
                result = train(
                    cfg,
                    out / name,
                    overwrite=True,
                    progress=False,
                    callbacks=[_StepBar(bar, quiet_step_s[name])],
                )
            m = result.metrics
            steps = int(m.get("global_step", 0))
            note = None
            if steps < budget:
                note = (
                    f"--minutes cut training short at step {steps} of {budget}: the metrics "
                    "fall short of what the full budget reaches"
                )
                log.warning("demo: the %s: %s", name, note)
                note = f"WARNING: {note}"
            log.info("demo: explaining, traversing and evaluating the %s", name)
            with _stage(bar, f"explain, evaluate, report {name}", model_s[name] - train_s):
                report = build_report(
                    result.run_dir, out / name / "report", n=6, eval_n=128, progress=progress
                )
            summary.append(
                {
                    "run": name,
                    "steps": steps,
                    "step budget": budget,
                    "train_s": m.get("train_seconds"),
                    "val PSNR (dB)": m.get("val/psnr"),
                    "val SSIM": m.get("val/ssim"),
                    "val mIoU": m.get("val/miou"),
                    "val binary IoU": m.get("val/iou_binary"),
                    "note": note,
                    "report": report,
                }
            )
    subtitle = (
        f"synthetic faces, 64 px, {n_images} images; finished in "
        f"{(time.perf_counter() - started) / 60:.1f} min"
    )
    return write_index(out, summary, subtitle)


def write_index(out: Path, summary: list[dict[str, Any]], subtitle: str) -> Path:
    """``out/index.html``: the at-a-glance box of every run's report, then the headline
    table (one row per ``summary`` entry: ``run``, its numbers, ``report``: the path of its
    index.html) and a link to each report."""
    index = Report(title="latentcam demo", subtitle=subtitle)
    looks = {r["run"]: read_glance(Path(r["report"]).parent) for r in summary}
    index.glance = merge_glances(looks)  # what each report's own box says, run by run
    index.banner = index.glance.banner
    for r in summary:
        r["what to trust"] = looks[r["run"]].headline
    sec = index.section("Runs")
    sec.text(
        "Three models trained briefly on the built-in synthetic faces. Each report reproduces the "
        "paper's figures for its run and adds the measurements: where each unit looks, what it "
        "changes, and whether the two agree with the real face parts."
    )
    sec.table([{k: v for k, v in r.items() if k != "report"} for r in summary])
    for r in summary:
        sec.link(os.path.relpath(r["report"], out), f"{r['run']} report")
    return index.write(out)
