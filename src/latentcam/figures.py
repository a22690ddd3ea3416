"""Image grids, heatmap overlays and figure output (NumPy, Pillow and matplotlib only).

Arrays follow one convention: images are float in [0, 1] shaped (N, 3, H, W) or uint8
(N, H, W, 3); heatmaps are float (N, H, W), already upsampled and normalised by the
caller (see :mod:`latentcam.explain.cam`), so that this module only draws.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image

from latentcam.io import atomic_path

matplotlib.use("Agg")  # figures are files; never open a window


def to_uint8_hwc(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Images (N, 3, H, W) float in [0, 1] (or (N, H, W, 3) uint8) -> uint8 (N, H, W, 3)."""
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy()
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype == np.uint8:
        return arr if arr.shape[-1] == 3 else np.ascontiguousarray(arr.transpose(0, 2, 3, 1))
    if arr.shape[1] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(0, 2, 3, 1)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def make_grid(
    images: torch.Tensor | np.ndarray, nrow: int = 8, pad: int = 2, fill: int = 255
) -> np.ndarray:
    """Tile N images into one uint8 (H', W', 3) array, ``nrow`` images per row."""
    tiles = to_uint8_hwc(images)
    n, h, w, _ = tiles.shape
    ncol = min(nrow, n)
    nrows = (n + ncol - 1) // ncol
    grid = np.full((nrows * (h + pad) + pad, ncol * (w + pad) + pad, 3), fill, np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = tiles[i]
    return grid


def colorize(heat: np.ndarray | torch.Tensor, cmap: str = "jet") -> np.ndarray:
    """Heatmaps (..., H, W) in [0, 1] -> uint8 RGB (..., H, W, 3) through a matplotlib colour map."""
    if isinstance(heat, torch.Tensor):
        heat = heat.detach().float().cpu().numpy()
    rgba = matplotlib.colormaps[cmap](np.clip(np.asarray(heat), 0.0, 1.0))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def overlay(
    images: torch.Tensor | np.ndarray,
    heat: torch.Tensor | np.ndarray,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> np.ndarray:
    """Blend heatmaps (N, H, W) in [0, 1], drawn with ``cmap``, over images; returns uint8
    (N, H, W, 3). ``heat`` may also be an RGB layer already: uint8 (N, H, W, 3) (e.g. a
    coloured part mask), blended as it is."""
    base = to_uint8_hwc(images).astype(np.float32)
    layer = heat.detach().cpu().numpy() if isinstance(heat, torch.Tensor) else np.asarray(heat)
    if layer.dtype == np.uint8 and layer.shape[-1] == 3:
        colour = layer.astype(np.float32)
    else:
        colour = colorize(layer, cmap).astype(np.float32)
    if colour.ndim == 3:
        colour = colour[None]
    return (base * (1.0 - alpha) + colour * alpha + 0.5).astype(np.uint8)


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8 (H, W, 3) or (H, W) array as PNG, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image)).save(tmp, format="PNG")
    return path


def figure_png_bytes(
    fig: matplotlib.figure.Figure, dpi: int = 120, max_width: int | None = None
) -> bytes:
    """A matplotlib figure as PNG bytes (tight bounding box); the figure is closed.

    With ``max_width`` (pixels), a figure that comes out wider is drawn again at the dpi
    that makes it fit, so that a page never shrinks it (shrunk text reads badly).
    """
    import io

    import matplotlib.pyplot as plt

    def render(at: float) -> bytes:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=at, bbox_inches="tight")
        return buffer.getvalue()

    try:
        png = render(dpi)
        if max_width is not None:
            width = Image.open(io.BytesIO(png)).size[0]
            if width > max_width:
                png = render(dpi * max_width / width * 0.995)
    finally:
        plt.close(fig)
    return png


def save_figure(fig: matplotlib.figure.Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def panel_grid(
    cells: list[list[np.ndarray]],
    col_labels: list[str] | None = None,
    row_labels: list[str] | None = None,
    title: str = "",
    colorbar: str | None = "jet",
    cell_inches: float = 1.35,
    colorbar_label: str = "relevance",
) -> matplotlib.figure.Figure:
    """A labelled grid of uint8 (H, W, 3) panels, with an optional colour bar.

    Args:
        cells: rows of panels (all rows the same length).
        col_labels / row_labels: titles above columns / left of rows.
        title: figure title.
        colorbar: colour-map name for a 0..1 colour bar at the right (None: no bar), labelled
            ``colorbar_label``. Heat
            panels must have been drawn with that colour map and normalised to [0, 1].
    """
    import matplotlib.pyplot as plt

    nrows, ncols = len(cells), max(len(r) for r in cells)
    extras = (0.6 if colorbar else 0.0) + (0.9 if row_labels else 0.0)
    cell_inches = min(cell_inches, (10.2 - extras) / ncols)  # drawn at the size it is shown
    width = cell_inches * ncols + (0.6 if colorbar else 0.0) + (0.9 if row_labels else 0.0)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(width, cell_inches * nrows + (0.5 if title else 0.2) + (0.3 if col_labels else 0)),
        squeeze=False,
    )
    for r, row in enumerate(cells):
        for c in range(ncols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(row):
                ax.imshow(row[c], interpolation="nearest")
            if r == 0 and col_labels and c < len(col_labels):
                ax.set_title(col_labels[c], fontsize=8)
            if c == 0 and row_labels and r < len(row_labels):
                ax.set_ylabel(row_labels[r], fontsize=8)
    top = 1.0
    if title:
        fig.suptitle(title, fontsize=10)
        top = 1.0 - 0.35 / fig.get_figheight()  # room for the title above the column labels
    fig.tight_layout(pad=0.3, w_pad=0.15, h_pad=0.3, rect=(0.0, 0.0, 1.0, top))
    if colorbar:
        mappable = matplotlib.cm.ScalarMappable(
            norm=matplotlib.colors.Normalize(0, 1), cmap=matplotlib.colormaps[colorbar]
        )
        fig.colorbar(
            mappable, ax=axes.ravel().tolist(), fraction=0.025, pad=0.01, label=colorbar_label
        )
    return fig
