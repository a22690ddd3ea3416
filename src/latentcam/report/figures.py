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
    """Blend heatmaps (N, H, W) in [0, 1] over images; returns uint8 (N, H, W, 3)."""
    base = to_uint8_hwc(images).astype(np.float32)
    colour = colorize(heat, cmap).astype(np.float32)
    if colour.ndim == 3:
        colour = colour[None]
    return (base * (1.0 - alpha) + colour * alpha + 0.5).astype(np.uint8)


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8 (H, W, 3) or (H, W) array as PNG, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image)).save(tmp, format="PNG")
    return path


def save_figure(fig: matplotlib.figure.Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
