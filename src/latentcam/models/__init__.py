"""Models: VAE, conditional VAE, segmentation VAE (pure nn.Modules), and a U-Net baseline.

``build_model(cfg.model)`` builds any of them; every model honours the contract of
:mod:`latentcam.models.base` and names its default explanation layer.
"""

from __future__ import annotations

from latentcam.models.base import Decoded, GenerativeModel, VAEOutput
from latentcam.models.blocks import LayerShape
from latentcam.models.cvae import ConditionalVAE
from latentcam.models.registry import MODEL_CLASSES, build_model
from latentcam.models.segvae import SegVAE
from latentcam.models.unet import UNet
from latentcam.models.vae import VAE

__all__ = [
    "MODEL_CLASSES",
    "ConditionalVAE",
    "Decoded",
    "GenerativeModel",
    "LayerShape",
    "SegVAE",
    "UNet",
    "VAE",
    "VAEOutput",
    "build_model",
]
