"""Models: VAE, conditional VAE, segmentation VAE (pure nn.Modules), and a U-Net baseline.

``build_model(cfg.model)`` builds any of them; every model honours the contract of
:mod:`latentcam.models.base` and names its default explanation layer. The capabilities the
tools read are the protocol of :mod:`latentcam.models.protocol`; :func:`adapt` and
:func:`wrap` (:mod:`latentcam.models.adapters`) make other libraries' VAEs meet it.
"""

from __future__ import annotations

from latentcam.models.adapters import Adapter, adapt, wrap
from latentcam.models.base import Decoded, GenerativeModel, VAEOutput
from latentcam.models.blocks import LayerShape
from latentcam.models.cvae import ConditionalVAE
from latentcam.models.protocol import (
    IMAGE,
    SEGMENTATION,
    Capabilities,
    LatentModel,
    check_model,
    has_image_output,
    has_seg_output,
    is_conditional,
    is_spatial,
)
from latentcam.models.registry import MODEL_CLASSES, build_model, capabilities_of
from latentcam.models.segvae import SegVAE
from latentcam.models.unet import UNet
from latentcam.models.vae import VAE

__all__ = [
    "IMAGE",
    "MODEL_CLASSES",
    "SEGMENTATION",
    "Adapter",
    "Capabilities",
    "ConditionalVAE",
    "Decoded",
    "GenerativeModel",
    "LatentModel",
    "LayerShape",
    "SegVAE",
    "UNet",
    "VAE",
    "VAEOutput",
    "adapt",
    "build_model",
    "capabilities_of",
    "check_model",
    "has_image_output",
    "has_seg_output",
    "is_conditional",
    "is_spatial",
    "wrap",
]
