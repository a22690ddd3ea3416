"""The report's section "What the model knows about each attribute": latent directions.

A direction w in mu space (:mod:`latentcam.explain.directions`) is a concept the model
holds; its score mu . w is explained like a latent unit. This section shows, for every
attribute (and, on synthetic faces, every known factor) whose direction has face parts,
the scores that ``latentcam evaluate`` wrote under ``directions``
(:func:`latentcam.concepts.directions_report`) beside those of the best single unit for the
same concept, and one figure per attribute: the input with the part outlined, the heatmaps
of the direction and of the unit at the direction's best layer and method, their effect
maps, and the traversal z = mu + t m (t = -2 ... 2 data standard deviations of the score,
m along the direction's activation pattern) with the heatmap and effect map at each step. Then the most significant directions (held-out AUROC
of each direction beside its best unit, and the unsupervised directions' share of variance)
and what the unsupervised directions (PCA, SeFa or the decoder Jacobian's) correlate with.

Every number shown is read from the metrics dict; the pictures are computed here, from the
same :class:`~latentcam.explain.directions.DirectionSet` that the metrics scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from latentcam import plots
from latentcam.concepts import pointing_verdict
from latentcam.data.classes import ATTRIBUTE_IDS, ATTRIBUTE_NAMES
from latentcam.explain.cam import normalise, upsample
from latentcam.explain.directions import Direction, DirectionSet, part_ids, unit_direction
from latentcam.explain.layers import FUSION, CamBank
from latentcam.explain.traversal import effect_maps, traverse_directions
from latentcam.figures import colorize, figure_png_bytes, overlay, to_uint8_hwc
from latentcam.generate import as_pictures
from latentcam.report.html import Report, Section
from latentcam.runs import RunData

Tensor = torch.Tensor

#: Section title.
TITLE = "What the model knows about each attribute"
#: Attributes shown first (the paper's and the measured ones), when the data has them.
HEADLINE = ("Smiling", "Eyeglasses", "Wearing_Hat", "Bangs")
#: Traversal steps, in data standard deviations of each direction's score.
STEPS = (-2.0, -1.0, 0.0, 1.0, 2.0)
#: Effect-map step (in data standard deviations), as ``directions_report`` scores it.
EFFECT_DELTA = 3.0
#: Score columns of the tables: (metrics key, column name).
SCORE_COLUMNS = (
    ("pointing_game", "pointing game"),
    ("chance", "chance (area)"),
    ("cell_chance", "chance (cell)"),
    ("random_pointing", "chance (random dirs)"),
    ("verdict", "verdict"),
    ("energy_in_part", "energy in part"),
    ("effect_pointing", "effect pointing"),
    ("spearman_cam_effect", "Spearman CAM-effect"),
)
#: Table columns shaded by value.
HEAT_COLUMNS = ("AUROC", "r", "pointing game", "energy in part", "effect pointing")
#: Tint of a face part in the "part" panel.
PART_TINT = np.array([255, 140, 0], dtype=np.float32)
#: Display resolution of the report's figures (dots per inch) and the widest figure a report
#: page shows unscaled (its content is 1150 px wide): figures are drawn at the size they are
#: shown.
DPI = 110
MAX_WIDTH = 1140


def directions_section(
    report: Report, batch: RunData, metrics: Mapping[str, Any], found: DirectionSet
) -> Section | None:
    """Add the section (see the module docstring) to ``report``; None when the metrics have
    no ``directions`` section (the data has no attributes).

    Args:
        report: the report being built.
        batch: the run and the evaluation images (the first ``directions.map_images`` of them
            are those the directions were scored on).
        metrics: :func:`latentcam.evaluate.evaluate`'s dict (JSON-safe), scored on ``found``.
        found: the directions that ``metrics["directions"]`` scored.
    """
    section = metrics.get("directions")
    if not section:
        return None
    sec = report.section(TITLE)
    attributes = section.get("attributes", {})
    factors = section.get("factors", {})
    scored = [n for n in _ordered(attributes) if "best" in attributes[n]]
    has_masks = batch.parts is not None
    sec.text(
        "A latent direction w is a concept in mu space: here the weight vector of a "
        "class-balanced logistic probe on mu that predicts the attribute, fit on "
        f"{section.get('train_images', '?')} training images and scored on "
        f"{section.get('val_images', '?')} validation images (the boundary of InterFaceGAN, "
        "a concept activation vector of TCAV). Its score mu . w is explained like a latent "
        "unit: the heatmap is the CAM of mu . w. Beside it, the single latent unit that best "
        "predicts the attribute (highest AUROC on the training split), scored the same way: "
        "a unit is the direction e_k."
    )
    sec.figure(
        _png(
            plots.direction_ranking(
                [{"name": d.name, "kind": d.kind, **d.scores} for d in found], panel_width=4.5
            )
        ),
        "The most significant latent directions (the paper's open question): held-out AUROC "
        "of mu . w for each attribute direction, beside its best single unit's; and the "
        "unsupervised directions' share of the variance of mu (PCA) or of the decoder's "
        "first layer's energy (SeFa, Jacobian), with the label each tracks most.",
    )
    if scored:
        sec.text(
            f"Heatmaps are scored on the {section.get('map_images', '?')} validation faces "
            "where the attribute's part is present, at every encoder block "
            f"({', '.join(section.get('layers', []))}) with {', '.join(section.get('methods', []))}; "
            "the direction's best layer and method are chosen by the rule of --layer auto "
            "(best mean rank over pointing game minus its strongest chance, energy in part and "
            "agreement with the effect map), and the unit is scored at the same layer and "
            "method. The pointing game (Zhang et al. 2016) counts the faces whose map peaks "
            "inside the part; its chance is the part's share of the image (area), of the "
            "layer's grid cells (cell: a coarse map peaks at a cell centre), or the pointing "
            "game of 8 random directions (random dirs: a map that knows the face but not the "
            "concept; small salient parts beat their area easily), and the verdict compares it "
            "with the strongest of the three. Energy in part is the map's mass inside the part "
            "(Wang et al. 2020); effect pointing is the pointing game of the effect map "
            "|decode(mu + 3 m) - decode(mu - 3 m)|, m = one data SD of the concept's score "
            "along its activation pattern (Haufe et al. 2014); Spearman is the rank "
            "correlation of heatmap and effect map over the cells of the layer's grid."
        )
        sec.table(
            score_rows(attributes, scored, _map_sizes(metrics)),
            "Attribute directions and their best single units, in pairs (−unit k: the unit's "
            "negative direction -e_k, when the attribute lowers mu_k); faces: those scored, "
            "where the part is present. Numbers from metrics.json, directions.attributes.",
            heat=HEAT_COLUMNS,
        )
    elif not has_masks:
        sec.text(
            "The data has no part masks, so the heatmaps cannot be scored against the face "
            "parts; the figures show the maps at the model's explained layer with Grad-CAM."
        )
    shown = scored if has_masks else [n for n in _ordered(attributes) if attributes[n].get("parts")]
    if shown:
        sec.text(
            "One figure per attribute. Left: the input"
            + (" with the part outlined in white, the part itself" if has_masks else "")
            + "; the heatmaps of the direction and of the unit"
            + (" at the direction's best layer and method" if has_masks else "")
            + ", and their effect maps at 3 data standard deviations (each map min-max "
            "normalised; its largest change |Δ|, in image units, above it). Right: the "
            "traversal z = mu + t s w, t = -2 ... 2: the decoded image, the heatmap "
            "of mu . w on it re-encoded (the paper's heatmap per step), and |decoded(t) - "
            "decoded(0)| (each row one scale over the steps)."
        )
    among = int(section.get("map_images", 0))
    for name in shown:
        image = _pick_image(batch, found[name], name, among)
        sec.figure(
            _png(direction_figure(batch, found[name], attributes[name], image)),
            _caption(name, attributes[name], image, batch, "attribute"),
        )
    unparted = [n for n in _ordered(attributes) if not attributes[n].get("parts")]
    if unparted:
        sec.text(
            "Directions without a face part to point at (the whole face or the skin at large), "
            "scored by AUROC only (in the ranking above): " + ", ".join(unparted) + "."
        )
    factor_names = [n for n in factors if "best" in factors[n]]
    if factor_names:
        sec.text(
            "On synthetic faces the factors are known: each factor direction is a ridge "
            "regression of the factor on mu; R² and r are held out, and the unit is the one "
            "whose mu correlates most with the factor."
        )
        sec.table(
            score_rows(factors, factor_names, _map_sizes(metrics), fit="factor"),
            "Factor directions and their best single units, in pairs (numbers from "
            "metrics.json, directions.factors).",
            heat=HEAT_COLUMNS,
        )
        faces = [
            f"{n} #{_pick_image(batch, found[n], n, batch.images.shape[0])}" for n in factor_names
        ]
        sec.figure(
            _png(factor_figure(batch, found, factors, factor_names)),
            "Each factor on the first validation face where its part is present (outlined; "
            + ", ".join(faces)
            + "): the heatmaps of the direction and of its best unit at the direction's best "
            "layer and method (the table's), and their effect maps at 3 data standard "
            "deviations (each map min-max normalised; its largest change |Δ| above it).",
        )
    unsupervised = section.get("unsupervised", {})
    if unsupervised:
        sec.table(
            unsupervised_rows(unsupervised),
            "Directions found without labels: principal components of mu (GANSpace) and the "
            "directions the decoder amplifies most (SeFa: eigenvectors of W^T W of its first "
            "linear layer; else the decoder Jacobian's), each signed so that it tracks its top "
            "correlate positively; Pearson r of mu . w with the attributes and factors "
            "(numbers from metrics.json, directions.unsupervised).",
            heat=["explained variance"],
        )
    skipped = section.get("skipped", {})
    if skipped:
        sec.text(
            "No direction for "
            + ", ".join(sorted(skipped))
            + ": too few faces with or without the attribute in the training split (the "
            "reasons are in metrics.json, directions.skipped)."
        )
    return sec


# ----------------------------------------------------------------------------- tables


def _ordered(entries: Mapping[str, Any]) -> list[str]:
    """Names of ``entries``: the headline attributes first, then CelebA's order, then others."""
    order = {n: i for i, n in enumerate(ATTRIBUTE_NAMES)}
    head = [n for n in HEADLINE if n in entries]
    rest = sorted(
        (n for n in entries if n not in head), key=lambda n: (order.get(n, len(order)), n)
    )
    return head + rest


