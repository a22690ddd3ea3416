"""The capabilities every latentcam tool reads from a model: a protocol, not a kind string.

A model is anything that satisfies :class:`LatentModel`: our own ``VAE``,
``ConditionalVAE`` and ``SegVAE``, and the adapters of :mod:`latentcam.models.adapters`
(diffusers' ``AutoencoderKL``, pythae's models, plain PyTorch code through
:func:`~latentcam.models.adapters.wrap`). The tools ask what a model *can do*:

- ``encode(x, cond) -> (mu, logvar)``: images (B, 3, H, W) float in [0, 1] to the
  posterior mean and log-variance, each flat (B, K); a spatial latent (C, h, w) is
  flattened channel-major, so that every one of its C*h*w cells is a latent unit.
- ``decode(z, cond) -> Decoded``: flat latents (B, K) to the image (B, 3, H, W) in [0, 1]
  and/or segmentation logits (B, P, H, W).
- ``forward(x, cond) -> VAEOutput``: encode, z (= mu in eval mode), decode; no loss.
- ``latent_dim``: K, the flat width of mu; ``latent_shape``: (K,) or (C, h, w), with
  ``prod(latent_shape) == latent_dim``.
- ``cond_dim``: condition features the model needs (0: unconditional, ``cond=None``).
- ``image_size``: the side S of the square images it reads (H = W = S).
- ``outputs``: what ``decode`` returns, a subset of {:data:`IMAGE`, :data:`SEGMENTATION`}.
- ``encoder_layers()``: dotted names (in ``model.named_modules()``) of the encoder's conv
  layers or blocks, shallow (high resolution) to deep; ``explain_layer``: the default one.

Tools ask a built model through the helpers below (:func:`is_conditional`,
:func:`has_seg_output`, :func:`has_image_output`, :func:`is_spatial`); code that holds only a
config (the data module choosing which labels to load, a report laid out before the model is
built) asks :func:`latentcam.models.registry.capabilities_of`, which returns the same
capabilities as a :class:`Capabilities` without building the model. Only the model registry
(which class to build from a config) and the training module's choice of loss read a kind
string; ``tests/test_kind_strings.py`` keeps it so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from latentcam.errors import InputError
from latentcam.models.base import IMAGE, SEGMENTATION, Decoded, VAEOutput

__all__ = [
    "IMAGE",
    "OUTPUT_KINDS",
    "SEGMENTATION",
    "Capabilities",
    "LatentModel",
    "check_model",
    "has_image_output",
    "has_seg_output",
    "is_conditional",
    "is_spatial",
    "seg_class_count",
]

#: Every value ``outputs`` may hold.
OUTPUT_KINDS = (IMAGE, SEGMENTATION)


@runtime_checkable
class LatentModel(Protocol):
    """What every tool reads from a model (see the module docstring for each member).

    ``isinstance(obj, LatentModel)`` checks that every member exists (not their types).
    """

    @property
    def latent_dim(self) -> int:
        """K: the width of mu and z, the number of latent units."""
        ...

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """(K,) for a vector latent, (C, h, w) for a spatial one."""
        ...

    @property
    def cond_dim(self) -> int:
        """Condition features (0 for an unconditional model)."""
        ...

    @property
    def image_size(self) -> int:
        """Side S of the square images the model reads and writes."""
        ...

    @property
    def outputs(self) -> frozenset[str]:
        """What ``decode`` returns: a non-empty subset of :data:`OUTPUT_KINDS`."""
        ...

    @property
    def explain_layer(self) -> str:
        """Dotted name of the default explanation layer (one of ``encoder_layers()``)."""
        ...

    def encoder_layers(self) -> list[str]:
        """Dotted names of the encoder's conv layers or blocks, shallow to deep."""
        ...

    def encode(
        self, x: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, H, W) in [0, 1] -> (mu, logvar), each (B, K)."""
        ...

    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> Decoded:
        """Latents (B, K) -> Decoded(recon (B, 3, H, W) in [0, 1] or None, seg_logits or None)."""
        ...

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> VAEOutput:
        """Encode, take z (mu in eval mode), decode."""
        ...


@dataclass(frozen=True)
class Capabilities:
    """What a model can do, known from its config before it is built (see
    :func:`latentcam.models.registry.capabilities_of`); the helpers below accept it like a
    model.

    Attributes:
        latent_shape: (K,) for a vector latent, (C, h, w) for a spatial one.
        cond_dim: condition features (0: unconditional).
        outputs: what ``decode`` returns, a non-empty subset of :data:`OUTPUT_KINDS`.
        seg_classes: P, the segmentation classes (0 without a segmentation output).
    """

    latent_shape: tuple[int, ...]
    cond_dim: int
    outputs: frozenset[str]
    seg_classes: int

    @property
    def latent_dim(self) -> int:
        """K = prod(latent_shape), the number of latent units."""
        return math.prod(self.latent_shape)


#: Members of :class:`LatentModel`, in the order :func:`check_model` reports them.
MEMBERS = (
    "encode",
    "decode",
    "forward",
    "latent_dim",
    "latent_shape",
    "cond_dim",
    "image_size",
    "outputs",
    "encoder_layers",
    "explain_layer",
)


def check_model(model: object) -> LatentModel:
    """``model`` itself when it satisfies the protocol and its members agree.

    Raises:
        InputError: a member is missing, ``latent_shape`` does not multiply to
            ``latent_dim``, ``outputs`` is empty or holds an unknown kind, or
            ``explain_layer`` is not one of ``encoder_layers()``.
    """
    missing = [name for name in MEMBERS if not hasattr(model, name)]
    if missing:
        raise InputError(
            f"{type(model).__name__} is not a latentcam model: it lacks {', '.join(missing)}; "
            "pass it through latentcam.adapt(...) or latentcam.wrap(...)"
        )
    assert isinstance(model, LatentModel)
    shape = tuple(model.latent_shape)
    if len(shape) not in (1, 3) or math.prod(shape) != model.latent_dim:
        raise InputError(
            f"{type(model).__name__}: latent_shape {shape} must be (K,) or (C, h, w) with "
            f"K = C*h*w = latent_dim ({model.latent_dim})"
        )
    unknown = sorted(set(model.outputs) - set(OUTPUT_KINDS))
    if not model.outputs or unknown:
        raise InputError(
            f"{type(model).__name__}: outputs {sorted(model.outputs)} must be a non-empty "
            f"subset of {', '.join(OUTPUT_KINDS)}"
        )
    layers = model.encoder_layers()
    if model.explain_layer not in layers:
        raise InputError(
            f"{type(model).__name__}: explain_layer '{model.explain_layer}' is not one of its "
            f"encoder layers ({', '.join(layers)})"
        )
    return model


def has_image_output(model: LatentModel | Capabilities) -> bool:
    """True when ``decode`` returns an image (replaces ``kind != "segvae"`` and
    ``seg_recon_image`` tests)."""
    return IMAGE in model.outputs


def has_seg_output(model: LatentModel | Capabilities) -> bool:
    """True when ``decode`` returns segmentation logits (replaces ``kind == "segvae"``)."""
    return SEGMENTATION in model.outputs


def is_conditional(model: LatentModel | Capabilities) -> bool:
    """True when the model needs a condition (replaces ``kind == "cvae"``)."""
    return model.cond_dim > 0


def seg_class_count(model: LatentModel | Capabilities) -> int:
    """P, the segmentation classes ``decode`` predicts: 0 without a segmentation output; a
    model that does not say (an adapter) is read as one binary mask."""
    if not has_seg_output(model):
        return 0
    return int(getattr(model, "seg_classes", 0) or 1)


def is_spatial(model: LatentModel | Capabilities) -> bool:
    """True for a spatial latent (C, h, w) (replaces ``bottleneck == "spatial"``)."""
    return len(model.latent_shape) == 3
