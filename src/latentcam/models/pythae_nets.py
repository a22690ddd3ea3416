"""latentcam's conv encoder and decoder as pythae networks: pythae's objectives on our VAE.

pythae (Chadebec et al., NeurIPS 2022) trains many VAE objectives (beta-VAE, Higgins et al.
ICLR 2017; beta-TC-VAE, Chen et al. NeurIPS 2018; ...) around any ``BaseEncoder`` /
``BaseDecoder``; its default networks are MLPs. :func:`pythae_model` builds a pythae model
whose networks are the parts of a latentcam :class:`~latentcam.models.vae.VAE` built from a
:class:`~latentcam.config.ModelConfig`, so that an objective is compared on the very
architecture our own training uses:

- ``encoder`` = :class:`PythaeEncoder`: ``body`` (our ``Encoder``: conv blocks
  ``body.blocks.{i}``) then ``head`` (our ``LatentHead``) -> ``embedding`` = mu and
  ``log_covariance`` = logvar, each (B, K);
- ``decoder`` = :class:`PythaeDecoder`: ``body`` (our ``Decoder``) then ``image_head`` (the
  3x3 conv to RGB) and a sigmoid -> ``reconstruction`` (B, 3, S, S) in [0, 1].

:func:`pythae_adapter` is the factory of ``latentcam import --from python``: the same model
adapted with its conv blocks as the explanation layers (``module.encoder.body.blocks.{i}``,
the outputs that latentcam's own VAE explains as ``encoder.blocks.{i}``). pythae's own
``model.save`` pickles such networks (``encoder.pkl``), which latentcam does not read; the
weights come from its ``model.pt`` instead::

    latentcam import --from python latentcam.models.pythae_nets:pythae_adapter \\
        --kwargs '{"objective": "betatc", "model": {"latent_dim": 16}}' \\
        --weights FOLDER/model.pt --out runs/betatc --data synth

pythae is optional (``latentcam[pythae]``): this module imports it when it is imported.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from pythae.models import (
    VAE,
    BaseAE,
    BetaTCVAE,
    BetaTCVAEConfig,
    BetaVAE,
    BetaVAEConfig,
    VAEConfig,
)
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder

from latentcam.config import MODEL_CONFIGS, ModelConfig
from latentcam.config import model_config as config_of_kind
from latentcam.errors import ConfigError, InputError
from latentcam.models.adapters import PythaeVAE
from latentcam.models.protocol import has_seg_output, is_conditional
from latentcam.models.registry import capabilities_of
from latentcam.models.vae import VAE as LatentcamVAE

#: objective name -> (pythae model class, its config class). The objectives' weights are
#: config fields: ``beta`` (betavae: the KL weight; betatc: the total-correlation weight),
#: ``alpha`` and ``gamma`` (betatc: index-code mutual information and dimension-wise KL).
OBJECTIVES: dict[str, tuple[type[BaseAE], type[VAEConfig]]] = {
    "vae": (VAE, VAEConfig),
    "betavae": (BetaVAE, BetaVAEConfig),
    "betatc": (BetaTCVAE, BetaTCVAEConfig),
}


class PythaeEncoder(BaseEncoder):
    """latentcam's encoder and latent head as a pythae encoder.

    ``forward(x)``: images (B, 3, S, S) float in [0, 1] -> ModelOutput with ``embedding``
    (mu) and ``log_covariance`` (logvar, the log of the diagonal variance), each (B, K).
    """

    def __init__(self, vae: LatentcamVAE) -> None:
        super().__init__()
        self.body = vae.encoder  # blocks.{i}: the explained conv maps
        self.head = vae.head

    def forward(self, x: torch.Tensor) -> ModelOutput:
        mu, logvar = self.head(self.body(x))  # (B, K) each
        return ModelOutput(embedding=mu, log_covariance=logvar)


class PythaeDecoder(BaseDecoder):
    """latentcam's decoder and image head as a pythae decoder.

    ``forward(z)``: latents (B, K) -> ModelOutput with ``reconstruction`` (B, 3, S, S) in
    [0, 1] (a sigmoid, as latentcam's VAE decodes).
    """

    def __init__(self, vae: LatentcamVAE) -> None:
        super().__init__()
        assert vae.image_head is not None, "a latentcam VAE has an image head"
        self.body = vae.decoder
        self.image_head = vae.image_head

    def forward(self, z: torch.Tensor) -> ModelOutput:
        features = self.body(z)  # (B, C_0, S, S)
        return ModelOutput(reconstruction=torch.sigmoid(self.image_head(features)))


def model_config(model: dict[str, Any] | None = None) -> ModelConfig:
    """A ModelConfig of kind "vae" from field overrides (the defaults are ModelConfig's).

    Raises:
        InputError: a field ModelConfig does not have (named), or another kind.
    """
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    overrides = dict(model or {})
    every_kind = {f.name for cls in MODEL_CONFIGS for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - every_kind)
    if unknown:
        raise InputError(
            f"unknown model field '{unknown[0]}'; latentcam's VAE config has: {', '.join(sorted(fields))}"
        )
    try:
        cfg = config_of_kind(**overrides)
    except ConfigError as err:
        raise InputError(f"{err}; pythae networks mirror the plain VAE") from None
    caps = capabilities_of(cfg)
    if is_conditional(caps) or has_seg_output(caps) or len(caps.latent_shape) != 1:
        raise InputError(
            "pythae networks mirror the plain VAE (no condition, an image out, a vector latent); "
            "drop the model fields that make it conditional, segmenting or spatial"
        )
    return cfg


def pythae_model(
    objective: str = "betatc",
    model: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> BaseAE:
    """A pythae model of ``objective`` on latentcam's VAE architecture, random weights.

    Args:
        objective: a key of :data:`OBJECTIVES` (vae, betavae, betatc).
        model: ModelConfig overrides (image_size, latent_dim, num_layers, base_channels,
            max_channels, head, ...); the latent is a vector (K,).
        params: fields of the objective's pythae config (``beta``, ``alpha``, ``gamma``,
            ``use_mss``, ``reconstruction_loss``: "mse" is pythae's 0.5 * summed squared
            error, "bce" the summed cross-entropy).

    Raises:
        InputError: an unknown objective, config field or a spatial bottleneck.
    """
    if objective not in OBJECTIVES:
        raise InputError(f"unknown objective '{objective}'; choose one of: {', '.join(OBJECTIVES)}")
    cfg = model_config(model)
    if cfg.bottleneck != "vector":
        raise InputError("pythae's objectives take a vector latent (model.bottleneck=vector)")
    model_cls, config_cls = OBJECTIVES[objective]
    allowed = {f.name for f in dataclasses.fields(config_cls)} - {"input_dim", "latent_dim"}
    unknown = sorted(set(params or {}) - allowed)
    if unknown:
        raise InputError(
            f"{config_cls.__name__} has no field '{unknown[0]}'; it has: {', '.join(sorted(allowed))}"
        )
    config = config_cls(
        input_dim=(3, cfg.image_size, cfg.image_size), latent_dim=cfg.latent_dim, **(params or {})
    )
    vae = LatentcamVAE(cfg)
    return model_cls(config, encoder=PythaeEncoder(vae), decoder=PythaeDecoder(vae))


def pythae_adapter(
    objective: str = "betatc",
    model: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> PythaeVAE:
    """:func:`pythae_model` adapted for latentcam, explained at its conv blocks.

    The factory of ``latentcam import --from python latentcam.models.pythae_nets:pythae_adapter``
    (arguments as :func:`pythae_model`, given with ``--kwargs``). Encoder layers:
    ``module.encoder.body.blocks.{i}``, shallow to deep; the last is the default.
    """
    built = pythae_model(objective, model, params)
    blocks = len(built.encoder.body.blocks)
    return PythaeVAE(built, layers=[f"encoder.body.blocks.{i}" for i in range(blocks)])
