"""Metric plots for the report: unit ranking, unit x part table, sanity curve, layer comparison.

Each function takes plain numbers (the dict written by :func:`latentcam.evaluate.evaluate`)
and returns a matplotlib Figure; :func:`latentcam.figures.save_figure` writes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def unit_ranking(
    kl: Sequence[float],
    effect: Sequence[float],
    top: int = 30,
    order: Sequence[int] | None = None,
) -> Figure:
    """Bars of KL (nats) and effect size for the ``top`` units by KL, in KL order (``order``:
    the ranking to draw, e.g. evaluate's ``ranking.by_kl``; default: sorted by ``kl``)."""
    kl_a = np.asarray(kl, dtype=float)
    eff = np.asarray(effect, dtype=float)
    ranked = np.argsort(-kl_a, kind="stable") if order is None else np.asarray(order, dtype=int)
    shown = ranked[:top]
    fig, ax = plt.subplots(figsize=(min(10.2, max(6.0, 0.28 * len(shown) + 2)), 3.2))
    x = np.arange(len(shown))
    ax.bar(x - 0.2, kl_a[shown], 0.4, label="KL (nats)", color="#c2410c")
    ax2 = ax.twinx()
    ax2.bar(x + 0.2, eff[shown], 0.4, label="effect size", color="#2563eb")
    ax.set_xticks(x, [str(u) for u in shown], rotation=90, fontsize=8)
    ax.set_xlabel("latent unit (sorted by KL)")
    ax.set_ylabel("KL (nats)", color="#c2410c")
    ax2.set_ylabel("mean |effect|", color="#2563eb")
    ax.set_title("Which units matter: KL and effect size")
    fig.tight_layout()
    return fig


def unit_part_heat(
    share: Sequence[Sequence[float]],
    regions: Sequence[str],
    area: Sequence[float],
    units: Sequence[int],
) -> Figure:
    """Heat table of each unit's effect share per region, divided by the region's area (lift)."""
    s = np.asarray(share, dtype=float)[list(units)]
    a = np.asarray(area, dtype=float)
    lift = s / np.maximum(a, 1e-6)[None]
    fig, ax = plt.subplots(
        figsize=(0.55 * len(regions) + 3.0, 0.32 * len(units) + 2.2), layout="constrained"
    )
    im = ax.imshow(lift, cmap="magma", aspect="auto")
    ax.set_xticks(range(len(regions)), list(regions), rotation=45, ha="right")
    ax.set_yticks(range(len(units)), [f"unit {u}" for u in units])
    ax.set_title("Where each unit acts: effect share / region area (lift)", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.04, label="lift (1 = uniform)")
    return fig


def sanity_curve(curve: Sequence[Mapping[str, Any]], threshold: float = 0.5) -> Figure:
    """Rank correlation with the trained maps as encoder layers are randomised top-down."""
    names = ["trained"] + [str(c["layer"]) for c in curve]
    rho = [1.0] + [float(c["spearman"]) if c["spearman"] is not None else np.nan for c in curve]
    fig, ax = plt.subplots(figsize=(min(10.2, max(5.0, 0.8 * len(names) + 2)), 3.2))
    ax.plot(range(len(names)), rho, "o-", color="#c2410c")
    ax.axhline(threshold, color="#888", ls="--", lw=1, label=f"pass below {threshold}")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    finite = [v for v in rho if np.isfinite(v)]
    low = min([-0.2, *finite])  # the axis covers every point, negative ones included
    ax.set_ylim(low - 0.05 * (1.05 - low), 1.05)
    ax.axhline(0.0, color="#bbb", lw=0.8)
    ax.set_ylabel("Spearman vs. trained maps")
    ax.set_title("Sanity check (Adebayo et al. 2018): cascading randomisation")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def metric_vs_latent(
    rows: Sequence[Mapping[str, Any]], metric: str, x: str = "latent", line: str = "size"
) -> Figure:
    """One line per value of ``line`` (e.g. image size), ``metric`` against ``x`` (latent size)."""
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    groups = sorted({r[line] for r in rows})
    for g in groups:
        pts = sorted(
            (float(r[x]), float(r[metric]))
            for r in rows
            if r[line] == g and r.get(metric) is not None
        )
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"{line}={g}")
    ax.set_xscale("log")
    xs = sorted({r[x] for r in rows})
    ax.set_xticks(xs, [str(v) for v in xs])
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {x}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