def _map_sizes(metrics: Mapping[str, Any]) -> dict[str, str]:
    """Layer name -> "16x16" from the localisation comparison (the layers' map sizes)."""
    sizes = {}
    for row in metrics.get("localisation", {}).get("comparison", []):
        if row.get("layer") != FUSION and row.get("map_size"):
            sizes[row["layer"]] = "x".join(str(v) for v in row["map_size"])
    return sizes


def score_rows(
    entries: Mapping[str, Mapping[str, Any]],
    names: Sequence[str],
    sizes: Mapping[str, str] | None = None,
    fit: str = "attribute",
) -> list[dict[str, Any]]:
    """Table rows, in pairs: each direction's best scores, then its best unit's at the same
    layer and method.

    The verdict is cut to its first clause ("at chance"); the figure captions give it whole.

    Args:
        entries: ``metrics["directions"]["attributes"]`` (or ``["factors"]``).
        names: the entries shown, in order (each with a ``best`` entry).
        sizes: layer -> map size, for the layer column.
        fit: "attribute" (an ``AUROC`` column) or "factor" (``R²`` and ``r``).
    """
    sizes = sizes or {}
    head = "attribute → parts" if fit == "attribute" else "factor → parts"
    rows = []
    for name in names:
        entry = entries[name]
        best = entry["best"]
        fits: dict[str, Any] = (
            {"AUROC": entry.get("auroc")}
            if fit == "attribute"
            else {"R²": entry.get("r2"), "r": entry.get("corr")}
        )
        rows.append(
            {
                head: f"{name} → {', '.join(entry.get('parts', []))}",
                "handle": "direction",
                **fits,
                "layer, method": _layer_cell(best["layer"], best["method"], sizes),
                **_scores(best),
                "faces": entry.get("faces"),
            }
        )
        unit = entry.get("unit")
        best_unit = entry.get("best_unit")
        if unit is None or best_unit is None:
            continue
        unit_fits: dict[str, Any] = (
            {"AUROC": best_unit.get("auroc")}
            if fit == "attribute"
            else {"R²": None, "r": best_unit.get("corr")}
        )
        rows.append(
            {
                head: "",
                "handle": _unit_name(best_unit),
                **unit_fits,
                "layer, method": _layer_cell(unit["layer"], unit["method"], sizes),
                **_scores(unit),
                "faces": "",
            }
        )
    return rows


