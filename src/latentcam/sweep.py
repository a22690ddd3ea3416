"""``latentcam sweep``: the paper's architecture comparison (its Fig. 8, Sec. 5.3) as numbers.

Every point of a grid over image size x latent size x conv layers is an ordinary run folder
``DIR/size{S}-latent{K}-layers{L}``, trained with :func:`latentcam.training.train` and
measured with :func:`latentcam.evaluate.evaluate`. The sweep is resumable: a point whose run
finished and was evaluated is skipped; a point with checkpoints but no final metrics resumes
from ``last.ckpt``. The summary answers the paper's question "how many latent units": the
smallest latent size within 1 dB PSNR (or 0.01 IoU) of the best, and the point that
localises best.

Spreading points over machines: every point is independent, so run the same command on each
machine with ``--points i/n`` (this machine takes points i, i+n, i+2n, ...) into a shared
folder, then once more without it (finished points are skipped) to write the summary.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from latentcam import plots
from latentcam.config import RunConfig, load_config, to_dict
from latentcam.errors import ConfigError, InputError
from latentcam.evaluate import evaluate, jsonable
from latentcam.explain.cam import latent_cams, normalise, upsample
from latentcam.figures import make_grid, overlay, save_figure, save_png, to_uint8_hwc
from latentcam.generate import as_pictures
from latentcam.io import atomic_write, check_output, ensure_dir, write_json
from latentcam.models.protocol import Capabilities, has_seg_output
from latentcam.models.registry import capabilities_of
from latentcam.runs import open_run_data
from latentcam.training.train import train

log = logging.getLogger(__name__)

#: Grid axes and the config key each one sets.
AXES = {"size": "model.image_size", "latent": "model.latent_dim", "layers": "model.num_layers"}


class SweepPoint(NamedTuple):
    size: int
    latent: int
    layers: int

    @property
    def name(self) -> str:
        return f"size{self.size}-latent{self.latent}-layers{self.layers}"


def parse_grid(items: Sequence[str]) -> dict[str, list[int]]:
    """``["size=64,128", "latent=5,15"]`` -> ``{"size": [64, 128], "latent": [5, 15], ...}``.

    Axes not given keep the base config's value (filled in by :func:`grid_points`).
    """
    grid: dict[str, list[int]] = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--grid item '{item}' is not axis=v1,v2 (axes: {', '.join(AXES)})")
        axis, values = item.split("=", 1)
        if axis not in AXES:
            raise InputError(f"--grid axis '{axis}' is unknown; choose from {', '.join(AXES)}")
        try:
            parsed = [int(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise InputError(f"--grid {axis}: '{values}' is not a list of integers") from None
        if not parsed or min(parsed) <= 0:
            raise InputError(f"--grid {axis}: give positive integers, got '{values}'")
        grid[axis] = parsed
    return grid


def grid_points(grid: Mapping[str, Sequence[int]], base: RunConfig) -> list[SweepPoint]:
    sizes = grid.get("size", [base.model.image_size])
    latents = grid.get("latent", [base.model.latent_dim])
    layers = grid.get("layers", [base.model.num_layers])
    return [SweepPoint(*p) for p in itertools.product(sizes, latents, layers)]


def point_config(base: RunConfig, point: SweepPoint) -> RunConfig:
    """The base config with the point's size, latent size and depth (validated)."""
    overrides = [
        f"{AXES['size']}={point.size}",
        f"{AXES['latent']}={point.latent}",
        f"{AXES['layers']}={point.layers}",
    ]
    return load_config(base=to_dict(base), overrides=overrides)


def _status(run_dir: Path) -> str:
    if (run_dir / "evaluation.json").is_file() and (run_dir / "metrics.json").is_file():
        return "done"
    if (run_dir / "metrics.json").is_file():
        return "trained"
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        return "interrupted"
    return "new"


