"""Build a model from its config: ``build_model(cfg) -> GenerativeModel``; and what it will
be able to do, ``capabilities_of(cfg) -> Capabilities``, without building it.

This is where a model kind (``ModelConfig.kind``) turns into a class and capabilities; the
tools read the capabilities (:mod:`latentcam.models.protocol`), never the kind.
"""

from __future__ import annotations

from latentcam.config import MODEL_KINDS, CVAEConfig, ModelConfig, RunConfig, SegVAEConfig, validate
from latentcam.errors import ConfigError
from latentcam.models.base import IMAGE, SEGMENTATION, GenerativeModel
from latentcam.models.blocks import feature_sizes
from latentcam.models.cvae import ConditionalVAE
from latentcam.models.protocol import Capabilities
from latentcam.models.segvae import SegVAE
from latentcam.models.vae import VAE

#: Model class per ``ModelConfig.kind``.
MODEL_CLASSES: dict[str, type[VAE]] = {
    "vae": VAE,
    "cvae": ConditionalVAE,
    "segvae": SegVAE,
}
assert tuple(MODEL_CLASSES) == MODEL_KINDS


def build_model(cfg: ModelConfig) -> GenerativeModel:
    """A freshly initialised model of kind ``cfg.kind`` (PyTorch's default init).

    Raises:
        ConfigError: an unknown kind or an invalid value (same checks as the config loader).
    """
    model_class = _model_class(cfg)
    if isinstance(cfg, ModelConfig):
        validate(RunConfig(model=cfg))
    return model_class(cfg)


def _model_class(cfg: ModelConfig) -> type[VAE]:
    if cfg.kind not in MODEL_CLASSES:
        raise ConfigError(
            f"config key 'model.kind' is '{cfg.kind}'; choose one of: {', '.join(MODEL_CLASSES)}"
        )
    return MODEL_CLASSES[cfg.kind]


def capabilities_of(cfg: ModelConfig) -> Capabilities:
    """The capabilities of the model ``build_model(cfg)`` builds (equal to the built model's
    ``latent_shape``, ``cond_dim`` and ``outputs``), computed from the config alone.

    Raises:
        ConfigError: an unknown kind.
    """
    _model_class(cfg)  # an unknown kind fails here
    if cfg.bottleneck == "spatial":
        side = feature_sizes(cfg.image_size, cfg.num_layers, cfg.min_feature_size)[-1]
        latent_shape: tuple[int, ...] = (cfg.latent_dim, side, side)
    else:
        latent_shape = (cfg.latent_dim,)
    segmentation = isinstance(cfg, SegVAEConfig)
    # a SegVAE decodes an image on request
    image = not isinstance(cfg, SegVAEConfig) or cfg.seg_recon_image
    outputs = {name for name, on in ((IMAGE, image), (SEGMENTATION, segmentation)) if on}
    return Capabilities(
        latent_shape=latent_shape,
        cond_dim=cfg.cond_dim if isinstance(cfg, CVAEConfig) else 0,
        outputs=frozenset(outputs),
        seg_classes=cfg.seg_classes if isinstance(cfg, SegVAEConfig) else 0,
    )