def _scores(scores: Mapping[str, Any]) -> dict[str, Any]:
    row = {column: scores.get(key) for key, column in SCORE_COLUMNS}
    judged = pointing_verdict(scores)
    row["verdict"] = judged._replace(text=judged.short)  # a Verdict: the cell is coloured
    return row


def _layer_cell(layer: str, method: str, sizes: Mapping[str, str]) -> str:
    return f"{layer} ({sizes[layer]}) {method}" if layer in sizes else f"{layer} {method}"


def _unit_name(best_unit: Mapping[str, Any]) -> str:
    """The unit's name: "unit 17", or "−unit 17" for its negative direction -e_k."""
    sign = "" if int(best_unit.get("sign", 1)) >= 0 else "−"
    return f"{sign}unit {int(best_unit['unit'])}"


def unsupervised_rows(entries: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per unsupervised direction: kind, explained variance, its top correlates."""
    return [
        {
            "direction": name,
            "kind": entry.get("kind"),
            "explained variance": entry.get("explained_variance"),
            "tracks most (Pearson r)": "; ".join(
                f"{label.removeprefix('factor:')} {float(r):+.2f}"
                for label, r in entry.get("top_correlates", [])
                if r is not None
            )
            or "–",
        }
        for name, entry in entries.items()
    ]


def _caption(name: str, entry: Mapping[str, Any], image: int, batch: RunData, kind: str) -> str:
    """One sentence per figure: what it shows and its verdicts."""
    parts = ", ".join(entry.get("parts", [])) or "no part"
    where = f"validation face #{image}"
    if kind == "attribute" and batch.attrs is not None and name in ATTRIBUTE_IDS:
        has = bool(batch.attrs[image, ATTRIBUTE_IDS[name]] > 0)
        where += " (with the attribute)" if has else " (without the attribute)"
    text = (
        f"{name} ({parts}) on {where}; one data SD of its score mu . w is "
        f"{_num(entry.get('scale'))}; the traversal moves along its activation pattern."
    )
    best, unit = entry.get("best"), entry.get("unit")
    if best:
        text += (
            f" Direction at {best['layer']} ({best['method']}): pointing game "
            f"{_pct(best.get('pointing_game'))} against chance {_pct(best.get('chance'))} "
            f"(cell {_pct(best.get('cell_chance'))}): {pointing_verdict(best).text}."
        )
    if unit and entry.get("best_unit"):
        own = unit.get("own_best", {})
        text += (
            f" Best single unit ({_unit_name(entry['best_unit'])}) there: "
            f"{_pct(unit.get('pointing_game'))}, {pointing_verdict(unit).text}; at its own best "
            f"({own.get('layer')}, {own.get('method')}) {_pct(own.get('pointing_game'))}."
        )
    return text


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.3g}"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100.0 * float(value):.1f}%"


# ----------------------------------------------------------------------------- figures


def _part_mask(batch: RunData, index: int, parts: Sequence[str]) -> Tensor | None:
    """bool (H, W): image ``index``'s pixels in ``parts``; None without masks or parts."""
    if batch.parts is None or not parts:
        return None
    return torch.isin(batch.parts[index].cpu(), torch.tensor(part_ids(parts)))


def _pick_image(batch: RunData, direction: Direction, name: str, among: int) -> int:
    """The first of the ``among`` scored images where the part is present and, for an
    attribute, the attribute too; else the first with the part; else image 0."""
    count = min(batch.images.shape[0], among) if among > 0 else batch.images.shape[0]
    present = [
        i
        for i in range(count)
        if (mask := _part_mask(batch, i, direction.parts)) is not None and bool(mask.any())
    ]
    if batch.attrs is not None and name in ATTRIBUTE_IDS:
        column = batch.attrs[:count, ATTRIBUTE_IDS[name]] > 0
        positive = [i for i in (present or range(count)) if bool(column[i])]
        if positive:
            return positive[0]
    return present[0] if present else 0


def _best_unit(direction: Direction, latent_dim: int) -> Direction | None:
    """The best single unit of a direction as the direction sign * e_k with its data spread."""
    if "best_unit" not in direction.scores:
        return None
    unit = unit_direction(
        int(direction.scores["best_unit"]), latent_dim, int(direction.scores["best_unit_sign"])
    )
    return replace(
        unit, scale=float(direction.scores.get("best_unit_scale", 1.0)), parts=direction.parts
    )


def _unit_label(direction: Direction) -> str:
    """The best unit's name for a figure title, or "" when the direction has none."""
    if "best_unit" not in direction.scores:
        return ""
    return _unit_name(
        {"unit": direction.scores["best_unit"], "sign": direction.scores.get("best_unit_sign", 1)}
    )


def _layer_method(batch: RunData, entry: Mapping[str, Any]) -> tuple[str, str]:
    """The direction's best (layer, method), else the model's explained layer and Grad-CAM."""
    best = entry.get("best")
    if best and best.get("layer"):
        return str(best["layer"]), str(best["method"])
    return str(batch.run.model.explain_layer), "gradcam"


def _still_maps(
    batch: RunData, handles: Sequence[Direction], index: int, layer: str, method: str
) -> tuple[Tensor, Tensor, list[float]]:
    """Heatmaps (T, H, W) and effect maps (T, H, W) at :data:`EFFECT_DELTA` data SDs of
    ``handles`` on image ``index``, each map min-max normalised, and each effect map's
    largest value before that (image units)."""
    model = batch.run.model
    x = batch.images[index : index + 1]
    c = None if batch.cond is None else batch.cond[index : index + 1]
    bank = CamBank(model, x, c, targets=[h.target for h in handles])
    heat = normalise(bank.image_maps(layer, method, list(range(len(handles))))[0].cpu())
    with torch.no_grad():
        mu, _ = model.encode(x, c)
    steps = torch.stack([h.displacement for h in handles])
    effects = effect_maps(model, mu, delta=EFFECT_DELTA, cond=c, directions=steps)
    effects = effects[0].cpu()
    return heat, normalise(effects), [float(e.max()) for e in effects]


def _tinted(picture: np.ndarray, mask: Tensor) -> np.ndarray:
    """uint8 (H, W, 3) with the pixels of ``mask`` tinted with :data:`PART_TINT`."""
    out = picture.astype(np.float32)
    where = mask.numpy()
    out[where] = 0.45 * out[where] + 0.55 * PART_TINT
    return (out + 0.5).astype(np.uint8)


def direction_figure(
    batch: RunData, direction: Direction, entry: Mapping[str, Any], index: int
) -> Any:
    """The figure of one direction on image ``index`` (see the module docstring): 3 rows
    (image, heatmap, effect) x (2 still panels + one per traversal step)."""
    model = batch.run.model
    layer, method = _layer_method(batch, entry)
    unit = _best_unit(direction, int(model.latent_dim))
    handles = [direction] + ([unit] if unit is not None else [])
    heat, effects, peaks = _still_maps(batch, handles, index, layer, method)
    x = batch.images[index : index + 1]
    c = None if batch.cond is None else batch.cond[index : index + 1]
    trav = traverse_directions(
        model,
        x,
        direction.vector[None],
        [direction.name],
        moves=direction.displacement[None],
        steps=STEPS,
        cond=c,
        layer=model.explain_layer if layer == FUSION else layer,
        method=method,
    )
    H, W = x.shape[-2:]
    pictures = trav.images[0, 0].cpu()  # (S, 3, H, W)
    step_heat = normalise(upsample(trav.heatmaps[0, 0].cpu(), (H, W)), per="batch")
    step_effect = normalise(trav.effects[0, 0].cpu(), per="batch")
    mask = _part_mask(batch, index, direction.parts)
    face = to_uint8_hwc(x)[0]
    if mask is not None:
        second, second_title = _tinted(face, mask), "part: " + "+".join(direction.parts)
    else:
        with torch.no_grad():
            recon = as_pictures(model.decode(model.encode(x, c)[0], c))
        second, second_title = to_uint8_hwc(recon)[0], "reconstruction"
    unit_label = _unit_label(direction)
    empty = None
    rows = [
        [face, second, *to_uint8_hwc(pictures)],
        [
            overlay(x, heat[0:1])[0],
            overlay(x, heat[1:2])[0] if unit is not None else empty,
            *overlay(pictures, step_heat),
        ],
        [
            colorize(effects[0], cmap="magma"),
            colorize(effects[1], cmap="magma") if unit is not None else empty,
            *colorize(step_effect, cmap="magma"),
        ],
    ]
    steps = [f"{t:+g} sd" if t else "0 (mu)" for t in STEPS]
    titles = [
        [f"input #{index}", second_title, *steps],
        ["direction", unit_label, *[""] * len(STEPS)],
        [*(f"max |Δ| {peak:.2g}" for peak in peaks), *[""] * (len(STEPS) + 2 - len(peaks))],
    ]
    outlines = {} if mask is None else {(r, c): mask.numpy() for r in (0, 1, 2) for c in (0, 1)}
    outlines.pop((0, 1), None)  # the tinted part needs no outline
    parts = ", ".join(direction.parts) if direction.parts else "no part"
    return plots.titled_panels(
        rows,
        titles,
        row_labels=["image", f"{method} map", "effect"],
        lead=2,
        outlines=outlines,
        title=f"{direction.name} ({parts}): maps at {layer}, {method}; "
        f"traversal in data SDs of mu . w (1 sd = {direction.scale:.3g})",
        cell_inches=1.12,
    )


def factor_figure(
    batch: RunData,
    found: DirectionSet,
    entries: Mapping[str, Mapping[str, Any]],
    names: Sequence[str],
    per_row: int = 2,
) -> Any:
    """Still maps of factor directions: per factor, the input (part outlined), the heatmaps
    of the direction and its best unit, and their effect maps; ``per_row`` factors a row."""
    model = batch.run.model
    among = batch.images.shape[0]
    cells: list[tuple[list[np.ndarray | None], list[str], np.ndarray | None]] = []
    for name in names:
        direction = found[name]
        index = _pick_image(batch, direction, name, among)
        layer, method = _layer_method(batch, entries[name])
        unit = _best_unit(direction, int(model.latent_dim))
        handles = [direction] + ([unit] if unit is not None else [])
        heat, effects, peaks = _still_maps(batch, handles, index, layer, method)
        x = batch.images[index : index + 1]
        mask = _part_mask(batch, index, direction.parts)
        unit_label = _unit_label(direction)
        panels: list[np.ndarray | None] = [
            to_uint8_hwc(x)[0],
            overlay(x, heat[0:1])[0],
            overlay(x, heat[1:2])[0] if unit is not None else None,
            colorize(effects[0], cmap="magma"),
            colorize(effects[1], cmap="magma") if unit is not None else None,
        ]
        titles = [
            name,
            "direction",
            unit_label,
            *(f"max |Δ| {peak:.2g}" for peak in peaks),
            *([""] if unit is None else []),
        ]
        cells.append((panels, titles, None if mask is None else mask.numpy()))
    rows: list[list[np.ndarray | None]] = []
    row_titles: list[list[str]] = []
    outlines: dict[tuple[int, int], np.ndarray] = {}
    width = len(cells[0][0])
    for start in range(0, len(cells), per_row):
        group = cells[start : start + per_row]
        for g, (_, _, outline) in enumerate(group):
            if outline is not None:
                for col in range(width):
                    outlines[(len(rows), g * width + col)] = outline
        rows.append([p for panels, _, _ in group for p in panels])
        row_titles.append([t for _, titles, _ in group for t in titles])
    return plots.titled_panels(
        rows,
        row_titles,
        lead=width if per_row > 1 else 0,
        outlines=outlines,
        title="Factor directions (synthetic faces): maps at each direction's best layer",
        cell_inches=0.98,
    )


def _png(fig: Any) -> bytes:
    return figure_png_bytes(fig, dpi=DPI, max_width=MAX_WIDTH)


__all__ = ["TITLE", "directions_section", "direction_figure", "factor_figure", "score_rows"]
