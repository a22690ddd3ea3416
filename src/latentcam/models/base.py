"""The model contract every tool in latentcam relies on.

A model is a pure ``nn.Module`` (no loss, no optimiser, no data code):

- ``forward(x, cond=None) -> VAEOutput``
- ``encode(x, cond=None) -> (mu, logvar)``
- ``decode(z, cond=None) -> Decoded`` (image and/or segmentation logits)
- ``sample(n, cond=None, generator=None) -> tensor``
- ``explain_layer``: the name of its default explanation layer (the last encoder conv),
  so that nobody has to guess a layer name.

The shape contract follows PyTorch-VAE (Subramanian 2020) with named results instead of
lists read back by position.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class VAEOutput(NamedTuple):
    """What every model's ``forward`` returns.

    Attributes:
        recon: reconstructed image (B, 3, H, W), float in [0, 1]; None for a
            segmentation model built without an image head.
        mu: posterior mean (B, K).
        logvar: posterior log-variance (B, K).
        z: the latent code that was decoded (B, K): a sample in training mode, ``mu`` in
            eval mode (so that explanations are deterministic).
        seg_logits: segmentation logits (B, P, H, W) (P = 1 for the binary mask), or None.
    """

    recon: torch.Tensor | None
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    seg_logits: torch.Tensor | None = None


class Decoded(NamedTuple):
    """What ``decode`` returns: the image, the segmentation logits, or both.

    Attributes:
        recon: image (B, 3, H, W), float in [0, 1], or None.
        seg_logits: logits (B, P, H, W), or None.
    """

    recon: torch.Tensor | None
    seg_logits: torch.Tensor | None = None


class GenerativeModel(nn.Module):
    """Base class: holds the config and states the contract. Subclasses implement it."""

    #: Dotted module name of the default explanation layer (last encoder conv block).
    explain_layer: str = ""

    #: Number of condition features the model needs (0 for unconditional models).
    cond_dim: int = 0

    #: Width of mu and z (K; K * s * s for a spatial latent): the number of latent units.
    latent_dim: int = 0

    def encoder_layers(self) -> list[str]:
        """Names of the encoder's conv blocks, shallow (high resolution) to deep."""
        raise NotImplementedError

    def encode(
        self, x: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters ``(mu, logvar)``, each (B, K), of images x (B, 3, H, W)."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> Decoded:
        """Decode latents z (B, K) (with the condition (B, cond_dim) for a CVAE)."""
        raise NotImplementedError

    def sample(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Decoded:
        """Decode n draws from the prior N(0, I)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> VAEOutput:
        raise NotImplementedError
