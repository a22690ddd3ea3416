"""Metric plots for the report: unit ranking, unit x part table, sanity curve, layer comparison.

Each function takes plain numbers (the dict written by :func:`latentcam.evaluate.evaluate`)
and returns a matplotlib Figure; :func:`latentcam.report.figures.save_figure` writes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def unit_ranking(kl: Sequence[float], effect: Sequence[float], top: int = 30) -> Figure:
    """Bars of KL (nats) and effect size for the ``top`` units by KL, in KL order."""
    kl_a = np.asarray(kl, dtype=float)
    eff = np.asarray(effect, dtype=float)
    order = np.argsort(-kl_a)[:top]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(order) + 2), 3.2))
    x = np.arange(len(order))
    ax.bar(x - 0.2, kl_a[order], 0.4, label="KL (nats)", color="#c2410c")
    ax2 = ax.twinx()
    ax2.bar(x + 0.2, eff[order], 0.4, label="effect size", color="#2563eb")
    ax.set_xticks(x, [str(u) for u in order], rotation=90, fontsize=8)
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
    fig, ax = plt.subplots(figsize=(0.55 * len(regions) + 2.5, 0.32 * len(units) + 1.6))
    im = ax.imshow(lift, cmap="magma", aspect="auto")
    ax.set_xticks(range(len(regions)), list(regions), rotation=45, ha="right")
    ax.set_yticks(range(len(units)), [f"unit {u}" for u in units])
    ax.set_title("Where each unit acts: effect share / region area (lift)")
    fig.colorbar(im, ax=ax, fraction=0.04, label="lift (1 = uniform)")
    fig.tight_layout()
    return fig


def sanity_curve(curve: Sequence[Mapping[str, Any]], threshold: float = 0.5) -> Figure:
    """Rank correlation with the trained maps as encoder layers are randomised top-down."""
    names = ["trained"] + [str(c["layer"]) for c in curve]
    rho = [1.0] + [float(c["spearman"]) if c["spearman"] is not None else np.nan for c in curve]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(names) + 2), 3.0))
    ax.plot(range(len(names)), rho, "o-", color="#c2410c")
    ax.axhline(threshold, color="#888", ls="--", lw=1, label=f"pass below {threshold}")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(-0.2, 1.05)
    ax.set_ylabel("Spearman vs. trained maps")
    ax.set_title("Sanity check (Adebayo et al. 2018): cascading randomisation")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def layer_comparison(layers: Mapping[str, Mapping[str, Any]]) -> Figure:
    """Grouped bars of the mean localisation scores per explained layer."""
    keys = [
        "energy_in_part",
        "pointing_game",
        "chance",
        "spearman_cam_effect",
        "top10_iou_cam_effect",
    ]
    names = list(layers)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(names) + 2), 3.2))
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        vals = [layers[n]["mean_over_active"].get(key, np.nan) for n in names]
        vals = [np.nan if v is None else v for v in vals]
        ax.bar(np.arange(len(names)) + (i - len(keys) / 2 + 0.5) * width, vals, width, label=key)
    labels = [f"{n}\n{'x'.join(map(str, layers[n].get('map_size', [])))}" for n in names]
    ax.set_xticks(range(len(names)), labels, fontsize=8)
    ax.set_ylabel("score (mean over active units)")
    ax.set_title("Localisation by explained layer")
    ax.legend(fontsize=7, ncol=3)
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
