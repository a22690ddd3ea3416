"""``latentcam demo``: everything the tool does, on built-in synthetic faces, in minutes.

Renders synthetic faces (cached after the first run), trains a VAE, a CVAE and a 19-class
SegVAE for a fixed wall-clock budget each, then explains, traverses and evaluates each run and
writes one HTML report per run plus ``OUT/index.html`` linking them with the headline
numbers. Each run is an ordinary run folder (``OUT/vae`` ...) that every other command
accepts.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from latentcam.config import RunConfig, load_config
from latentcam.io import check_output, ensure_dir
from latentcam.report.build import build_report
from latentcam.report.html import Report
from latentcam.report.trust import merge_glances, read_glance
from latentcam.training.train import train

log = logging.getLogger(__name__)

#: (name, recipe, overrides, share of the training budget)
DEMO_RUNS: tuple[tuple[str, str, tuple[str, ...], float], ...] = (
    ("vae", "vae64", ("model.latent_dim=32",), 0.4),
    ("cvae", "vae64", ("model.kind=cvae", "model.latent_dim=32"), 0.3),
    ("segvae", "segvae64", (), 0.3),  # the paper's: binary mask of the face parts
)


def demo_configs(minutes: float, n_images: int, seed: int = 0) -> dict[str, RunConfig]:
    """The demo's three run configs, sharing ``minutes`` of training between them."""
    configs = {}
    for name, recipe, overrides, share in DEMO_RUNS:
        configs[name] = load_config(
            [recipe],
            [
                *overrides,
                "data.path=synth",
                f"data.synth_n={n_images}",
                "train.epochs=10000",
                f"train.max_minutes={minutes * share:.3f}",
                f"train.seed={seed}",
            ],
        )
    return configs


def run_demo(
    out: str | Path = "latentcam-demo",
    minutes: float = 6.0,
    n_images: int = 3000,
    progress: bool = True,
) -> Path:
    """Run the demo into ``out`` and return the path of ``out/index.html``.

    Args:
        out: output folder (runs, reports and the index are written under it).
        minutes: training budget shared by the three models (the rest of the demo, data,
            evaluation and reports, takes about three more minutes on two CPU cores).
        n_images: synthetic faces rendered (64 px).
    """
    out = ensure_dir(check_output(out))
    started = time.perf_counter()
    summary: list[dict[str, Any]] = []
    for name, cfg in demo_configs(minutes, n_images).items():
        log.info("demo: training the %s for %.1f min", name, cfg.train.max_minutes)
        result = train(cfg, out / name, overwrite=True, progress=progress)
        log.info("demo: explaining, traversing and evaluating the %s", name)
        report = build_report(
            result.run_dir, out / name / "report", n=6, eval_n=128, progress=progress
        )
        m = result.metrics
        summary.append(
            {
                "run": name,
                "steps": m.get("global_step"),
                "train_s": m.get("train_seconds"),
                "val PSNR (dB)": m.get("val/psnr"),
                "val SSIM": m.get("val/ssim"),
                "val mIoU": m.get("val/miou"),
                "val binary IoU": m.get("val/iou_binary"),
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