#: Localisation metrics drawn by :func:`layer_method_comparison`: (key, axis label).
COMPARISON_METRICS = (
    ("pointing_minus_chance", "pointing game - chance"),
    ("energy_in_part", "energy in part"),
    ("spearman_cam_effect", "Spearman(CAM, effect map)"),
)


def layer_method_comparison(rows: Sequence[Mapping[str, Any]], paper_layer: str) -> Figure:
    """Localisation against map resolution, one line per CAM method, the paper's layer marked.

    ``rows`` are ``localisation.comparison`` rows of :func:`latentcam.evaluate.evaluate`.
    Layers sit at their position in the encoder (one tick each, labelled with the layer and
    its map size, so two layers of the same size stay apart); the fusion is drawn to the
    right of the last layer as a separate point labelled "fusion".
    """
    names = list(dict.fromkeys(r["layer"] for r in rows if r["layer"] != "fusion"))
    sizes = {
        r["layer"]: "x".join(str(int(v)) for v in r["map_size"])
        for r in rows
        if r["layer"] != "fusion"
    }
    position = {name: i for i, name in enumerate(names)}
    fusion_x = len(names)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(
        1, len(COMPARISON_METRICS), figsize=(3.3 * len(COMPARISON_METRICS), 3.0)
    )
    for ax, (key, label) in zip(axes, COMPARISON_METRICS, strict=True):
        for method in methods:
            pts = []
            fused = None
            for r in rows:
                if r["method"] != method:
                    continue
                if key == "pointing_minus_chance":
                    pg, ch = r.get("pointing_game"), r.get("chance")
                    value = None if pg is None or ch is None else pg - ch
                else:
                    value = r.get(key)
                value = np.nan if value is None else float(value)
                if r["layer"] == "fusion":
                    fused = value
                else:
                    pts.append((position[r["layer"]], value))
            pts.sort()
            line = ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=method)[0]
            if fused is not None:
                ax.plot([fusion_x], [fused], "s", color=line.get_color())
        paper = [r for r in rows if r["layer"] == paper_layer]
        if paper:
            side = position.get(paper_layer, 0)
            ax.axvline(side, color="#888", ls="--", lw=1)
            ax.annotate(
                " paper's layer",
                (side, 0.95),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                color="#555",
                ha="left",
            )
        if key == "pointing_minus_chance":
            ax.axhline(0.0, color="#bbb", lw=0.8)
        fused_too = any(r["layer"] == "fusion" for r in rows)
        ax.set_xticks(
            list(range(len(names))) + ([fusion_x] if fused_too else []),
            [f"{'.'.join(n.split('.')[-2:])}\n{sizes[n]}" for n in names]
            + (["fusion"] if fused_too else []),
            fontsize=7,
        )
        ax.set_xlim(-0.5, (fusion_x if fused_too else len(names) - 1) + 0.5)
        ax.set_xlabel("explained layer (block, map size)")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    fig.suptitle("Localisation by layer and CAM method (mean over active units)", fontsize=10)
    fig.tight_layout()
    return fig


