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
    With several layers/methods (``layers=``, ``methods=``), ``localisation.comparison`` has
    one row per (layer, method) (layers may include ``"fusion"``; the paper's layer is always
    included) with ``layer, method, map_size, energy_in_part, pointing_game, chance,
    spearman_cam_effect, top10_iou_cam_effect, spearman_cam_decoder`` (means over the active
    units, null when not computable); ``localisation.auto`` = ``{layer, method, reason,
    scores}`` when "auto" was asked (:mod:`latentcam.explain.layers`); ``paper_layer`` names
    the model's own layer. ``layers`` keeps one entry per explained layer (method ``method``).
``decoder``
    Decoder-side explanations (:mod:`latentcam.explain.decoder`) of the active units: the exact
    gradient map ||d decode(mu) / d z_k|| per unit; ``unit_part_decoder`` and
    ``unit_part_encoder`` (share of each unit's map mass per region, rows = ``units``, columns
    = ``regions``; encoder = Grad-CAM at ``encoder_layer``, the paper's), ``matrix_agreement``
    (Pearson of the two row-normalised matrices), ``matrix_agreement_centred`` (the same after
    removing each region's mean share over units, i.e. the area effect),
    ``spearman_cam_decoder`` per unit and its mean, ``units_per_part`` (region -> the 5 units
    with the most decoder mass per area there: "which units drive this part"), ``exact``.
``ranking``
    Units ranked by KL, by effect size (mean |effect|), and by a linear probe on mu per
    attribute (single-unit AUROC on held-out images), with the top units per attribute: the
    paper's "metric to evaluate set of most significant latent nodes".
``disentanglement`` (synthetic faces, whose factors are known)
    MIG (Chen et al. 2018) and DCI (Eastwood & Williams 2018) as in disentanglement_lib, the
    best unit per factor (highest mutual information), and whether that unit's Grad-CAM map
    lands on the region the factor moves (at the paper's layer; ``per_layer`` at every
    explained layer; ``per_method[method][layer]`` for every compared CAM method).
``directions`` (on by default when the data has attributes; :mod:`latentcam.concepts`)
    Concepts instead of units: latent directions fit on the training split
    (:mod:`latentcam.explain.directions`), their heatmaps (the CAM of the score mu . w)
    scored against the parts where each concept shows, beside the best single unit for the
    same concept scored the same way. ``directions.attributes[NAME]`` (and
    ``directions.factors[NAME]`` on synthetic faces) holds ``auroc`` (held-out, of mu . w;
    ``r2`` and ``corr`` for factors), ``n_pos``, ``parts``, ``scale`` (the data's standard
    deviation along w), ``best_unit`` ``{unit, sign, auroc}``, ``encoded`` (whether the
    held-out probe says the model encodes the concept at all: AUROC >= 0.6, R² >= 0.1), and,
    when the data has part masks: ``faces`` / ``faces_without_part`` /
    ``faces_without_concept`` (each direction, and its best unit, is scored on the faces
    that have the part and show the concept: label 1, a factor in its upper half),
    ``layers[LAYER][METHOD]`` with ``energy_in_part``, ``pointing_game``, ``chance`` (the
    part's area share), ``cell_chance`` (a random cell of that layer's grid),
    ``random_pointing`` and ``random_energy`` (the same scores of 8 seeded random directions:
    the null baseline of a map that knows the face but not the concept),
    ``effect_pointing`` (the pointing game of the effect map |decode(mu + 3 m) -
    decode(mu - 3 m)|, m = one data SD of the score along the direction's activation
    pattern) and ``spearman_cam_effect``; ``best`` (the layer and method that
    localise best by the rule of ``--layer auto`` against the strongest of the three baselines,
    with the same scores and a ``verdict`` against that baseline); ``unit`` (the best single
    unit's scores at that layer and method, and its ``own_best``). ``directions.unsupervised
    [NAME]`` (PCA, SeFa or the decoder Jacobian's directions) holds ``explained_variance``
    and ``top_correlates`` ([name, Pearson r] of the attributes and factors mu . w tracks
    most). ``skipped`` says which attributes got no direction and why.
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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from latentcam.checkpoint import LoadedRun, load_run
from latentcam.concepts import directions_report, evaluation_directions
from latentcam.data.classes import ATTRIBUTE_NAMES, PART_NAMES, REGIONS
from latentcam.data.synthetic import FACTOR_REGIONS
from latentcam.errors import InputError
from latentcam.explain import metrics as M
from latentcam.explain.cam import METHODS, compute_cams, latent_cams, upsample
from latentcam.explain.decoder import (
    decoder_jacobian,
    matrix_agreement,
    part_matrix,
    units_for_part,
)
from latentcam.explain.directions import DirectionSet
from latentcam.explain.disentangle import (
    best_unit_per_factor,
    dci,
    mig,
    probe_units,
    top_units_per_attribute,
)
from latentcam.explain.layers import (
    FUSION,
    SCORE_KEYS,
    CamBank,
    auto_candidates,
    compare_layers,
    encoder_blocks,
    localisation_scores,
    mean_finite,
    parse_layers,
    pick_best,
)
from latentcam.explain.targets import SegClass
from latentcam.explain.traversal import effect_maps
from latentcam.io import ensure_dir, write_json
from latentcam.models.base import kl_per_unit
from latentcam.models.protocol import has_seg_output, is_conditional, seg_class_count
from latentcam.models.segvae import predicted_labels
from latentcam.runs import RunData, check_run_output, open_run_data

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


#: The stages of :func:`evaluate` timed in ``seconds_by_stage``, in the order they run.
STAGES = (
    "units",
    "effect_maps",
    "decoder_maps",
    "comparison",
    "decoder",
    "ranking",
    "disentanglement",
    "directions",
    "sanity",
    "segmentation",
    "attribute_control",
)


@contextmanager
def _stage(seconds: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall-clock seconds of the ``with`` block to ``seconds[name]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start


def _comparison_layers(model: torch.nn.Module, wanted: Sequence[str]) -> list[str]:
    """``wanted`` in a stable order: encoder blocks shallow to deep, other names, fusion."""
    blocks = [b for b in encoder_blocks(model) if b in wanted]
    others = [n for n in wanted if n not in blocks and n != FUSION]
    return blocks + others + ([FUSION] if FUSION in wanted else [])


def evaluate(
    batch: RunData,
    layers: Sequence[str] | str | None = None,
    method: str = "gradcam",
    max_map_images: int = 32,
    top_units: int = 10,
    sanity: bool = True,
    progress: bool = True,
    methods: Sequence[str] | None = None,
    fuse_how: str = "mean",
    directions: DirectionSet | bool | None = None,
    direction_images: int = 64,
) -> dict[str, Any]:
    """Compute every metric that the run and its data allow (see the module docstring).

    Args:
        batch: a run and its images (:func:`latentcam.runs.open_run_data`).
        layers: layer spec (:func:`latentcam.explain.layers.parse_layers`): names, "default"
            (the paper's layer), "all" (every encoder block), "fusion", "auto", or a list.
        method: CAM method (gradcam, gradcam++, xgradcam, hirescam, layercam) of the
            per-layer section, the factor scores and the decoder comparison.
        max_map_images: images used for maps, effect maps and decoder maps (the costly part).
        top_units: units listed one by one (by KL); means are over all active units.
        sanity: run the cascading-randomisation check.
        methods: the methods compared in ``localisation.comparison`` (default: ``method``);
            the first one replaces ``method``.
        fuse_how: how the "fusion" layer combines maps (mean, geomean, max).
        directions: the ``directions`` section: None = on when the data has attributes
            (directions fit on the run's training split), False = off, or the
            :class:`~latentcam.explain.directions.DirectionSet` to score.
        direction_images: images the directions' heatmaps are scored on (the first ones).

    Returns:
        A JSON-ready dict (floats, ints, lists, strings).
    """
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}  # stage -> wall-clock seconds (``seconds_by_stage``)
    model = batch.run.model
    cfg = batch.run.config
    images, cond = batch.images, batch.cond
    N, _, H, _ = images.shape
    methods = [method] if not methods else list(dict.fromkeys(methods))
    method = methods[0]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise InputError(f"unknown CAM method '{bad[0]}'; choose one of: {', '.join(METHODS)}")
    request = parse_layers(model, layers)  # fails fast on a bad name, before the costly part
    paper_layer = model.explain_layer
    with _stage(seconds, "units"), torch.no_grad():
        mu, logvar = model.encode(images, cond)
        kl = kl_per_unit(mu, logvar).cpu()
    K = mu.shape[1]
    active = M.active_units(kl, ACTIVE_THRESHOLD)
    by_kl = torch.tensor(M.units_by_kl(mu, logvar))  # the ordering every tool shows
    result: dict[str, Any] = {
        "run": str(batch.run.run_dir or batch.run.checkpoint_path),
        "model": cfg.model.kind,
        "data": batch.data_path,
        "split": batch.split,
        "num_images": N,
        "image_size": H,
        "latent_dim": K,
        "method": method,
        "methods": methods,
        "units": {
            "kl": kl.tolist(),
            "active_threshold": ACTIVE_THRESHOLD,
            "active": int(active.sum()),
            "active_units": torch.nonzero(active).flatten().tolist(),
        },
    }
    Nm = min(N, max_map_images)
    result["map_images"] = Nm  # images behind the maps, effect maps and localisation scores
    x_m = images[:Nm]
    c_m = None if cond is None else cond[:Nm]
    parts_m = None if batch.parts is None else batch.parts[:Nm]
    log.info("effect maps of %d units on %d images", K, Nm)
    with _stage(seconds, "effect_maps"):
        effects = effect_maps(
            model, mu[:Nm], cond=c_m, delta=3.0, progress=progress
        ).cpu()  # (Nm, K, H, W)
        eff_size = M.effect_size(effects).cpu()
    result["ranking"] = {
        "by_kl": by_kl.tolist(),
        "by_effect": M.rank_units(eff_size).tolist(),
        "effect_size": eff_size.tolist(),
    }
    regions = ["none"] * K
    if parts_m is not None:
        with _stage(seconds, "effect_maps"):
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
    # --- the units scored (active, else all) and their decoder gradient maps
    shown = by_kl[: min(top_units, K)].tolist()
    scored = torch.nonzero(active).flatten().tolist() or list(range(K))
    log.info("decoder gradient maps of %d units on %d images", len(scored), Nm)
    with _stage(seconds, "decoder_maps"):
        dec = decoder_jacobian(model, mu[:Nm], cond=c_m, units=scored, progress=progress)
        dec_maps = dec.maps.cpu()  # (Nm, T, H, W)
    eff_scored = effects[:, scored]
    regions_scored = [regions[u] for u in scored]
    bank = CamBank(model, x_m, c_m, fuse_how=fuse_how)
    # --- layer x method comparison (the paper's layer always included)
    candidates = auto_candidates(model) if request.auto else []
    wanted = _comparison_layers(model, [*request.layers, paper_layer, *candidates])
    log.info("localisation of %d layers x %d methods", len(wanted), len(methods))
    with _stage(seconds, "comparison"):
        rows = compare_layers(
            bank,
            wanted,
            methods,
            scored,
            eff_scored,
            parts_m,
            regions_scored,
            dec_maps,
            progress=progress,
        )
    explained = list(request.layers)
    localisation: dict[str, Any] = {}
    if request.auto:
        choice = pick_best(
            [r for r in rows if r.layer in candidates], parts_m is not None, paper_layer
        )
        log.info("layer auto: %s", choice.reason)
        localisation["auto"] = {
            "layer": choice.layer,
            "method": choice.method,
            "reason": choice.reason,
            "scores": choice.scores,
        }
        if choice.layer not in explained:
            explained.append(choice.layer)
    # --- per layer (method ``method``): means over active units and the top units by KL
    by_pair = {(r.layer, r.method): r for r in rows}
    column = {u: j for j, u in enumerate(scored)}
    loc_layers: dict[str, Any] = {}
    for layer in explained:
        row = by_pair[(layer, method)]
        if all(u in column for u in shown):  # the comparison scored them: reuse its scores
            index = torch.tensor([column[u] for u in shown], dtype=torch.long)
            scores = {k: v[index] for k, v in row.per_unit.items() if k != "spearman_cam_decoder"}
        else:
            with _stage(seconds, "comparison"):
                cams = bank.image_maps(layer, method, shown)
                scores = localisation_scores(
                    cams, effects[:, shown], parts_m, [regions[u] for u in shown]
                )
        means = {k: getattr(row, k) for k in SCORE_KEYS if k != "spearman_cam_decoder"}
        if parts_m is None:
            means = {k: means[k] for k in ("spearman_cam_effect", "top10_iou_cam_effect")}
        loc_layers[layer] = {
            "map_size": row.map_size,
            "mean_over_active": means,
            "per_unit": [
                {
                    "unit": u,
                    "region": regions[u],
                    **{name: float(v[j]) for name, v in scores.items()},
                }
                for j, u in enumerate(shown)
            ],
        }
    localisation.update(
        layers=loc_layers,
        default_layer=paper_layer,
        paper_layer=paper_layer,
        comparison=[r.as_dict() for r in rows],
    )
    result["localisation"] = localisation
    with _stage(seconds, "decoder"):
        result["decoder"] = _decoder_section(
            bank,
            paper_layer,
            method,
            scored,
            dec_maps,
            dec.exact,
            parts_m,
            by_pair[(paper_layer, method)].per_unit["spearman_cam_decoder"],
        )
    # --- attribute probes (which units matter)
    if batch.attrs is not None and N >= 8:
        with _stage(seconds, "ranking"):
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
        with _stage(seconds, "disentanglement"):
            result["disentanglement"] = _disentanglement(
                batch, mu.cpu(), bank, explained, parts_m, method, methods, progress
            )
    # --- concepts: latent directions scored against their parts
    if directions is not False and (directions not in (None, True) or batch.attrs is not None):
        with _stage(seconds, "directions"):
            if isinstance(directions, DirectionSet):
                found = directions
            else:
                found = evaluation_directions(
                    batch.run,
                    batch.data_path,
                    has_attrs=batch.attrs is not None,
                    has_factors=batch.factors is not None,
                    progress=progress,
                )
            Nd = min(N, max(1, direction_images))
            log.info("directions: %d on %d images", len(found), Nd)
            result["directions"] = directions_report(
                batch.run,
                images[:Nd],
                None if cond is None else cond[:Nd],
                None if batch.parts is None else batch.parts[:Nd],
                found,
                progress=progress,
                attrs=None if batch.attrs is None else batch.attrs[:Nd],
                factors=None if batch.factors is None else batch.factors[:Nd],
                factor_names=batch.factor_names,
            )
    # --- sanity check, on the units (by KL) whose maps are not zero everywhere: a constant
    # map cannot be rank-correlated (with a linear head, a unit's map can be all zero).
    if sanity:
        with _stage(seconds, "sanity"):
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
    if has_seg_output(model):
        with _stage(seconds, "segmentation"):
            result["segmentation"] = _segmentation(batch, x_m, parts_m)
    if is_conditional(model) and batch.attrs is not None:
        with _stage(seconds, "attribute_control"):
            result["attribute_control"] = _attribute_control(batch)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    result["seconds_by_stage"] = {k: round(seconds[k], 3) for k in STAGES if k in seconds}
    return result


def _decoder_section(
    bank: CamBank,
    layer: str,
    method: str,
    units: list[int],
    dec_maps: torch.Tensor,
    exact: bool,
    parts: torch.Tensor | None,
    rho: torch.Tensor,
) -> dict[str, Any]:
    """Encoder-side (Grad-CAM at ``layer``) vs decoder-side (d decode / d z_k) explanations.

    ``rho``: float (T,), Spearman(Grad-CAM, decoder map) per unit, as
    :func:`latentcam.explain.decoder.map_agreement` (the comparison's ``per_unit`` row).
    """
    cams = bank.image_maps(layer, method, units)  # (Nm, T, H, W)
    out: dict[str, Any] = {
        "units": units,
        "encoder_layer": layer,
        "method": method,
        "exact": exact,
        "spearman_cam_decoder": rho.tolist(),
        "spearman_cam_decoder_mean": mean_finite(rho),
        "regions": list(REGIONS),
        "unit_part_decoder": None,
        "unit_part_encoder": None,
        "area": None,
        "matrix_agreement": None,
        "matrix_agreement_centred": None,
        "units_per_part": {},
    }
    if parts is not None:
        dec_table = part_matrix(dec_maps, parts)
        enc_table = part_matrix(cams, parts)
        present = dec_table.area > 0  # regions absent from every image carry no evidence
        enc_share, dec_share = enc_table.share[:, present], dec_table.share[:, present]
        agreement = matrix_agreement(enc_share, dec_share)
        out.update(
            regions=list(dec_table.regions),
            unit_part_decoder=dec_table.share.tolist(),
            unit_part_encoder=enc_table.share.tolist(),
            area=dec_table.area.tolist(),
            matrix_agreement=agreement,
            matrix_agreement_centred=matrix_agreement(enc_share, dec_share, centre=True),
            units_per_part={
                r: units_for_part(dec_table, r, k=5, units=units)
                for i, r in enumerate(dec_table.regions)
                if bool(present[i])
            },
        )
    return out


def _disentanglement(
    batch: RunData,
    mu: torch.Tensor,
    bank: CamBank,
    layers: Sequence[str],
    parts_m: torch.Tensor | None,
    method: str,
    methods: Sequence[str] = (),
    progress: bool = False,
) -> dict[str, Any]:
    assert batch.factors is not None
    model = bank.model
    factors = batch.factors
    N = mu.shape[0]
    half = N // 2
    m = mig(mu, factors)
    d = dci(mu[:half], factors[:half], mu[half:], factors[half:], progress=progress)
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
    per_factor = []
    units = best.unit.tolist()
    paper_layer = str(model.explain_layer)
    scored_layers = [paper_layer, *(layer for layer in layers if layer != paper_layer)]
    distinct = sorted(set(units))
    col = {u: i for i, u in enumerate(distinct)}
    others = [m for m in dict.fromkeys(methods) if m != method]
    cams: dict[str, dict[str, torch.Tensor]] = (
        {
            m: {layer: bank.image_maps(layer, m, distinct) for layer in scored_layers}
            for m in [method, *others]
        }
        if parts_m is not None
        else {}
    )

    def scores_of(maps: torch.Tensor, ids: tuple[int, ...]) -> dict[str, Any]:
        assert parts_m is not None
        sc = M.region_scores(maps, parts_m, "target", {"target": ids})
        scores: dict[str, Any] = {
            "energy_in_part": mean_finite(sc.energy),
            "pointing_game": mean_finite(sc.hits.float()),
            "chance": mean_finite(sc.chance),
        }
        scores["lands_on_part"] = bool(
            scores["pointing_game"] > scores["chance"]
            and scores["energy_in_part"] > scores["chance"]
        )
        return scores

    for f, name in enumerate(batch.factor_names):
        entry: dict[str, Any] = {
            "factor": name,
            "unit": units[f],
            "normalised_mi": float(best.normalised[f]),
        }
        regions = [r for r in FACTOR_REGIONS.get(name, ()) if r in REGIONS]
        if cams and parts_m is not None and regions and len(regions) < len(REGIONS) - 1:
            ids = tuple(i for r in regions for i in REGIONS[r])
            j = col[units[f]]
            per_method = {
                m: {layer: scores_of(maps[:, j : j + 1], ids) for layer, maps in by_layer.items()}
                for m, by_layer in cams.items()
            }
            per_layer = per_method[method]
            entry.update(regions=regions, **per_layer[paper_layer], per_layer=per_layer)
            if others:
                entry["per_method"] = per_method
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
                entry["energy_in_class"] = mean_finite(M.energy_in_region(maps[:, i : i + 1], mask))
                entry["chance"] = mean_finite(M.region_share(mask))
            cams_out[name] = entry
    out["seg_grad_cam"] = cams_out
    out["classes"] = seg_class_count(model)
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
                # the flip rate of the unedited reconstruction: the rate a CVAE that ignores
                # its condition scores (the chance level of flip_rate)
                "unedited_rate": float(((base[:, a] > 0.5).float() == want).float().mean()),
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
    run: str | Path | LoadedRun,
    data: str | Path | None = None,
    out: str | Path | None = None,
    n: int = 256,
    split: str = "val",
    layers: Sequence[str] | str | None = None,
    method: str = "gradcam",
    sanity: bool = True,
    progress: bool = True,
    methods: Sequence[str] | None = None,
    max_map_images: int = 32,
    directions: DirectionSet | bool | None = None,
    direction_images: int = 64,
) -> dict[str, Any]:
    """Load a run and ``n`` images of its data, evaluate, and write the JSON to ``out``.

    The arguments after ``data``/``out``/``n``/``split`` are those of :func:`evaluate`.
    """
    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    if out is not None:  # a bad output path fails before the long work
        out = check_run_output(out, loaded, data)
        if out.is_dir():
            raise InputError(f"--out {out} is a folder; give the path of a .json file")
        ensure_dir(out.parent, what="--out parent")
    batch = open_run_data(loaded, data, n=n, split=split, progress=progress)
    result = evaluate(
        batch,
        layers=layers,
        method=method,
        methods=methods,
        max_map_images=max_map_images,
        sanity=sanity,
        progress=progress,
        directions=directions,
        direction_images=direction_images,
    )
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
