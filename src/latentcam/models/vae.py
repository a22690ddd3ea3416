"""Convolutional VAE (Kingma & Welling, ICLR 2014), shaped like the paper's Keras model.

Panday et al., "Interpretation of Activation Maps in Generative Models": an encoder of
``num_layers`` conv blocks (strided 3x3 convs, LeakyReLU), a flatten and one dense layer
each for ``mu`` and ``logvar``; a decoder that mirrors it (dense layer to the smallest map,
transposed convs up, sigmoid output). See :mod:`latentcam.models.blocks` for the blocks and
the naming contract (``encoder.blocks.{i}``).

This file also holds what every model here shares (the condition check, the
reparameterisation); :class:`~latentcam.models.cvae.ConditionalVAE` and
:class:`~latentcam.models.segvae.SegVAE` only add their inputs and outputs. ``sample`` and
the image checks are shared with the adapters in :mod:`latentcam.models.base`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from latentcam.config import ModelConfig
from latentcam.errors import ConfigError, InputError
from latentcam.models.base import Decoded, GenerativeModel, VAEOutput, check_images
from latentcam.models.blocks import DECODERS, Decoder, Encoder, LatentHead, LayerShape


class VAE(GenerativeModel):
    """Convolutional VAE: ``forward(x) -> VAEOutput(recon, mu, logvar, z)``.

    Args:
        cfg: the model config (``kind`` is not checked here; see ``build_model``).
        cond_dim: condition features (0 = unconditional; ConditionalVAE passes cfg.cond_dim).

    Attributes:
        config: the ModelConfig it was built from.
        latent_dim: K', the width of mu (K; K * s * s for a spatial bottleneck).
        latent_shape: (K,) for a vector latent, (K, s, s) for a spatial one.
        explain_layer: ``"encoder.blocks.{L-1}"``, the last encoder conv block.
    """

    kind = "vae"

    def __init__(self, cfg: ModelConfig, *, cond_dim: int = 0) -> None:
        super().__init__()
        if cfg.num_layers < 1 or cfg.latent_dim < 1:
            raise ConfigError(
                f"model.num_layers ({cfg.num_layers}) and model.latent_dim ({cfg.latent_dim}) "
                "must be positive"
            )
        style = cfg.decoder
        if style not in DECODERS:
            raise ConfigError(
                f"config key 'model.decoder' is '{style}'; choose one of: {', '.join(DECODERS)}"
            )
        self.config = cfg
        self.cond_dim = cond_dim
        self.image_size = cfg.image_size
        self.encoder = Encoder(
            in_channels=3 + (1 if cond_dim else 0),
            image_size=cfg.image_size,
            num_layers=cfg.num_layers,
            base_channels=cfg.base_channels,
            max_channels=cfg.max_channels,
            min_feature_size=cfg.min_feature_size,
            downsample=cfg.downsample,
            norm=cfg.norm,
            activation=cfg.activation,
        )
        side = self.encoder.out_sizes[-1]
        self.head = LatentHead(
            channels=self.encoder.widths[-1],
            size=side,
            latent_dim=cfg.latent_dim,
            head=cfg.head,
            hidden=cfg.head_hidden,
            bottleneck=cfg.bottleneck,
            activation=cfg.activation,
            logvar_init=cfg.logvar_init,
        )
        spatial = cfg.bottleneck == "spatial"
        self.latent_shape = (cfg.latent_dim, side, side) if spatial else (cfg.latent_dim,)
        self.latent_dim = math.prod(self.latent_shape)
        self.decoder = Decoder(
            latent_dim=cfg.latent_dim,
            extra_dim=cond_dim,
            widths=self.encoder.widths,
            out_sizes=self.encoder.out_sizes,
            image_size=cfg.image_size,
            bottleneck=cfg.bottleneck,
            norm=cfg.norm,
            activation=cfg.activation,
            style=style,
            coords=cfg.coord_channels,
        )
        self._build_output_heads(cfg, self.decoder.out_channels)
        self.explain_layer = f"encoder.blocks.{cfg.num_layers - 1}"

    # -- pieces subclasses change -------------------------------------------------------

    def _build_output_heads(self, cfg: ModelConfig, channels: int) -> None:
        """The image head: 3x3 conv to RGB; ``decode`` applies the sigmoid."""
        self.image_head: nn.Module | None = nn.Conv2d(channels, 3, 3, padding=1)

    def _outputs(self, features: torch.Tensor) -> Decoded:
        """Decoder features (B, C_0, H, W) -> Decoded(recon (B, 3, H, W) in [0, 1])."""
        assert self.image_head is not None
        return Decoded(recon=torch.sigmoid(self.image_head(features)))

    def _encoder_input(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return x

    # -- the contract -----------------------------------------------------------------------

    def encoder_layers(self) -> list[str]:
        """Names of all encoder blocks, shallow (high resolution) to deep."""
        return [shape.name for shape in self.encoder_shapes()]

    def encoder_shapes(self) -> list[LayerShape]:
        """(name, channels, side) of each encoder block's output map, shallow to deep."""
        return self.encoder.layer_shapes()

    def encode(
        self, x: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters of images x (B, 3, H, W) float in [0, 1].

        Returns:
            (mu, logvar), each (B, K') float.
        """
        self._check_images(x)
        cond = self._check_cond(cond, x.shape[0], x.dtype)
        return self._encode(x, cond)

    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> Decoded:
        """Decode latents z (B, K') (and the condition (B, cond_dim) for a CVAE)."""
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise InputError(
                f"latents must be a (B, {self.latent_dim}) tensor for this model, got {shape}"
            )
        cond = self._check_cond(cond, z.shape[0], z.dtype)
        return self._decode(z, cond)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> VAEOutput:
        """Encode, sample (training) or take the mean (eval), decode.

        Args:
            x: images (B, 3, H, W), float in [0, 1], H = W = config.image_size.
            cond: CVAE only: attributes (B, cond_dim) in {0, 1}.

        Returns:
            VAEOutput with z = mu + exp(logvar / 2) * eps in training mode and z = mu in
            eval mode (deterministic explanations).
        """
        self._check_images(x)
        cond = self._check_cond(cond, x.shape[0], x.dtype)
        mu, logvar = self._encode(x, cond)
        if self.training:
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # reparameterisation
        else:
            z = mu
        decoded = self._decode(z, cond)
        return VAEOutput(decoded.recon, mu, logvar, z, decoded.seg_logits)

    # -- internals ----------------------------------------------------------------------

    def _encode(
        self, x: torch.Tensor, cond: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(self._encoder_input(x, cond))  # (B, C_L, s, s)
        return self.head(features)

    def _decode(self, z: torch.Tensor, cond: torch.Tensor | None) -> Decoded:
        return self._outputs(self.decoder(z, cond))  # features (B, C_0, H, W)

    def _check_images(self, x: torch.Tensor) -> None:
        check_images(x, self.image_size, "resize, or train a model at {size}")

    def _check_cond(
        self, cond: torch.Tensor | None, batch: int, dtype: torch.dtype
    ) -> torch.Tensor | None:
        """None for unconditional models; the condition as (B, cond_dim) of ``dtype`` else."""
        if self.cond_dim == 0:
            if cond is not None:
                raise InputError(
                    f"this {self.kind} model is unconditional and takes no cond; pass cond=None "
                    "(or train a cvae to condition on attributes)"
                )
            return None
        D = self.cond_dim
        if cond is None:
            raise InputError(f"this CVAE needs cond (B, {D}) attribute values in {{0,1}}")
        if not isinstance(cond, torch.Tensor) or tuple(cond.shape) != (batch, D):
            shape = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise InputError(
                f"this CVAE needs cond of shape (B, {D}) = ({batch}, {D}) with attribute "
                f"values in {{0,1}}, got {shape}"
            )
        return cond.to(dtype)
