"""Build a model from its config: ``build_model(cfg) -> GenerativeModel``."""

from __future__ import annotations

from latentcam.config import MODEL_KINDS, ModelConfig, RunConfig, validate
from latentcam.errors import ConfigError
from latentcam.models.base import GenerativeModel
from latentcam.models.cvae import ConditionalVAE
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
    if cfg.kind not in MODEL_CLASSES:
        raise ConfigError(
            f"config key 'model.kind' is '{cfg.kind}'; choose one of: {', '.join(MODEL_CLASSES)}"
        )
    if isinstance(cfg, ModelConfig):
        validate(RunConfig(model=cfg))
    return MODEL_CLASSES[cfg.kind](cfg)
