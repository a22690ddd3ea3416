"""latentcam: explain generative image models.

Trains convolutional VAEs, conditional VAEs and VAE-shaped segmentation networks on face
images, and explains every latent unit with Grad-CAM (Liu et al., CVPR 2020), latent
traversals and interpretability metrics; segmentation bottlenecks with Seg-Grad-CAM
(Vinogradova et al. 2020). Reproduces and extends "Interpretation of Activation Maps in
Generative Models".
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "adapt", "load_model", "wrap"]


def __getattr__(name: str) -> Any:  # lazy: ``import latentcam`` stays light
    if name == "load_model":
        from latentcam.checkpoint import load_model

        return load_model
    if name in ("adapt", "wrap"):  # other libraries' VAEs as latentcam models
        from latentcam.models import adapters

        return getattr(adapters, name)
    raise AttributeError(name)