def unit_part_pair(
    encoder: Sequence[Sequence[float | None]],
    decoder: Sequence[Sequence[float | None]],
    regions: Sequence[str],
    units: Sequence[int],
    agreement: float | None,
    encoder_label: str = "encoder side (Grad-CAM)",
) -> Figure:
    """The unit x part share matrices of the encoder and the decoder side, side by side.

    Rows are ``units`` (the matrices' rows in that order), columns ``regions``; cells are
    the share of each unit's map mass in the region (rows sum to 1; blank = no mass).
    """
    enc = np.asarray([[np.nan if v is None else v for v in row] for row in encoder], dtype=float)
    dec = np.asarray([[np.nan if v is None else v for v in row] for row in decoder], dtype=float)
    finite = np.concatenate([enc[np.isfinite(enc)], dec[np.isfinite(dec)]])
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    fig, axes = plt.subplots(
        1,
        2,
        # drawn at the size it is shown (about 10 inches at the report's 110 dpi)
        figsize=(min(10.2, 2 * (0.27 * len(regions) + 0.9) + 1.4), 0.24 * len(units) + 2.4),
        sharey=True,
        layout="constrained",  # room for the rotated labels, the titles and the colour bar
    )
    for ax, mat, title in (
        (axes[0], enc, encoder_label.replace(" (", "\n(", 1)),
        (axes[1], dec, "decoder side\n(|d x / d z_k|)"),
    ):
        im = ax.imshow(mat, cmap="magma", aspect="auto", vmin=0.0, vmax=vmax)
        ax.set_xticks(range(len(regions)), list(regions), rotation=60, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
    axes[0].set_yticks(range(len(units)), [f"unit {u}" for u in units], fontsize=8)
    fig.colorbar(im, ax=list(axes), fraction=0.04, label="share of the unit's map mass")
    score = "n/a" if agreement is None or not np.isfinite(agreement) else f"{agreement:.2f}"
    fig.suptitle(f"Unit x part matrices; matrix agreement (Pearson) {score}", fontsize=10)
    return fig


def captioned_panels(
    rows: Sequence[Sequence[np.ndarray]],
    captions: Sequence[Sequence[str]],
    col_labels: Sequence[str],
    row_labels: Sequence[str],
    title: str = "",
) -> Figure:
    """A grid of uint8 (H, W, 3) panels with a short caption under every panel."""
    nrows, ncols = len(rows), len(col_labels)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(1.9 * ncols + 0.8, 2.25 * nrows + 0.7), squeeze=False
    )
    for r in range(nrows):
        for c in range(ncols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(rows[r]):
                ax.imshow(rows[r][c], interpolation="nearest")
            if c < len(captions[r]) and captions[r][c]:
                ax.set_xlabel(captions[r][c], fontsize=7)
            if r == 0:
                ax.set_title(col_labels[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def direction_ranking(rows: Sequence[Mapping[str, Any]], panel_width: float = 5.2) -> Figure:
    """The most significant latent directions: held-out AUROC of each attribute direction
    beside its best single unit's, and the explained variance of unsupervised directions.

    Args:
        rows: one mapping per direction with ``name``, ``kind`` and its scores (``auroc``,
            ``best_unit``, ``best_unit_auroc`` for attributes; ``explained_variance``).
        panel_width: inches per panel (the labels come on top of it).
    """
    supervised = [r for r in rows if r.get("auroc") is not None]
    supervised.sort(key=lambda r: -float(r["auroc"]))
    unsupervised = [
        r for r in rows if r.get("auroc") is None and r.get("explained_variance") is not None
    ]
    panels = [p for p in (supervised, unsupervised) if p]
    height = max(2.4, 0.24 * max((len(p) for p in panels), default=1) + 1.4)
    fig, axes = plt.subplots(
        1,
        max(1, len(panels)),
        figsize=(panel_width * max(1, len(panels)), height),
        squeeze=False,
    )
    col = 0
    if supervised:
        ax = axes[0, col]
        y = np.arange(len(supervised))
        ax.barh(
            y + 0.2,
            [float(r["auroc"]) for r in supervised],
            0.4,
            color="#2563eb",
            label="direction",
        )
        unit = [
            float(r["best_unit_auroc"]) if r.get("best_unit_auroc") is not None else np.nan
            for r in supervised
        ]
        if not np.all(np.isnan(unit)):
            ax.barh(y - 0.2, unit, 0.4, color="#9ca3af", label="best single unit")
        ax.axvline(0.5, color="black", lw=0.8, ls="--")
        ax.set_yticks(y, [str(r["name"]) for r in supervised], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("held-out AUROC (0.5 = chance)")
        ax.set_title("Directions that predict attributes")
        ax.legend(loc="lower right", fontsize=8)
        col += 1
    if unsupervised:
        ax = axes[0, col]
        y = np.arange(len(unsupervised))
        ax.barh(y, [float(r["explained_variance"]) for r in unsupervised], 0.6, color="#c2410c")
        labels = []
        for r in unsupervised:
            top = r.get("top_correlates") or []
            hint = f" ({top[0][0]}, r={float(top[0][1]):.2f})" if top else ""
            labels.append(f"{r['name']}{hint}")
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("share of variance (PCA) or of the layer's energy (SeFa, Jacobian)")
        ax.set_title("Unsupervised directions")
    fig.tight_layout()
    return fig


def titled_panels(
    rows: Sequence[Sequence[np.ndarray | None]],
    titles: Sequence[Sequence[str]],
    row_labels: Sequence[str] = (),
    lead: int = 0,
    outlines: Mapping[tuple[int, int], np.ndarray] | None = None,
    title: str = "",
    cell_inches: float = 1.2,
) -> Figure:
    """A grid of uint8 (H, W, 3) panels, each with its own short title above it.

    Args:
        rows: R rows of C panels (None leaves a cell empty).
        titles: R rows of C titles ("" for none).
        row_labels: one label left of each row (or none).
        lead: the first ``lead`` columns form a block set apart from the rest by a gap (e.g.
            still maps on the left, a traversal on the right); 0 for none.
        outlines: (row, column) -> bool mask (H, W), drawn as a white contour over that
            panel (e.g. the face part a heatmap should point at).
        title: figure title.
        cell_inches: the side of one panel; the figure is drawn at the size it is shown
            (110 dpi in the report), so keep ``cell_inches * C`` within about 10 inches.
    """
    nrows = len(rows)
    ncols = max(len(r) for r in rows)
    gap = 0.35 if 0 < lead < ncols else 0.0
    label_room = 0.3 if row_labels else 0.0
    widths = [1.0] * ncols
    if gap:
        widths.insert(lead, gap / cell_inches)
    head = (0.24 if title else 0.0) + 0.2  # inches above the grid: the title, row 0's titles
    fig = plt.figure(
        figsize=(cell_inches * ncols + gap + label_room, (cell_inches + 0.26) * nrows + head)
    )
    grid = fig.add_gridspec(
        nrows,
        len(widths),
        width_ratios=widths,
        left=label_room / fig.get_figwidth(),
        right=0.995,
        bottom=0.01,
        top=1.0 - head / fig.get_figheight(),
        wspace=0.06,
        hspace=0.26 / cell_inches,
    )
    for r in range(nrows):
        for c in range(ncols):
            ax = fig.add_subplot(grid[r, c + (1 if gap and c >= lead else 0)])
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            panel = rows[r][c] if c < len(rows[r]) else None
            if panel is not None:
                ax.imshow(panel, interpolation="nearest")
                mask = (outlines or {}).get((r, c))
                if mask is not None and mask.any() and not mask.all():
                    ax.contour(mask.astype(float), levels=[0.5], colors="white", linewidths=0.9)
            if c < len(titles[r]) and titles[r][c]:
                ax.set_title(titles[r][c], fontsize=7.5, pad=2)
            if c == 0 and r < len(row_labels):
                ax.set_ylabel(row_labels[r], fontsize=8)
    if title:
        fig.suptitle(
            title, fontsize=10, x=0.01, y=1.0 - 0.04 / fig.get_figheight(), ha="left", va="top"
        )
    return fig
