"""Conditional VAE (Sohn et al., NeurIPS 2015), as in the paper's Keras CVAE.

Panday et al., "Interpretation of Activation Maps in Generative Models", section 2.5 and
their ``define_net``: the ``cond_dim`` (40 CelebA) attributes enter the encoder as one
extra input channel, a learned projection ``Linear(cond_dim -> H * W)`` reshaped to
(1, H, W) and concatenated to the image; and they are concatenated to z for the decoder
(vector latent; for a spatial latent they are broadcast as extra channels of the map).
"""

from __future__ import annotations

import torch
from torch import nn

from latentcam.config import CVAEConfig
from latentcam.errors import ConfigError
from latentcam.models.vae import VAE


class ConditionalVAE(VAE):
    """VAE conditioned on attributes: ``forward(x, cond)`` with cond (B, cond_dim) in {0, 1}.

    Adds ``cond_embed`` (Linear(cond_dim, H * W)). Every method that takes ``cond``
    (encode, decode, sample, forward) requires it and raises InputError without it.
    """

    kind = "cvae"

    def __init__(self, cfg: CVAEConfig) -> None:
        if not isinstance(cfg, CVAEConfig):
            raise ConfigError(
                f"a ConditionalVAE is built from a CVAEConfig (model.kind=cvae), got a "
                f"{type(cfg).__name__}"
            )
        super().__init__(cfg, cond_dim=cfg.cond_dim)
        self.cond_embed = nn.Linear(cfg.cond_dim, cfg.image_size * cfg.image_size)

    def _encoder_input(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        assert cond is not None  # checked by the public methods
        B, _, H, W = x.shape
        cond_map = self.cond_embed(cond).view(B, 1, H, W)  # (B, 1, H, W)
        return torch.cat([x, cond_map], dim=1)  # (B, 4, H, W)
