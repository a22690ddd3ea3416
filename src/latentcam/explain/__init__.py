"""Explanations: Grad-CAM for every latent unit at once (Liu et al. 2020), Seg-Grad-CAM
(Vinogradova et al. 2020), traversals and metrics.

The CAM engine lives in :mod:`latentcam.explain.cam`, its targets in
:mod:`latentcam.explain.targets`, and its hooks in :mod:`latentcam.explain.hooks`.
"""

from __future__ import annotations

from latentcam.explain.cam import (
    METHODS,
    POST_OPS,
    CamResult,
    affine_jacobian,
    compute_cams,
    latent_cams,
    mean_map,
    normalise,
    upsample,
)
from latentcam.explain.targets import (
    CustomTarget,
    LatentSum,
    LatentUnit,
    SegClass,
    Target,
)

__all__ = [
    "METHODS",
    "POST_OPS",
    "CamResult",
    "CustomTarget",
    "LatentSum",
    "LatentUnit",
    "SegClass",
    "Target",
    "affine_jacobian",
    "compute_cams",
    "latent_cams",
    "mean_map",
    "normalise",
    "upsample",
]
