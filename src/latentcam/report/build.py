"""``latentcam report``: one offline HTML page that reproduces the paper's figures for a run.

Sections follow the paper: input, reconstruction and averaged heatmap (Fig. 9); per-unit
heatmaps (Figs. 13-16); traversals with their heatmaps and effect maps (Fig. 10); CVAE
reconstructions and attribute edits (Figs. 11-12); segmentation and Seg-Grad-CAM (Fig. 7);
then the measurements the paper asks for and never supplies (:mod:`latentcam.evaluate`), and
what the model knows about each attribute: latent directions scored against the face parts
(:mod:`latentcam.report.directions`).
Everything is computed from the checkpoint and the run's data; only ``out`` is written.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentcam import plots
from latentcam.checkpoint import LoadedRun, load_run
from latentcam.concepts import evaluation_directions
from latentcam.data.classes import ATTRIBUTE_IDS, PART_NAMES
from latentcam.errors import InputError
from latentcam.evaluate import evaluate, jsonable
from latentcam.explain.cam import compute_cams, latent_cams, normalise, upsample
from latentcam.explain.decoder import decoder_maps
from latentcam.explain.hooks import eval_mode
from latentcam.explain.layers import FUSION, SCORE_KEYS, ComparisonRow, fused_cams, pick_best
from latentcam.explain.metrics import rank_correlation
from latentcam.explain.targets import SegClass
from latentcam.explain.traversal import (
    attribute_traversal,
    effect_maps,
    save_traversal,
    traverse,
)
from latentcam.figures import figure_png_bytes, overlay, panel_grid, to_uint8_hwc
from latentcam.generate import colorize_labels
from latentcam.io import (
    ensure_dir,
    make_temp_dir,
    remove_stale_temps,
    replace_folder,
    write_json,
)
from latentcam.models.protocol import has_image_output, has_seg_output, is_conditional
from latentcam.models.segvae import predicted_labels
from latentcam.report.directions import directions_section
from latentcam.report.html import Report
from latentcam.report.trust import (
    RunFacts,
    glance,
    longer_command,
    mean_image_psnr,
    prior_mask_iou,
    undertrained,
    write_glance,
)
from latentcam.runs import RunData, check_run_output, open_run_data
from latentcam.verdicts import HEATMAP_AT_CHANCE, Verdict, correlation_verdict, verdict

log = logging.getLogger(__name__)

#: File that marks a folder as a report (:func:`is_report_folder`), so that rebuilding it
#: may replace the folder whole.
REPORT_MARKER = ".latentcam-report"
#: Display resolution of the report's figures and the widest one a page shows unscaled (the
#: page's content is about 1150 px wide): charts are drawn at the size they are shown.
DPI = 110
MAX_WIDTH = 1140
#: Readable column names of the layer x method table (metrics keys -> header).
COLUMN_NAMES = {
    "energy_in_part": "energy in part",
    "pointing_game": "pointing game",
    "chance": "chance (area)",
    "spearman_cam_effect": "ρ map, effect",
    "top10_iou_cam_effect": "top-10% IoU map, effect",
    "spearman_cam_decoder": "ρ map, decoder",
}
#: CVAE edits shown in the report (the paper's Figs. 11-12 use CelebA attributes).
EDIT_ATTRIBUTES = ("Smiling", "Eyeglasses", "Wearing_Hat", "Mouth_Slightly_Open", "Bangs", "Male")


def _rows(images: torch.Tensor) -> list[np.ndarray]:
    return list(to_uint8_hwc(images))


def _heat(images: torch.Tensor, maps: torch.Tensor) -> list[np.ndarray]:
    """Overlays of maps (N, H, W) already in [0, 1] on images (N, 3, H, W)."""
    return list(overlay(images, maps.cpu()))


def default_report_folder(run: LoadedRun) -> Path:
    """Where ``latentcam report RUN`` writes without ``--out``: ``RUN/report``, a folder of
    its own inside the run (never the run's own files); for a checkpoint outside a run
    folder, ``NAME-report`` beside the ``NAME.ckpt`` file."""
    if run.run_dir is not None:
        return run.run_dir / "report"
    return run.checkpoint_path.with_name(f"{run.checkpoint_path.stem}-report")


def build_report(
    run: str | Path | LoadedRun,
    out: str | Path | None = None,
    data: str | Path | None = None,
    n: int = 6,
    eval_n: int = 128,
    layers: Sequence[str] | str | None = ("all", "fusion", "auto"),
    method: str = "gradcam",
    progress: bool = True,
    methods: Sequence[str] | None = None,
) -> Path:
    """Compute the figures and metrics of a run and write ``out/index.html``.

    Args:
        run: run folder, checkpoint, or a loaded run.
        out: output folder (created; only files under it are written); default
            :func:`default_report_folder`. One that is, holds or lies in an input, or
            lands on a run's own files, is refused (:func:`latentcam.runs.check_run_output`).
        data: dataset to explain on (default: the run's own).
        n: images shown in the figures.
        eval_n: images the metrics are computed on.
        layers: layer spec of the localisation section
            (:func:`latentcam.explain.layers.parse_layers`); default every encoder block, the
            fusion and the ``auto`` choice.
        method: CAM method for the figures and metrics.
        methods: CAM methods compared per layer (default: ``method``).

    The report is built in a temporary folder beside ``out`` (``.OUT.<pid>.<random>.tmp``)
    that replaces ``out`` once complete: a killed report leaves no half-written folder, and
    the next one removes the temporary (:func:`latentcam.io.remove_stale_temps`). ``out``
    must be new, empty, or an earlier report.

    Returns:
        The path of ``index.html``.
    """
    for name, value in (("n", n), ("eval_n", eval_n)):
        if value < 1:
            raise InputError(f"{name} must be at least 1, got {value}")
    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    out = check_run_output(default_report_folder(loaded) if out is None else out, loaded, data)
    out = Path(os.path.realpath(out))
    _check_replaceable(out)
    batch = open_run_data(loaded, data, n=max(n, eval_n), progress=progress)
    parent = ensure_dir(out.parent, what="--out parent")
    remove_stale_temps(parent)  # the folders of killed reports
    tmp = make_temp_dir(parent, out.name)
    try:
        _write_report(batch, tmp, n, layers, method, methods, progress)
        write_json(tmp / REPORT_MARKER, {"run": str(loaded.checkpoint_path)})
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    path = out / "index.html"
    log.info("report written to %s", path)
    return path


def is_report_folder(path: Path) -> bool:
    """True for a folder written by :func:`build_report` (it holds :data:`REPORT_MARKER`,
    or, from versions before it, an ``index.html`` titled "latentcam report")."""
    if (path / REPORT_MARKER).is_file():
        return True
    index = path / "index.html"
    try:
        with open(index, encoding="utf-8", errors="replace") as fh:
            return "<title>latentcam report" in fh.read(4096)
    except OSError:
        return False


def _check_replaceable(out: Path) -> None:
    """A report is built whole in a temporary folder and then replaces ``out``: refuse an
    ``out`` that holds anything but an earlier report (it would be deleted)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the report")
    if out.is_dir() and any(out.iterdir()) and not is_report_folder(out):
        raise InputError(
            f"--out {out} holds files that are not a latentcam report, and a report replaces "
            "its whole folder; choose a new or empty folder"
        )


def _write_report(
    batch: RunData,
    out: Path,
    n: int,
    layers: Sequence[str] | str | None,
    method: str,
    methods: Sequence[str] | None,
    progress: bool,
) -> Path:
    """The figures and metrics of ``batch`` into the (new, empty) folder ``out``."""
    cfg = batch.run.config
    model = batch.run.model
    found = None
    if batch.attrs is not None:  # found once: the metrics score these, the section shows them
        found = evaluation_directions(
            batch.run,
            batch.data_path,
            has_attrs=True,
            has_factors=batch.factors is not None,
            progress=progress,
        )
    log.info("evaluating %d images", batch.images.shape[0])
    metrics = jsonable(
        evaluate(
            batch,
            layers=layers,
            method=method,
            methods=methods,
            progress=progress,
            directions=False if found is None else found,
        )
    )
    write_json(out / "metrics.json", metrics)
    show = _subset(batch, n)
    K = model.latent_dim  # width of mu (K * s * s for a spatial latent)
    layer, method = _shown_layer(metrics, str(model.explain_layer), method)
    paper = metrics["localisation"]["paper_layer"]
    why = "chosen by auto" if "auto" in metrics["localisation"] else "the paper's"
    report = Report(
        title=f"latentcam report: {cfg.model.kind.upper()} {cfg.model.image_size}px, latent {K}, "
        f"{cfg.model.num_layers} conv layers",
        subtitle=f"run {metrics['run']} · data {batch.data_path} ({batch.split} split) · "
        f"explained layer {layer} ({why}"
        + (f"; the paper's is {paper}" if layer != paper else "")
        + f") · method {method}",
    )
    facts = run_facts(batch, metrics)
    report.banner = undertrained(facts)
    report.glance = glance(facts, metrics, layer, method)
    write_glance(report.glance, out)
    _overview(report, batch, metrics, facts)
    top = metrics["ranking"]["by_kl"][: min(8, K)]  # latentcam.explain.metrics.units_by_kl
    if has_image_output(model):
        _fig9(report, show, layer, method)
    _fig13(report, show, top, layer, method)
    if has_image_output(model):
        _fig10(report, show, top[:3], out, layer, method)
    if is_conditional(model):
        _fig11(report, show, out, str(model.explain_layer) if layer == FUSION else layer)
    if has_seg_output(model):
        _fig7(report, show)
    _metrics_sections(report, metrics, out, facts)
    _where_it_acts(report, show, metrics)
    if found is not None:
        directions_section(report, batch, metrics, found)
    return report.write(out)


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


def _shown_layer(metrics: dict[str, Any], paper: str, method: str) -> tuple[str, str]:
    """The (layer, method) the report's figures show: ``auto``'s choice when it was asked
    (the layer the log names), else the paper's layer with ``method``."""
    auto = metrics["localisation"].get("auto")
    if auto:
        return str(auto["layer"]), str(auto["method"])
    return paper, method


def run_facts(batch: RunData, metrics: dict[str, Any]) -> RunFacts:
    """What the undertraining floors are read against (:mod:`latentcam.report.trust`): the
    run's steps and weight averaging, its validation PSNR beside the mean image's on the
    report's images, and a SegVAE's binary IoU beside the per-pixel prior's."""
    cfg = batch.run.config
    run_metrics = _training_metrics(batch)
    psnr = run_metrics.get("val/psnr")
    mean_psnr = None
    if psnr is not None:
        mean_psnr = mean_image_psnr(batch.images.detach().float().cpu().numpy())
    seg = metrics.get("segmentation", {})
    iou = seg.get("iou_binary", run_metrics.get("val/iou_binary"))
    prior = None
    if iou is not None and batch.parts is not None:
        prior = prior_mask_iou((batch.parts >= 2).cpu().numpy())
    steps = int(batch.run.global_step)
    command = ""
    if batch.run.run_dir is not None:
        run_dir = batch.run.run_dir
        command = (
            longer_command(str(run_dir / "config.yaml"), f"{run_dir}-longer", steps)
            + " train.max_minutes=0"
        )
    return RunFacts(
        kind=cfg.model.kind,
        steps=steps,
        ema_decay=float(cfg.train.ema_decay),
        psnr=None if psnr is None else float(psnr),
        mean_psnr=mean_psnr,
        iou=None if iou is None else float(iou),
        prior_iou=prior,
        command=command,
    )


def _overview(report: Report, batch: RunData, metrics: dict[str, Any], facts: RunFacts) -> None:
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
    if facts.mean_psnr is not None:
        rows.append({"setting": "PSNR of the mean image (the floor)", "value": facts.mean_psnr})
    if facts.prior_iou is not None:
        rows.append(
            {"setting": "binary IoU of the per-pixel prior (the floor)", "value": facts.prior_iou}
        )
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


def _unit_maps(
    b: RunData,
    x: torch.Tensor,
    c: torch.Tensor | None,
    units: list[int] | None,
    layer: str,
    method: str,
) -> torch.Tensor:
    """Maps (B, T, H, W) of ``units`` (None: all) at ``layer`` (or the fusion), image size."""
    model = b.run.model
    if layer == FUSION:
        return fused_cams(model, x, c, units=units, method=method)
    maps = latent_cams(model, x, cond=c, units=units, layer=layer, method=method).maps
    return upsample(maps, x.shape[-1])


def _fig9(report: Report, b: RunData, layer: str, method: str) -> None:
    model = b.run.model
    with eval_mode(model), torch.no_grad():  # z = mu, as the maps
        output = model(b.images, b.cond)
    recon = output.recon if output.recon is not None else b.images
    maps = _unit_maps(b, b.images, b.cond, None, layer, method)
    avg = normalise(maps.mean(1, keepdim=True), per="map")[:, 0]
    cells = [
        [i, r, h]
        for i, r, h in zip(_rows(b.images), _rows(recon), _heat(b.images, avg), strict=True)
    ]
    fig = panel_grid(cells, ["input", "reconstruction", "averaged Grad-CAM"], title="Fig. 9")
    sec = report.section("Input, reconstruction, averaged heatmap (Fig. 9)")
    sec.text(
        f"{method} of every latent unit at {layer} (Liu et al. 2020: alpha = mean "
        "gradient of mu_k over the map; ReLU of the weighted channel sum), averaged over units and "
        "normalised per image. The paper's Figure 9."
    )
    sec.figure(_png(fig), "Rows: images of the validation split.")


def _fig13(report: Report, b: RunData, units: list[int], layer: str, method: str) -> None:
    maps = normalise(_unit_maps(b, b.images, b.cond, units, layer, method), per="unit")
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
        f"The units that matter most by KL, at {layer} ({method}), each normalised over all "
        "shown images (so a unit's maps can be compared across faces; the paper's Fig. 16 asks "
        "exactly that)."
    )
    sec.figure(_png(fig))


def _fig10(
    report: Report, b: RunData, units: list[int], out: Path, layer: str, method: str
) -> None:
    model = b.run.model
    sec = report.section("Latent traversals (Fig. 10)")
    at = str(model.explain_layer) if layer == FUSION else layer  # a traversal needs one layer
    sec.text(
        "The paper adds 0.1 ... 0.9 to one unit and decodes. Row 1: decoded image; row 2: the "
        f"unit's {method} map at {at} on the decoded image re-encoded (the paper's heatmap per "
        "step); row 3: the effect map |decode(z + delta e_k) - decode(z)|, where the output "
        "actually changes, with its scale (the largest change, in image units) on the left."
    )
    for mode, steps in (("additive", None), ("sigma", None)):
        trav = traverse(
            model,
            b.images[:1],
            units,
            steps=steps,
            mode=mode,
            cond=None if b.cond is None else b.cond[:1],
            layer=at,
            method=method,
        )
        saved = save_traversal(trav, out / "traverse" / mode)
        for strip, gif in zip(saved.strips, saved.gifs, strict=True):
            sec.figure(strip, f"{mode} steps: {strip.stem.replace('_', ' ')}", native=True)
            sec.figure(gif, f"{mode} steps, animated (image | map | effect)", native=True)


def _fig11(report: Report, b: RunData, out: Path, layer: str) -> None:
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
    sec.text(
        "Attribute traversals: the condition's attribute set to 0 ... 1 on the first face. Rows: "
        "the decoded image, the averaged Grad-CAM of the decoded image re-encoded, and "
        "|decoded - decoded with its own condition| with its scale on the left."
    )
    trav = attribute_traversal(
        model, b.images[:1], b.cond[:1], [ATTRIBUTE_IDS[a] for a in attrs[:3]], layer=layer
    )
    saved = save_traversal(trav, out / "traverse" / "attributes")
    for name, strip in zip(attrs[:3], saved.strips, strict=True):
        sec.figure(strip, f"{name} from 0 to 1 ({strip.name})", native=True)


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


#: The disentanglement table's verdict column.
FACTOR_VERDICT = "lands on its part?"


def factor_rows(
    factors: list[dict[str, Any]], layer: str | None = None, method: str | None = None
) -> list[dict[str, Any]]:
    """The disentanglement table's rows: each factor's best unit, its heatmap's scores at
    ``layer`` and ``method`` (where evaluate scored them there; else at the paper's layer)
    and whether the map lands on the factor's part: the pointing game against the part's
    area, :func:`latentcam.verdicts.verdict` ("not scored" without a part)."""
    rows = []
    for entry in factors:
        at = (entry.get("per_method", {}).get(method, {}) or {}).get(layer) or entry.get(
            "per_layer", {}
        ).get(layer)
        scores = at if isinstance(at, dict) else entry
        row = {
            k: ", ".join(map(str, v)) if isinstance(v, list) else v
            for k, v in entry.items()
            if not isinstance(v, dict | bool)
        }
        row.pop("lands_on_part", None)
        for key in ("energy_in_part", "pointing_game", "chance"):
            if key in scores:
                row[key] = scores[key]
        row[FACTOR_VERDICT] = verdict(scores.get("pointing_game"), scores.get("chance"))
        rows.append(row)
    return rows


def _metrics_sections(
    report: Report, m: dict[str, Any], out: Path, facts: RunFacts | None = None
) -> None:
    sec = report.section("Which units matter")
    sec.text(
        f"{m['units']['active']} of {m['latent_dim']} units are active (mean KL > "
        f"{m['units']['active_threshold']} nats). Units ranked by KL and by effect size; where the "
        "data has attributes, the units whose single-unit probe best predicts each attribute."
    )
    sec.figure(
        _png(
            plots.unit_ranking(
                m["units"]["kl"], m["ranking"]["effect_size"], order=m["ranking"]["by_kl"]
            )
        )
    )
    if "by_attribute" in m["ranking"]:
        rows = [
            {
                "attribute": a,
                "top units": u,
                "held-out AUROC of the top unit": (auc := m["ranking"]["attribute_auroc"].get(a)),
                "chance": 0.5,
                "verdict": verdict(auc, 0.5, "sign", at_chance="the unit does not predict it"),
            }
            for a, u in m["ranking"]["by_attribute"].items()
        ]
        sec.table(
            rows,
            "Top units per attribute (ranked by single-unit AUROC on mu; the top unit re-scored "
            "on held-out images). The unit's sign is chosen on the training images, so a held-out "
            "AUROC below 0.5 means the sign flipped: the unit does not carry the attribute.",
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
    if "disentanglement" in m:
        d = m["disentanglement"]
        sec = report.section("Disentanglement (known factors)")
        sec.text(
            f"MIG {d['mig']:.3f} (0 = no unit owns a factor); DCI disentanglement "
            f"{d['dci']['disentanglement']:.3f}, completeness {d['dci']['completeness']:.3f} "
            f"({d['dci']['method']})."
        )
        sec.verdict(
            f"DCI informativeness {d['dci']['informativeness_test']:.3f} (held-out R² of the "
            "factors from mu; 0 = predicting their mean)",
            verdict(
                d["dci"]["informativeness_test"],
                0.0,
                "offset",
                at_chance="mu does not hold the factors",
            ),
        )
        layer, method = _shown_layer(m, m["localisation"]["paper_layer"], m["method"])
        rows = factor_rows(d["factors"], layer, method)
        verdict_last = [*dict.fromkeys(k for r in rows for k in r if k != FACTOR_VERDICT)]
        sec.table(
            rows,
            "Best unit per factor (highest mutual information) and whether its heatmap lands on "
            "the part the factor moves: its pointing game against the part's area (chance), at "
            f"{layer} ({method}) where it was scored there, else at the paper's layer.",
            heat=["normalised_mi", "energy_in_part", "pointing_game"],
            columns=[*verdict_last, FACTOR_VERDICT],
        )
    if "sanity" in m and m["sanity"]["curve"]:
        s = m["sanity"]
        sec = report.section("Sanity check")
        sec.text(
            f"Cascading randomisation (Adebayo et al. 2018): {'PASSES' if s['passes'] else 'FAILS'} "
            f"(the maps of a randomised encoder must fall below a rank correlation of "
            f"{s['threshold']} with the trained maps; below 0 they are anti-correlated)."
        )
        sec.figure(_png(plots.sanity_curve(s["curve"], s["threshold"])))
    if "segmentation" in m:
        s = m["segmentation"]
        sec = report.section("Segmentation metrics")
        prior = facts.prior_iou if facts is not None else None
        rows = [
            {
                "metric": k,
                "value": v,
                "floor": prior if k == "iou_binary" else None,
                "verdict": verdict(v, prior, "offset", at_chance="one template mask for every face")
                if k == "iou_binary" and prior is not None
                else None,
            }
            for k, v in s.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        sec.table(
            rows,
            "Segmentation on the report's images; the floor of the binary IoU is the IoU of the "
            "per-pixel prior mask (foreground where most faces have it, the same for every face).",
        )
        if "iou_per_class" in s:
            sec.table([{"class": k, "IoU": v} for k, v in s["iou_per_class"].items()], heat=["IoU"])
        sec.table(
            [
                {
                    "class": k,
                    **v,
                    "verdict": verdict(v.get("energy_in_class"), v.get("chance")),
                }
                for k, v in s["seg_grad_cam"].items()
            ],
            "Seg-Grad-CAM energy inside the class's true region, against the region's share of "
            "the image (chance: the energy of a uniform map).",
        )
    if "attribute_control" in m and "per_attribute" in m["attribute_control"]:
        a = m["attribute_control"]
        sec = report.section("CVAE attribute control")
        sec.text(
            f"Mean flip rate {a['mean_flip_rate']:.3f}; judge: {a['judge']}. The chance level "
            "of a flip rate is the rate of the unedited reconstruction (what a CVAE that "
            "ignores its condition scores)."
        )
        sec.table(
            [
                {
                    "attribute": k,
                    **v,
                    "verdict": verdict(
                        v.get("flip_rate"),
                        v.get("unedited_rate"),
                        "offset",
                        at_chance="the edit does not show",
                    ),
                }
                for k, v in a["per_attribute"].items()
            ],
            heat=["flip_rate"],
        )


def _chosen(m: dict[str, Any]) -> tuple[str, str]:
    """The (layer, method) that localises best: the ``auto`` choice, else the best row."""
    loc = m["localisation"]
    if "auto" in loc:
        return loc["auto"]["layer"], loc["auto"]["method"]
    nan = float("nan")
    rows = [
        ComparisonRow(
            layer=r["layer"],
            method=r["method"],
            map_size=list(r["map_size"]),
            **{k: nan if r.get(k) is None else float(r[k]) for k in SCORE_KEYS},
        )
        for r in loc["comparison"]
    ]
    best = pick_best(rows, "unit_part_effect" in m, loc["paper_layer"])
    return best.layer, best.method


def _agreement(a: torch.Tensor, b: torch.Tensor) -> str:
    """Spearman of two maps (H, W) and its verdict, e.g. "-0.48 (anti-correlated)"."""
    rho = float(rank_correlation(a[None, None], b[None, None])[0, 0])
    if rho != rho:
        return "n/a"
    return f"{rho:.2f} ({correlation_verdict(rho).short})"


def _where_it_acts(report: Report, b: RunData, m: dict[str, Any]) -> None:
    """Section: encoder maps (paper's layer, best layer) vs effect and decoder maps."""
    model = b.run.model
    loc = m["localisation"]
    paper, method = loc["paper_layer"], m["method"]
    layer, best_method = _chosen(m)
    sec = report.section("Does the heatmap land where the unit acts?")
    auto = loc.get("auto")
    sec.text(
        "Where the encoder looked (Grad-CAM, Liu et al. 2020) against where the unit acts on "
        "the output: the effect map |decode(mu + 3e_k) - decode(mu - 3e_k)| and the exact "
        "decoder gradient map mean_c |d decode(z)_c / d z_k| (forward-mode AD). "
        f"The paper explains {paper}; "
        + (
            f"'auto' chose {auto['reason']}"
            if auto
            else f"the best compared layer is {layer} ({best_method})."
        )
    )
    shown = next(
        (r for r in loc["comparison"] if (r["layer"], r["method"]) == (layer, best_method)), None
    )
    if shown is not None:
        sec.verdict(
            f"At {layer} ({best_method}), the heatmaps' pointing game "
            f"{_fmt(shown.get('pointing_game'))} against chance {_fmt(shown.get('chance'))}",
            verdict(shown.get("pointing_game"), shown.get("chance"), at_chance=HEATMAP_AT_CHANCE),
        )
        sec.verdict(
            "their rank correlation with the effect map "
            f"{_fmt(shown.get('spearman_cam_effect'))} (chance 0)",
            correlation_verdict(shown.get("spearman_cam_effect")),
        )
    dec = m["decoder"]
    units = [u for u in m["ranking"]["by_kl"] if u in dec["units"]][:4] or m["ranking"]["by_kl"][:4]
    x = b.images[:1]
    c = None if b.cond is None else b.cond[:1]
    H = x.shape[-1]
    with torch.no_grad():
        mu, _ = model.encode(x, c)
    paper_maps = upsample(
        latent_cams(model, x, cond=c, units=units, layer=paper, method=method).maps, H
    )
    if layer == FUSION:
        best_maps = fused_cams(model, x, c, units=units, method=best_method)
    else:
        best_maps = upsample(
            latent_cams(model, x, cond=c, units=units, layer=layer, method=best_method).maps, H
        )
    effects = effect_maps(model, mu, units=units, cond=c).cpu()
    decoder = decoder_maps(model, mu, cond=c, units=units).cpu()
    rows, captions = [], []
    for j in range(len(units)):
        p, q, e, d = paper_maps[0, j].cpu(), best_maps[0, j].cpu(), effects[0, j], decoder[0, j]
        heat = normalise(torch.stack([p, q, e, d]), per="map")
        rows.append([to_uint8_hwc(x[0])[0], *_heat(x[0:1].expand(4, -1, -1, -1), heat)])
        captions.append(
            [
                "",
                f"ρ eff {_agreement(p, e)}\nρ dec {_agreement(p, d)}",
                f"ρ eff {_agreement(q, e)}\nρ dec {_agreement(q, d)}",
                f"ρ dec {_agreement(e, d)}",
                "",
            ]
        )
    heads = [
        "input",
        f"paper's layer\n{paper}\n({method})",
        f"{'auto' if auto else 'best'} layer\n{layer}\n({best_method})",
        "effect map\n|x(+3) - x(-3)|",
        "decoder gradient\nmean |dx / dz_k|",
    ]
    fig = plots.captioned_panels(rows, captions, heads, [f"unit {u}" for u in units])
    sec.figure(
        _png(fig),
        "Top units by KL on one validation image; each map min-max normalised. Captions: "
        "Spearman rank correlation over pixels with the effect map (eff) and the decoder "
        "gradient map (dec) on this image.",
    )
    table = [
        {
            "layer": r["layer"],
            "method": r["method"],
            "map": "fused" if r["layer"] == FUSION else "x".join(map(str, r["map_size"])),
            "paper's": "yes" if r["layer"] == paper else "",
            "shown": "yes" if (r["layer"], r["method"]) == (layer, best_method) else "",
            **{COLUMN_NAMES.get(k, k): r[k] for k in SCORE_KEYS},
            "pointing vs chance": _short(verdict(r.get("pointing_game"), r.get("chance"))),
            "map vs effect": _short(correlation_verdict(r.get("spearman_cam_effect"))),
        }
        for r in loc["comparison"]
    ]
    sec.table(
        table,
        "Layer x method comparison, means over the active units on "
        f"{m.get('map_images', min(m['num_images'], 32))} images: energy of the map inside the region the unit moves "
        "(Wang et al. 2020), pointing game (Zhang et al. 2016) and its chance level (the "
        "region's area), Spearman and top-10% IoU with the effect map, Spearman with the "
        "decoder gradient map.",
        heat=[
            COLUMN_NAMES[k]
            for k in (
                "energy_in_part",
                "pointing_game",
                "spearman_cam_effect",
                "spearman_cam_decoder",
            )
        ],
    )
    if len(loc["comparison"]) > 1:
        sec.figure(_png(plots.layer_method_comparison(loc["comparison"], paper)))
    if dec["unit_part_encoder"] is not None:
        order = [dec["units"].index(u) for u in m["ranking"]["by_kl"] if u in dec["units"]][:16]
        fig = plots.unit_part_pair(
            [dec["unit_part_encoder"][i] for i in order],
            [dec["unit_part_decoder"][i] for i in order],
            dec["regions"],
            [dec["units"][i] for i in order],
            dec["matrix_agreement"],
            encoder_label=f"encoder side (Grad-CAM at {dec['encoder_layer']})",
        )
        agreement = dec["matrix_agreement"]
        sec.figure(
            _png(fig),
            "Share of each unit's map mass per face region, from the encoder (Grad-CAM) and "
            "from the decoder (gradient of the output); matrix agreement (Pearson over all "
            f"active units) {_fmt(agreement)}, {_fmt(dec.get('matrix_agreement_centred'))} "
            f"({correlation_verdict(dec.get('matrix_agreement_centred')).short}) "
            "after removing each region's mean share (the part sizes, which alone make any two "
            "such matrices correlate); mean per-unit "
            f"Spearman(Grad-CAM, decoder map) {_fmt(dec['spearman_cam_decoder_mean'])}.",
        )
        sec.table(
            [
                {"part": r, "units that drive it (decoder side)": u}
                for r, u in dec["units_per_part"].items()
            ],
            "Which units drive each part: ranked by decoder-gradient mass in the part / part area.",
        )
    at = (
        layer
        if layer in loc["layers"]
        else paper
        if paper in loc["layers"]
        else next(iter(loc["layers"]))
    )
    sec.table(
        unit_rows(loc["layers"][at]["per_unit"]),
        f"Top units by KL at {at} ({method}): where each unit's map lands against the region it "
        "moves (chance: the region's area) and against its effect map.",
    )


def unit_rows(per_unit: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``localisation.layers[L].per_unit`` rows with their verdicts: the pointing game
    against the region's area, and the map's rank correlation with the unit's effect map."""
    rows = []
    for r in per_unit:
        row = dict(r)
        if "pointing_game" in r:
            row["verdict"] = _short(verdict(r.get("pointing_game"), r.get("chance")))
        if "spearman_cam_effect" in r:
            row["map vs effect"] = _short(correlation_verdict(r.get("spearman_cam_effect")))
        rows.append(row)
    return rows


def _short(judged: Verdict) -> Verdict:
    """The verdict with its first clause only, for a table cell ("at chance")."""
    return judged._replace(text=judged.short)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _png(fig: Any) -> bytes:
    return figure_png_bytes(fig, dpi=DPI, max_width=MAX_WIDTH)


__all__ = ["build_report"]
