"""Interpretability metrics of a trained run: ``latentcam evaluate``.

The paper judges heatmaps by eye and leaves two questions open: how many latent units, and
which units matter. :func:`evaluate` answers with measurements on a batch of held-out images
and returns one JSON-ready dict. Its sections (keys) are:

``units``
    KL per unit (nats, batch mean; Kingma & Welling 2014) and the number of active units
    (mean KL above ``active_threshold``; Burda et al. 2016 use the variance of mu instead).
``unit_part_effect``
    For each unit, the share of its expected effect map |decode(mu + 3e_k) - decode(mu - 3e_k)|
    that falls inside each face region, and the region it moves most (highest lift = share /
    area share). Needs part masks.
``localisation``
    Per explained layer, how well each unit's Grad-CAM map (upsampled to the image) falls on
    the region that the unit moves: energy inside the region (Wang et al. 2020), the pointing
    game (Zhang et al. 2016) and its chance level (the region's area share), and the agreement
    between the Grad-CAM map and the effect map (Spearman rank correlation over pixels; IoU of
    their top 10% pixels). Per unit for the top units by KL, and means over the active units.
``ranking``
    Units ranked by KL, by effect size (mean |effect|), and by a linear probe on mu per
    attribute (single-unit AUROC on held-out images), with the top units per attribute: the
    paper's "metric to evaluate set of most significant latent nodes".
``disentanglement`` (synthetic faces, whose factors are known)
    MIG (Chen et al. 2018) and DCI (Eastwood & Williams 2018) as in disentanglement_lib, the
    best unit per factor (highest mutual information), and whether that unit's Grad-CAM map
    lands on the region the factor moves.
``sanity``
    Adebayo et al. 2018's cascading randomisation: the encoder's layers are re-initialised from
    the top down and the mean rank correlation of the maps with the trained maps is reported
    after each step; maps that do not change fail.
``segmentation`` (SegVAE)
    IoU per class, mIoU and the binary-mask IoU; Seg-Grad-CAM (Vinogradova et al. 2020) per
    class over its predicted region, and the share of that map inside the class's true region.
``attribute_control`` (CVAE)
    Flip one attribute in the condition and decode; a linear probe trained on the data's
    images judges whether the generated image shows the flipped value (``flip_rate``) and how
    much the other attributes' probe scores moved (``others_shift``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from latentcam.data.classes import ATTRIBUTE_NAMES, PART_NAMES, REGIONS
from latentcam.errors import InputError
from latentcam.explain import metrics as M
from latentcam.explain.cam import compute_cams, latent_cams, resolve_layer, upsample
from latentcam.explain.disentangle import (
    best_unit_per_factor,
    dci,
    mig,
    probe_units,
    top_units_per_attribute,
)
from latentcam.explain.targets import SegClass
from latentcam.explain.traversal import effect_maps
from latentcam.io import ensure_dir, write_json
from latentcam.models.base import GenerativeModel
from latentcam.models.segvae import predicted_labels
from latentcam.runs import RunData, open_run_data
from latentcam.training.losses import kl_per_unit

log = logging.getLogger(__name__)

#: A unit is active when its mean KL exceeds this many nats.
ACTIVE_THRESHOLD = 0.01
#: Attributes listed by name in the ranking section when the data has them.
HEADLINE_ATTRIBUTES = (
    "Smiling",
    "Eyeglasses",
    "Wearing_Hat",
    "Mouth_Slightly_Open",
    "Bangs",
    "Male",
)


def _layers(model: torch.nn.Module, layers: Sequence[str] | str | None) -> list[str]:
    if layers is None or layers == "default":
        return [model.explain_layer]  # type: ignore[list-item]
    if isinstance(layers, str):
        layers = [layers]
    if list(layers) == ["all"]:
        return list(model.encoder_layers())  # type: ignore[operator]
    return list(layers)


def _cam_maps(
    model: torch.nn.Module,
    images: torch.Tensor,
    cond: torch.Tensor | None,
    units: Sequence[int],
    layer: str,
    method: str,
    chunk: int = 16,
) -> torch.Tensor:
    """Grad-CAM maps of ``units`` at image resolution: float (N, K', H, W), on the CPU."""
    H = images.shape[-1]
    out = []
    for s in range(0, images.shape[0], chunk):
        c = None if cond is None else cond[s : s + chunk]
        res = latent_cams(
            model, images[s : s + chunk], cond=c, units=list(units), layer=layer, method=method
        )
        out.append(upsample(res.maps, H).cpu())
    return torch.cat(out)


def _mean(t: torch.Tensor) -> float:
    t = t.float()
    t = t[~t.isnan()]
    return float(t.mean()) if t.numel() else float("nan")


def _localisation(
    cams: torch.Tensor, effects: torch.Tensor, parts: torch.Tensor | None, regions: list[str]
) -> dict[str, torch.Tensor]:
    """Per-unit localisation scores of maps (N, K, H, W) against each unit's region."""
    # A map that is zero everywhere (ReLU of a negative sum) has no ranking: its correlation
    # is NaN and left out of the mean over images.
    rho = M.rank_correlation(cams, effects).nanmean(0)
    iou = M.top_fraction_iou(cams, effects, 0.10).float().nanmean(0)
    out = {"spearman_cam_effect": rho, "top10_iou_cam_effect": iou}
    if parts is not None:
        energy, hits, chance = [], [], []
        for k, region in enumerate(regions):
            if region == "none":
                nan = torch.tensor(float("nan"))
                energy.append(nan)
                hits.append(nan)
                chance.append(nan)
                continue
            sc = M.region_scores(cams[:, k : k + 1], parts, region)
            energy.append(sc.energy.mean())
            hits.append(sc.hits.float().mean())
            chance.append(sc.chance.mean())
        out.update(
            energy_in_part=torch.stack(energy),
            pointing_game=torch.stack(hits),
            chance=torch.stack(chance),
        )
    return out


def evaluate(
    batch: RunData,
    layers: Sequence[str] | str | None = None,
    method: str = "gradcam",
    max_map_images: int = 32,
    top_units: int = 10,
    sanity: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Compute every metric that the run and its data allow (see the module docstring).

    Args:
        batch: a run and its images (:func:`latentcam.runs.open_run_data`).
        layers: layer name(s) to explain; "all" for every encoder block; default the model's.
        method: CAM method (gradcam, gradcam++, xgradcam, hirescam, layercam).
        max_map_images: images used for maps and effect maps (the costly part).
        top_units: units listed one by one (by KL); means are over all active units.
        sanity: run the cascading-randomisation check.

    Returns:
        A JSON-ready dict (floats, ints, lists, strings).
    """
    t0 = time.perf_counter()
    model = batch.run.model
    cfg = batch.run.config
    images, cond = batch.images, batch.cond
    N, _, H, _ = images.shape
    explained = _layers(model, layers)
    for layer in explained:  # fail fast on a bad name, before the costly part
        resolve_layer(model, layer)
    with torch.no_grad():
        mu, logvar = model.encode(images, cond)
    K = mu.shape[1]
    kl = kl_per_unit(mu, logvar).cpu()
    active = M.active_units(kl, ACTIVE_THRESHOLD)
    by_kl = M.rank_units(kl)
    result: dict[str, Any] = {
        "run": str(batch.run.run_dir or batch.run.checkpoint_path),
        "model": cfg.model.kind,
        "data": batch.data_path,
        "split": batch.split,
        "num_images": N,
        "image_size": H,
        "latent_dim": K,
        "method": method,
        "units": {
            "kl": kl.tolist(),
            "active_threshold": ACTIVE_THRESHOLD,
            "active": int(active.sum()),
            "active_units": torch.nonzero(active).flatten().tolist(),
        },
    }
    Nm = min(N, max_map_images)
    x_m = images[:Nm]
    c_m = None if cond is None else cond[:Nm]
    parts_m = None if batch.parts is None else batch.parts[:Nm]
    log.info("effect maps of %d units on %d images", K, Nm)
    effects = effect_maps(model, mu[:Nm], cond=c_m, delta=3.0).cpu()  # (Nm, K, H, W)
    eff_size = M.effect_size(effects).cpu()
    result["ranking"] = {
        "by_kl": by_kl.tolist(),
        "by_effect": M.rank_units(eff_size).tolist(),
        "effect_size": eff_size.tolist(),
    }
    regions = ["none"] * K
    if parts_m is not None:
        table = M.unit_part_table(effects, parts_m)
        best = M.best_region(table)
        regions = best.names
        result["unit_part_effect"] = {
            "regions": list(table.regions),
            "area": table.area.tolist(),
            "share": table.share.tolist(),
            "best_region": best.names,
            "best_lift": best.lift.tolist(),
        }
    # --- Grad-CAM localisation, per layer
    shown = by_kl[: min(top_units, K)].tolist()
    active_idx = torch.nonzero(active).flatten()
    loc_layers: dict[str, Any] = {}
    for layer in explained:
        cams = _cam_maps(model, x_m, c_m, list(range(K)), layer, method)
        scores = _localisation(cams, effects, parts_m, regions)
        idx = active_idx if active_idx.numel() else torch.arange(K)
        entry: dict[str, Any] = {
            "map_size": list(
                latent_cams(
                    model, x_m[:1], cond=None if c_m is None else c_m[:1], units=[0], layer=layer
                ).maps.shape[-2:]
            ),
            "mean_over_active": {name: _mean(v[idx]) for name, v in scores.items()},
            "per_unit": [
                {
                    "unit": u,
                    "region": regions[u],
                    **{name: float(v[u]) for name, v in scores.items()},
                }
                for u in shown
            ],
        }
        loc_layers[layer] = entry
    result["localisation"] = {"layers": loc_layers, "default_layer": model.explain_layer}
    # --- attribute probes (which units matter)
    if batch.attrs is not None and N >= 8:
        attrs = batch.attrs
        rate = attrs.mean(0)
        varied = [
            (a, name) for a, name in enumerate(ATTRIBUTE_NAMES) if 0.02 < float(rate[a]) < 0.98
        ]
        if varied:
            cols = [a for a, _ in varied]
            probe = probe_units(mu.cpu(), attrs[:, cols], method="auroc")
            names = [name for _, name in varied]
            top = top_units_per_attribute(probe.scores, names, k=5)
            result["ranking"]["by_attribute"] = top
            result["ranking"]["attribute_auroc"] = {
                name: float(probe.heldout_auroc[i]) for i, name in enumerate(names)
            }
            result["ranking"]["headline"] = {a: top[a] for a in HEADLINE_ATTRIBUTES if a in top}
    # --- disentanglement on known factors
    if batch.factors is not None and N >= 16:
        result["disentanglement"] = _disentanglement(
            batch, mu.cpu(), model, x_m, c_m, parts_m, method
        )
    # --- sanity check, on the units (by KL) whose maps are not zero everywhere: a constant
    # map cannot be rank-correlated (with a linear head, a unit's map can be all zero).
    if sanity:
        xs = images[: min(N, 8)]
        cs = None if cond is None else cond[: xs.shape[0]]
        spread = latent_cams(model, xs, cond=cs).maps.flatten(2).std(-1).mean(0).cpu()  # (K,)
        units = [u for u in by_kl.tolist() if spread[u] > 0][:5]
        if units:

            def maps_fn(m: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
                return latent_cams(m, x, cond=cs, units=units).maps

            curve = M.cascading_randomisation(model, xs, maps_fn, cond=cs)
            result["sanity"] = {
                "units": units,
                "curve": [{"layer": s.layer, "spearman": s.correlation} for s in curve],
                "passes": M.passes_sanity(curve),
                "threshold": 0.5,
            }
        else:
            result["sanity"] = {
                "units": [],
                "curve": [],
                "passes": None,
                "threshold": 0.5,
                "note": "every unit's map is zero on these images",
            }
    if cfg.model.kind == "segvae":
        result["segmentation"] = _segmentation(batch, x_m, parts_m)
    if cfg.model.kind == "cvae" and batch.attrs is not None:
        result["attribute_control"] = _attribute_control(batch)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return result


def _disentanglement(
    batch: RunData,
    mu: torch.Tensor,
    model: GenerativeModel,
    x_m: torch.Tensor,
    c_m: torch.Tensor | None,
    parts_m: torch.Tensor | None,
    method: str,
) -> dict[str, Any]:
    assert batch.factors is not None
    factors = batch.factors
    N = mu.shape[0]
    half = N // 2
    m = mig(mu, factors)
    d = dci(mu[:half], factors[:half], mu[half:], factors[half:])
    best = best_unit_per_factor(mu, factors)
    out: dict[str, Any] = {
        "mig": m.score,
        "mig_per_factor": dict(zip(batch.factor_names, m.per_factor.tolist(), strict=False)),
        "dci": {
            "disentanglement": d.disentanglement,
            "completeness": d.completeness,
            "informativeness_test": d.informativeness_test,
            "method": d.method,
        },
    }
    try:
        from latentcam.data.synthetic import FACTOR_REGIONS
    except ImportError:  # pragma: no cover - synthetic module is part of the package
        FACTOR_REGIONS = {}
    per_factor = []
    units = best.unit.tolist()
    cams = (
        _cam_maps(model, x_m, c_m, sorted(set(units)), model.explain_layer, method)
        if parts_m is not None
        else None
    )
    col = {u: i for i, u in enumerate(sorted(set(units)))}
    for f, name in enumerate(batch.factor_names):
        entry: dict[str, Any] = {
            "factor": name,
            "unit": units[f],
            "normalised_mi": float(best.normalised[f]),
        }
        regions = [r for r in FACTOR_REGIONS.get(name, ()) if r in REGIONS]
        if cams is not None and parts_m is not None and regions and len(regions) < len(REGIONS) - 1:
            ids = tuple(i for r in regions for i in REGIONS[r])
            sc = M.region_scores(
                cams[:, col[units[f]] : col[units[f]] + 1], parts_m, "target", {"target": ids}
            )
            entry.update(
                regions=regions,
                energy_in_part=_mean(sc.energy),
                pointing_game=_mean(sc.hits.float()),
                chance=_mean(sc.chance),
            )
            entry["lands_on_part"] = bool(
                entry["pointing_game"] > entry["chance"]
                and entry["energy_in_part"] > entry["chance"]
            )
        per_factor.append(entry)
    out["factors"] = per_factor
    return out


def _pooled_iou(pred: torch.Tensor, target: torch.Tensor) -> float:
    """IoU of binary masks pooled over all images' pixels (as torchmetrics' JaccardIndex)."""
    inter = ((pred == 1) & (target == 1)).sum()
    union = ((pred == 1) | (target == 1)).sum()
    return float(inter / union) if union > 0 else float("nan")


def _segmentation(
    batch: RunData, x_m: torch.Tensor, parts_m: torch.Tensor | None
) -> dict[str, Any]:
    model = batch.run.model
    cfg = batch.run.config
    images, parts = batch.images, batch.parts
    out: dict[str, Any] = {}
    with torch.no_grad():
        logits = model(images, batch.cond).seg_logits
    assert logits is not None
    binary = logits.shape[1] == 1
    if parts is not None:
        target_bin = (parts >= 2).long()
        pred = predicted_labels(logits).cpu()
        if binary:
            out["iou_binary"] = _pooled_iou(pred, target_bin)
        else:
            seg = M.seg_iou(pred, parts, len(PART_NAMES))
            out["miou"] = seg.miou
            out["iou_per_class"] = dict(zip(PART_NAMES, seg.per_class.tolist(), strict=False))
            out["iou_binary"] = _pooled_iou((pred >= 2).long(), target_bin)
    # Seg-Grad-CAM per class over its predicted region, energy inside its true region.
    classes = (
        [1]
        if binary
        else [
            c
            for c in range(1, len(PART_NAMES))
            if parts is not None and bool((parts[: x_m.shape[0]] == c).any())
        ]
    )
    cams_out: dict[str, Any] = {}
    if classes:
        targets = [
            SegClass(0 if binary else c, class_name="foreground" if binary else PART_NAMES[c])
            for c in classes
        ]
        res = compute_cams(
            model, x_m, targets, cond=None if batch.cond is None else batch.cond[: x_m.shape[0]]
        )
        maps = upsample(res.maps, x_m.shape[-1]).cpu()
        for i, c in enumerate(classes):
            name = "foreground" if binary else PART_NAMES[c]
            entry: dict[str, Any] = {"target": res.target_names[i]}
            if parts_m is not None:
                mask = (parts_m >= 2) if binary else (parts_m == c)
                entry["energy_in_class"] = _mean(M.energy_in_region(maps[:, i : i + 1], mask))
                entry["chance"] = _mean(M.region_share(mask))
            cams_out[name] = entry
    out["seg_grad_cam"] = cams_out
    out["classes"] = cfg.model.seg_classes
    return out


def _fit_image_probe(
    pixels: torch.Tensor, labels: torch.Tensor, steps: int = 150
) -> torch.nn.Linear:
    """Logistic regression from 16x16 pixels to the 40 attributes (the judge of edits)."""
    torch.manual_seed(0)
    probe = torch.nn.Linear(pixels.shape[1], labels.shape[1])
    opt = torch.optim.Adam(probe.parameters(), lr=0.05, weight_decay=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(probe(pixels), labels)
        loss.backward()
        opt.step()
    return probe


def _probe_pixels(images: torch.Tensor) -> torch.Tensor:
    small = F.adaptive_avg_pool2d(images.float().cpu(), 16)
    return (small.flatten(1) - 0.5) * 4.0


def _attribute_control(batch: RunData) -> dict[str, Any]:
    assert batch.attrs is not None and batch.cond is not None
    model = batch.run.model
    attrs = batch.attrs.float()
    rate = attrs.mean(0)
    varied = [a for a in range(attrs.shape[1]) if 0.05 < float(rate[a]) < 0.95]
    if not varied or attrs.shape[0] < 16:
        return {"note": "too few images with varying attributes for a probe"}
    with torch.enable_grad():
        probe = _fit_image_probe(_probe_pixels(batch.images), attrs)
    with torch.no_grad():
        mu, _ = model.encode(batch.images, batch.cond)
        base_out = model.decode(mu, batch.cond).recon
        assert base_out is not None
        base = torch.sigmoid(probe(_probe_pixels(base_out)))
        per_attr: dict[str, Any] = {}
        for a in varied:
            flipped = batch.cond.clone()
            flipped[:, a] = 1.0 - flipped[:, a]
            recon = model.decode(mu, flipped).recon
            assert recon is not None
            p = torch.sigmoid(probe(_probe_pixels(recon)))
            want = flipped[:, a].cpu()
            flip_rate = float(((p[:, a] > 0.5).float() == want).float().mean())
            moved = float(((p[:, a] - base[:, a]) * (2 * want - 1)).mean())
            others = [o for o in varied if o != a]
            shift = float((p[:, others] - base[:, others]).abs().mean()) if others else 0.0
            per_attr[ATTRIBUTE_NAMES[a]] = {
                "flip_rate": flip_rate,
                "probe_shift": moved,
                "others_shift": shift,
            }
    mean_flip = float(np.mean([v["flip_rate"] for v in per_attr.values()]))
    return {
        "per_attribute": per_attr,
        "mean_flip_rate": mean_flip,
        "judge": "logistic probe on 16x16 pixels",
    }


def evaluate_run(
    run: str | Path,
    data: str | Path | None = None,
    out: str | Path | None = None,
    n: int = 256,
    split: str = "val",
    layers: Sequence[str] | str | None = None,
    method: str = "gradcam",
    sanity: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Load a run and ``n`` images of its data, evaluate, and write the JSON to ``out``."""
    if out is not None:  # a bad output path fails before the long work
        out = Path(out)
        if out.is_dir():
            raise InputError(f"--out {out} is a folder; give the path of a .json file")
        ensure_dir(out.parent, what="--out parent")
    batch = open_run_data(run, data, n=n, split=split, progress=progress)
    result = evaluate(batch, layers=layers, method=method, sanity=sanity, progress=progress)
    if out is not None:
        write_json(out, jsonable(result))
    return result


def jsonable(obj: Any) -> Any:
    """The metrics dict made JSON-safe: NumPy scalars to Python, NaN/Inf to null."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    return obj