def run_sweep(
    base: RunConfig,
    grid: Mapping[str, Sequence[int]],
    out: str | Path,
    points: tuple[int, int] | None = None,
    eval_n: int = 128,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train and evaluate every grid point under ``out``; write the summary. Returns its rows.

    Args:
        base: the config every point starts from (model kind, data, training budget ...).
        grid: axis -> values, from :func:`parse_grid`.
        out: the sweep folder.
        points: ``(i, n)`` to run only points i, i+n, ... on this machine (no summary then).
        eval_n: validation images each point is evaluated on.
    """
    _check_grid_budget(base)
    out = ensure_dir(check_output(out, [base.data.path]))
    all_points = grid_points(grid, base)
    configs = {p: point_config(base, p) for p in all_points}  # validate every point first
    todo = all_points if points is None else all_points[points[0] :: points[1]]
    for i, point in enumerate(todo, 1):
        run_dir = out / point.name
        state = _status(run_dir)
        log.info("[%d/%d] %s: %s", i, len(todo), point.name, state)
        if state == "done":
            continue
        if state in ("new", "interrupted"):
            resume = run_dir / "checkpoints" / "last.ckpt" if state == "interrupted" else None
            train(configs[point], run_dir, resume=resume, progress=progress)
        batch = open_run_data(run_dir, n=eval_n, progress=progress)
        write_json(
            run_dir / "evaluation.json", jsonable(evaluate(batch, sanity=False, progress=progress))
        )
        _save_sheet_cell(run_dir, batch)
    if points is not None and points[1] > 1:
        return []
    rows = [summary_row(out / p.name, p) for p in all_points]
    write_summary(out, rows, capabilities_of(base.model))
    return rows


def _save_sheet_cell(run_dir: Path, batch: Any) -> None:
    """A small picture per point: input, recon (or mask) and averaged heatmap of 3 images."""
    import torch

    model = batch.run.model
    x = batch.images[:3]
    cond = None if batch.cond is None else batch.cond[:3]
    res = latent_cams(model, x, cond=cond)
    with torch.no_grad():
        mu, _ = model.encode(x, cond)
        pictures = as_pictures(model.decode(mu, cond))
    heat = normalise(upsample(res.maps.mean(1, keepdim=True), x.shape[-1]), per="map")[:, 0]
    tiles = [
        t
        for i in range(x.shape[0])
        for t in (
            to_uint8_hwc(x[i])[0],
            to_uint8_hwc(pictures[i])[0],
            overlay(x[i : i + 1], heat[i : i + 1])[0],
        )
    ]
    import numpy as np

    save_png(run_dir / "sheet.png", make_grid(np.stack(tiles), nrow=3))


def _get(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


def summary_row(run_dir: Path, point: SweepPoint) -> dict[str, Any]:
    """One summary row from a point's metrics.json and evaluation.json (None where missing)."""
    train_m = (
        json.loads((run_dir / "metrics.json").read_text())
        if (run_dir / "metrics.json").is_file()
        else {}
    )
    ev = (
        json.loads((run_dir / "evaluation.json").read_text())
        if (run_dir / "evaluation.json").is_file()
        else {}
    )
    layer = _get(ev, "localisation", "default_layer")
    loc = _get(ev, "localisation", "layers", layer, "mean_over_active") or {}
    return {
        "point": point.name,
        "size": point.size,
        "latent": point.latent,
        "layers": point.layers,
        "params": train_m.get("param_count"),
        "train_s": train_m.get("train_seconds"),
        "steps": train_m.get("global_step"),
        "psnr": train_m.get("val/psnr"),
        "ssim": train_m.get("val/ssim"),
        "iou": train_m.get("val/iou_binary"),
        "miou": train_m.get("val/miou"),
        "active_units": _get(ev, "units", "active"),
        "energy_in_part": loc.get("energy_in_part"),
        "pointing_game": loc.get("pointing_game"),
        "pointing_chance": loc.get("chance"),
        "spearman_cam_effect": loc.get("spearman_cam_effect"),
        "mig": _get(ev, "disentanglement", "mig"),
        "dci_d": _get(ev, "disentanglement", "dci", "disentanglement"),
    }


def recommend(rows: Sequence[Mapping[str, Any]], caps: Capabilities) -> dict[str, Any]:
    """The smallest latent size within 1 dB PSNR (0.01 IoU for a model with a segmentation
    output, ``caps``) of the best, and the best localiser."""
    metric, tol = ("iou", 0.01) if has_seg_output(caps) else ("psnr", 1.0)
    scored = [r for r in rows if r.get(metric) is not None]
    rec: dict[str, Any] = {"metric": metric, "tolerance": tol}
    if scored:
        best = max(r[metric] for r in scored)
        near = [r for r in scored if r[metric] >= best - tol]
        pick = min(near, key=lambda r: (r["latent"], r["params"] or 0))
        rec.update(best_value=best, smallest_latent=pick["latent"], smallest_point=pick["point"])
    loc = [r for r in rows if r.get("energy_in_part") is not None]
    if loc:
        top = max(loc, key=lambda r: (r["energy_in_part"] or 0) + (r["pointing_game"] or 0))
        rec["best_localisation_point"] = top["point"]
    return rec


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def write_summary(
    out: Path, rows: Sequence[Mapping[str, Any]], caps: Capabilities
) -> dict[str, Any]:
    """Write summary.csv, summary.md, metric plots and the figure sheet; return the recommendation."""
    rec = recommend(rows, caps)
    cols = list(rows[0].keys()) if rows else []
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(out / "summary.csv") as fh:
        fh.write(buf.getvalue())
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [_fmt(r[c]) for c in cols]
        if r["point"] == rec.get("smallest_point"):
            cells[0] = f"**{cells[0]}** (recommended)"
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n\n"
    if "smallest_latent" in rec:
        text += (
            f"How many latent units: the smallest latent size within {rec['tolerance']} of the best "
            f"{rec['metric']} ({rec['best_value']:.3f}) is **{rec['smallest_latent']}** ({rec['smallest_point']}).\n"
        )
    if "best_localisation_point" in rec:
        text += f"Best localisation (energy in part + pointing game): **{rec['best_localisation_point']}**.\n"
    with atomic_write(out / "summary.md") as fh:
        fh.write(text)
    write_json(out / "recommendation.json", rec)
    for metric in (
        "psnr",
        "ssim",
        "iou",
        "miou",
        "active_units",
        "energy_in_part",
        "pointing_game",
        "mig",
        "dci_d",
    ):
        if any(r.get(metric) is not None for r in rows):
            save_figure(plots.metric_vs_latent(rows, metric), out / f"plot_{metric}.png")
    _figure_sheet(out, rows)
    return rec


def _figure_sheet(out: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    import matplotlib.pyplot as plt
    from PIL import Image

    cells = [
        (r["point"], out / r["point"] / "sheet.png")
        for r in rows
        if (out / r["point"] / "sheet.png").is_file()
    ]
    if not cells:
        return
    ncol = min(4, len(cells))
    nrow = (len(cells) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.4 * nrow), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, path) in zip(axes.ravel(), cells, strict=False):
        ax.imshow(Image.open(path))
        ax.set_title(name, fontsize=8)
    fig.suptitle("input | output | averaged Grad-CAM, per sweep point", fontsize=10)
    save_figure(fig, out / "sheet.png")


def parse_points(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--points '{text}' is not i/n (e.g. 0/4)") from None
    if not 0 <= i < n:
        raise InputError(f"--points {text}: need 0 <= i < n")
    return i, n


def _check_grid_budget(base: RunConfig) -> None:
    t = base.train
    if t.epochs <= 0 and t.max_steps <= 0 and t.max_minutes <= 0:
        raise ConfigError(
            "a sweep needs a training budget per point: --epochs, --max-steps or --minutes"
        )


__all__ = [
    "AXES",
    "SweepPoint",
    "grid_points",
    "parse_grid",
    "parse_points",
    "recommend",
    "run_sweep",
    "summary_row",
    "write_summary",
]
