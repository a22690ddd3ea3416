"""``latentcam report``: one offline HTML page that reproduces the paper's figures for a run.

Sections follow the paper: input, reconstruction and averaged heatmap (Fig. 9); per-unit
heatmaps (Figs. 13-16); traversals with their heatmaps and effect maps (Fig. 10); CVAE
reconstructions and attribute edits (Figs. 11-12); segmentation and Seg-Grad-CAM (Fig. 7);
then the measurements the paper asks for and never supplies (:mod:`latentcam.evaluate`).
Everything is computed from the checkpoint and the run's data; only ``out`` is written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentcam.data.classes import ATTRIBUTE_IDS, PART_NAMES
from latentcam.errors import InputError
from latentcam.evaluate import evaluate, jsonable
from latentcam.explain.cam import compute_cams, latent_cams, normalise, upsample
from latentcam.explain.targets import SegClass
from latentcam.explain.traversal import save_traversal, traverse
from latentcam.generate import colorize_labels
from latentcam.io import ensure_dir, write_json
from latentcam.models.segvae import predicted_labels
from latentcam.report import plots
from latentcam.report.figures import overlay, panel_grid, to_uint8_hwc
from latentcam.report.html import Report
from latentcam.runs import RunData, open_run_data

log = logging.getLogger(__name__)

#: CVAE edits shown in the report (the paper's Figs. 11-12 use CelebA attributes).
EDIT_ATTRIBUTES = ("Smiling", "Eyeglasses", "Wearing_Hat", "Mouth_Slightly_Open", "Bangs", "Male")


def _rows(images: torch.Tensor) -> list[np.ndarray]:
    return list(to_uint8_hwc(images))


def _heat(images: torch.Tensor, maps: torch.Tensor) -> list[np.ndarray]:
    """Overlays of maps (N, H, W) already in [0, 1] on images (N, 3, H, W)."""
    return list(overlay(images, maps.cpu()))


def build_report(
    run: str | Path,
    out: str | Path,
    data: str | Path | None = None,
    n: int = 6,
    eval_n: int = 128,
    layers: Sequence[str] | str | None = "all",
    method: str = "gradcam",
    progress: bool = True,
) -> Path:
    """Compute the figures and metrics of a run and write ``out/index.html``.

    Args:
        run: run folder or checkpoint.
        out: output folder (created; only files under it are written).
        data: dataset to explain on (default: the run's own).
        n: images shown in the figures.
        eval_n: images the metrics are computed on.
        layers: layers compared in the localisation section ("all" encoder blocks by default).
        method: CAM method for the figures and metrics.

    Returns:
        The path of ``index.html``.
    """
    for name, value in (("n", n), ("eval_n", eval_n)):
        if value < 1:
            raise InputError(f"{name} must be at least 1, got {value}")
    batch = open_run_data(run, data, n=max(n, eval_n), progress=progress)
    out = ensure_dir(out)
    cfg = batch.run.config
    model = batch.run.model
    log.info("evaluating %d images", batch.images.shape[0])
    metrics = jsonable(evaluate(batch, layers=layers, method=method, progress=progress))
    write_json(out / "metrics.json", metrics)
    show = _subset(batch, n)
    K = model.latent_dim  # width of mu (K * s * s for a spatial latent)
    report = Report(
        title=f"latentcam report: {cfg.model.kind.upper()} {cfg.model.image_size}px, latent {K}, "
        f"{cfg.model.num_layers} conv layers",
        subtitle=f"run {metrics['run']} · data {batch.data_path} ({batch.split} split) · "
        f"explained layer {model.explain_layer} · method {method}",
    )
    _overview(report, batch, metrics)
    top = metrics["ranking"]["by_kl"][: min(8, K)]
    if cfg.model.kind != "segvae" or cfg.model.seg_recon_image:
        _fig9(report, show, method)
    _fig13(report, show, top, method)
    if cfg.model.kind in ("vae", "cvae") or cfg.model.seg_recon_image:
        _fig10(report, show, top[:3], out, method)
    if cfg.model.kind == "cvae":
        _fig11(report, show)
    if cfg.model.kind == "segvae":
        _fig7(report, show)
    _metrics_sections(report, metrics, out)
    path = report.write(out)
    log.info("report written to %s", path)
    return path


def _subset(batch: RunData, n: int) -> RunData:
    def cut(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[:n]

    return batch._replace(
        images=batch.images[:n],
        cond=cut(batch.cond),
        parts=cut(batch.parts),
        attrs=cut(batch.attrs),
        factors=cut(batch.factors),
    )


def _overview(report: Report, batch: RunData, metrics: dict[str, Any]) -> None:
    cfg = batch.run.config
    sec = report.section("Overview")
    params = sum(p.numel() for p in batch.run.model.parameters())
    model = batch.run.model
    rows: list[dict[str, Any]] = [
        {"setting": "model", "value": cfg.model.kind},
        {"setting": "image size", "value": cfg.model.image_size},
        {"setting": "latent units (width of mu)", "value": model.latent_dim},
        {"setting": "conv layers", "value": cfg.model.num_layers},
        {"setting": "parameters", "value": f"{params:,}"},
        {"setting": "training steps", "value": batch.run.global_step},
        {"setting": "active units (KL > 0.01)", "value": metrics["units"]["active"]},
    ]
    run_metrics = _training_metrics(batch)
    for key in ("val/psnr", "val/ssim", "val/mse", "val/miou", "val/iou_binary"):
        if key in run_metrics:
            rows.append({"setting": key, "value": run_metrics[key]})
    sec.table(rows, "The run and its final validation metrics (from training).")


def _training_metrics(batch: RunData) -> dict[str, Any]:
    import json

    run_dir = batch.run.run_dir
    if run_dir is None or not (run_dir / "metrics.json").is_file():
        return {}
    try:
        loaded = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    flat = loaded.get("final", loaded) if isinstance(loaded, dict) else {}
    return {k: v for k, v in flat.items() if isinstance(v, int | float)}


def _fig9(report: Report, b: RunData, method: str) -> None:
    model = b.run.model
    res = latent_cams(model, b.images, cond=b.cond, method=method)
    recon = res.output.recon if res.output.recon is not None else b.images
    avg = normalise(upsample(res.maps.mean(1, keepdim=True), b.images.shape[-1]), per="map")[:, 0]
    cells = [
        [i, r, h]
        for i, r, h in zip(_rows(b.images), _rows(recon), _heat(b.images, avg), strict=True)
    ]
    fig = panel_grid(cells, ["input", "reconstruction", "averaged Grad-CAM"], title="Fig. 9")
    sec = report.section("Input, reconstruction, averaged heatmap (Fig. 9)")
    sec.text(
        "Grad-CAM of every latent unit at the explained layer (Liu et al. 2020: alpha = mean "
        "gradient of mu_k over the map; ReLU of the weighted channel sum), averaged over units and "
        "normalised per image. The paper's Figure 9."
    )
    sec.figure(_png(fig), "Rows: images of the validation split.")


def _fig13(report: Report, b: RunData, units: list[int], method: str) -> None:
    model = b.run.model
    res = latent_cams(model, b.images, cond=b.cond, units=units, method=method)
    maps = normalise(upsample(res.maps, b.images.shape[-1]), per="unit")
    cells = [
        [
            to_uint8_hwc(b.images[i])[0],
            *(_heat(b.images[i : i + 1].expand(len(units), -1, -1, -1), maps[i])),
        ]
        for i in range(b.images.shape[0])
    ]
    fig = panel_grid(
        cells, ["input", *[f"unit {u}" for u in units]], title="Per-unit Grad-CAM (Figs. 13-16)"
    )
    sec = report.section("Per-unit heatmaps (Figs. 13-16)")
    sec.text(
        "The units that matter most by KL, each normalised over all shown images (so a unit's "
        "maps can be compared across faces; the paper's Fig. 16 asks exactly that)."
    )
    sec.figure(_png(fig))


def _fig10(report: Report, b: RunData, units: list[int], out: Path, method: str) -> None:
    model = b.run.model
    sec = report.section("Latent traversals (Fig. 10)")
    sec.text(
        "The paper adds 0.1 ... 0.9 to one unit and decodes. Row 1: decoded image; row 2: the "
        "unit's Grad-CAM on the decoded image re-encoded (the paper's heatmap per step); row 3: the "
        "effect map |decode(z + delta e_k) - decode(z)|, where the output actually changes."
    )
    for mode, steps in (("additive", None), ("sigma", None)):
        trav = traverse(
            model,
            b.images[:1],
            units,
            steps=steps,
            mode=mode,
            cond=None if b.cond is None else b.cond[:1],
            method=method,
        )
        saved = save_traversal(trav, out / "traverse" / mode)
        for strip, gif in zip(saved.strips, saved.gifs, strict=True):
            sec.figure(strip, f"{mode} steps: {strip.stem.replace('_', ' ')}")
            sec.figure(gif, "animated", width=160)


def _fig11(report: Report, b: RunData) -> None:
    model = b.run.model
    assert b.cond is not None
    attrs = [a for a in EDIT_ATTRIBUTES if a in ATTRIBUTE_IDS]
    with torch.no_grad():
        mu, _ = model.encode(b.images, b.cond)
        cols = [_rows(b.images), _rows(model.decode(mu, b.cond).recon)]  # type: ignore[arg-type]
        for name in attrs:
            flipped = b.cond.clone()
            a = ATTRIBUTE_IDS[name]
            flipped[:, a] = 1.0 - flipped[:, a]
            cols.append(_rows(model.decode(mu, flipped).recon))  # type: ignore[arg-type]
    cells = [list(row) for row in zip(*cols, strict=True)]
    fig = panel_grid(
        cells,
        ["input", "recon", *[f"flip {a}" for a in attrs]],
        title="CVAE edits (Figs. 11-12)",
        colorbar=None,
    )
    sec = report.section("CVAE reconstructions and attribute edits (Figs. 11-12)")
    sec.text(
        "Each column decodes the same mu with one attribute of the condition flipped (0 <-> 1)."
    )
    sec.figure(_png(fig))


def _fig7(report: Report, b: RunData) -> None:
    model = b.run.model
    with torch.no_grad():
        logits = model(b.images, b.cond).seg_logits
    assert logits is not None
    binary = logits.shape[1] == 1
    pred = predicted_labels(logits)
    ncls = 2 if binary else len(PART_NAMES)
    target = SegClass(0, class_name="foreground") if binary else SegClass(10, class_name="mouth")
    res = compute_cams(model, b.images, [target], cond=b.cond)
    heat = normalise(upsample(res.maps, b.images.shape[-1]), per="map")[:, 0]
    cols = [_rows(b.images), _rows(colorize_labels(pred.cpu(), ncls))]
    labels = ["input", "predicted mask"]
    if b.parts is not None:
        truth = (b.parts >= 2).long() if binary else b.parts
        cols.append(_rows(colorize_labels(truth, ncls)))
        labels.append("true mask")
    cols.append(_heat(b.images, heat))
    labels.append(f"Seg-Grad-CAM: {target.class_name}")
    fig = panel_grid(
        [list(r) for r in zip(*cols, strict=True)], labels, title="Segmentation (Fig. 7)"
    )
    sec = report.section("Segmentation and Seg-Grad-CAM (Fig. 7)")
    sec.text(
        "Seg-Grad-CAM (Vinogradova et al. 2020) at the last encoder conv: the score is the sum of "
        "the class's logits over its predicted region; the bottleneck is the only path to the output."
    )
    sec.figure(_png(fig))


def _metrics_sections(report: Report, m: dict[str, Any], out: Path) -> None:
    sec = report.section("Which units matter")
    sec.text(
        f"{m['units']['active']} of {m['latent_dim']} units are active (mean KL > "
        f"{m['units']['active_threshold']} nats). Units ranked by KL and by effect size; where the "
        "data has attributes, the units whose single-unit probe best predicts each attribute."
    )
    sec.figure(_png(plots.unit_ranking(m["units"]["kl"], m["ranking"]["effect_size"])))
    if "by_attribute" in m["ranking"]:
        rows = [
            {
                "attribute": a,
                "top units": u,
                "held-out AUROC of the top unit": m["ranking"]["attribute_auroc"].get(a),
            }
            for a, u in m["ranking"]["by_attribute"].items()
        ]
        sec.table(
            rows,
            "Top units per attribute (ranked by single-unit AUROC on mu; the top unit re-scored on held-out images).",
            heat=["held-out AUROC of the top unit"],
        )
    if "unit_part_effect" in m:
        upe = m["unit_part_effect"]
        units = m["ranking"]["by_kl"][: min(16, m["latent_dim"])]
        sec = report.section("Unit x part effect table")
        sec.text(
            "For each unit, where its effect map falls, as a share of the effect divided by the region's area."
        )
        sec.figure(_png(plots.unit_part_heat(upe["share"], upe["regions"], upe["area"], units)))
    loc = m["localisation"]["layers"]
    sec = report.section("Does the heatmap land on the part the unit moves?")
    sec.text(
        "Per explained layer, mean over active units: Grad-CAM energy inside the region each unit "
        "moves (from its effect map), pointing game and its chance level (the region's area), "
        "and agreement of Grad-CAM with the effect map (Spearman; IoU of top 10% pixels)."
    )
    rows = [
        {"layer": name, "map": "x".join(map(str, e["map_size"])), **e["mean_over_active"]}
        for name, e in loc.items()
    ]
    sec.table(
        rows,
        heat=["energy_in_part", "pointing_game", "spearman_cam_effect", "top10_iou_cam_effect"],
    )
    if len(loc) > 1:
        sec.figure(_png(plots.layer_comparison(loc)))
    default = loc.get(m["localisation"]["default_layer"]) or next(iter(loc.values()))
    sec.table(default["per_unit"], f"Top units by KL at {m['localisation']['default_layer']}.")
    if "disentanglement" in m:
        d = m["disentanglement"]
        sec = report.section("Disentanglement (known factors)")
        sec.text(
            f"MIG {d['mig']:.3f}; DCI disentanglement {d['dci']['disentanglement']:.3f}, completeness "
            f"{d['dci']['completeness']:.3f}, informativeness {d['dci']['informativeness_test']:.3f} "
            f"({d['dci']['method']}). Best unit per factor and whether its heatmap lands on the part the factor moves."
        )
        sec.table(d["factors"], heat=["normalised_mi", "energy_in_part", "pointing_game"])
    if "sanity" in m and m["sanity"]["curve"]:
        s = m["sanity"]
        sec = report.section("Sanity check")
        sec.text(
            f"Cascading randomisation (Adebayo et al. 2018): {'PASSES' if s['passes'] else 'FAILS'}."
        )
        sec.figure(_png(plots.sanity_curve(s["curve"], s["threshold"])))
    if "segmentation" in m:
        s = m["segmentation"]
        sec = report.section("Segmentation metrics")
        rows = [{"metric": k, "value": v} for k, v in s.items() if isinstance(v, int | float)]
        sec.table(rows)
        if "iou_per_class" in s:
            sec.table([{"class": k, "IoU": v} for k, v in s["iou_per_class"].items()], heat=["IoU"])
        sec.table(
            [{"class": k, **v} for k, v in s["seg_grad_cam"].items()],
            "Seg-Grad-CAM energy inside the class's true region.",
        )
    if "attribute_control" in m and "per_attribute" in m["attribute_control"]:
        a = m["attribute_control"]
        sec = report.section("CVAE attribute control")
        sec.text(f"Mean flip rate {a['mean_flip_rate']:.3f}; judge: {a['judge']}.")
        sec.table(
            [{"attribute": k, **v} for k, v in a["per_attribute"].items()], heat=["flip_rate"]
        )


def _png(fig: Any) -> bytes:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


__all__ = ["build_report"]
