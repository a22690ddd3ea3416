"""The model contract every tool in latentcam relies on.

A model is a pure ``nn.Module`` (no loss, no optimiser, no data code):

- ``forward(x, cond=None) -> VAEOutput``
- ``encode(x, cond=None) -> (mu, logvar)``
- ``decode(z, cond=None) -> Decoded`` (image and/or segmentation logits)
- ``sample(n, cond=None, generator=None) -> Decoded`` (shared here: decode prior draws)
- ``explain_layer``: the name of its default explanation layer (the last encoder conv),
  so that nobody has to guess a layer name.
- ``latent_dim``, ``latent_shape``, ``cond_dim``, ``image_size``, ``outputs`` and
  ``encoder_layers()``: the capabilities the tools read, stated as a protocol in
  :mod:`latentcam.models.protocol` (which other libraries' models meet through
  :mod:`latentcam.models.adapters`).

The shape contract follows PyTorch-VAE (Subramanian 2020) with named results instead of
lists read back by position.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import nn

from latentcam.errors import InputError

#: ``outputs`` member: ``decode`` returns an image (``Decoded.recon``), float in [0, 1].
IMAGE = "image"
#: ``outputs`` member: ``decode`` returns segmentation logits (``Decoded.seg_logits``).
SEGMENTATION = "seg"


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


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode inside the block; restore each submodule's mode on exit."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def _layer_choices(model: nn.Module) -> list[str]:
    """Names of the conv layers and numbered blocks (``...blocks.N``) of a model."""
    block = re.compile(r"(^|\.)blocks\.\d+$")
    return [
        name
        for name, module in model.named_modules()
        if name and (isinstance(module, nn.modules.conv._ConvNd) or block.search(name))
    ]


def resolve_layer(model: nn.Module, layer: str | nn.Module | None = None) -> tuple[str, nn.Module]:
    """The explained layer as ``(dotted name, module)``.

    Args:
        model: the model.
        layer: a dotted module name (``"encoder.blocks.3"``), the module itself, or None
            for the model's default ``model.explain_layer`` (its last encoder conv block).

    Raises:
        InputError: an unknown name (the message lists close matches and the conv/block
            layers that exist), a module that is not part of the model, or no default.
    """
    modules = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        for name, module in modules.items():
            if module is layer:
                return name, module
        raise InputError(
            f"the layer module {type(layer).__name__} is not part of the model "
            f"{type(model).__name__}; pass one of its layers or a layer name"
        )
    name = layer if layer is not None else getattr(model, "explain_layer", "")
    choices = _layer_choices(model)
    if not name:
        raise InputError(
            f"{type(model).__name__} names no default explanation layer (explain_layer); "
            f"pass layer=NAME, one of: {', '.join(choices) or '(no conv layers found)'}"
        )
    if name not in modules or name == "":
        close = difflib.get_close_matches(name, list(modules), n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise InputError(
            f"unknown layer '{name}' in {type(model).__name__}.{hint} Conv layers and blocks: "
            f"{', '.join(choices) or '(none found)'}"
        )
    return name, modules[name]


def posterior_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) of each unit of a diagonal Gaussian posterior.

    Per unit: 0.5 * (mu^2 + exp(logvar) - 1 - logvar) (Kingma & Welling, ICLR 2014,
    appendix B), in nats. The prior term of the training loss and the activity of a unit.

    Args:
        mu: (B, K) posterior means.
        logvar: (B, K) posterior log-variances.

    Returns:
        float32 (B, K).
    """
    if mu.shape != logvar.shape or mu.dim() != 2:
        raise InputError(
            f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must both be (B, K)"
        )
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_per_unit(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL of each latent unit, averaged over the batch: (K,) float32, nats.

    A unit whose mean KL stays near 0 is inactive (posterior collapse; Burda et al. 2016
    count "active units" by a threshold on it).
    """
    return posterior_kl(mu, logvar).mean(0)


def check_images(x: torch.Tensor, image_size: int, advice: str) -> None:
    """Shape/dtype checks of images (B, 3, S, S) float (cheap, no data-dependent control flow).

    Args:
        x: the images given.
        image_size: S, the side the model reads.
        advice: what to do when the size differs (ends the message); ``{size}`` in it
            becomes max(H, W), e.g. "resize, or train a model at {size}".

    Raises:
        InputError: not a tensor, not 4-D, not 3 channels, not S x S, not float.
    """
    if not isinstance(x, torch.Tensor):
        raise InputError(f"images must be a torch.Tensor (B, 3, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise InputError(
            f"images must be a 4-D tensor (B, 3, H, W), got {x.dim()}-D of shape "
            f"{tuple(x.shape)}; add a batch dimension with x.unsqueeze(0) for one image"
        )
    if x.shape[1] != 3:
        raise InputError(
            f"images must have 3 (RGB) channels in dim 1, got {x.shape[1]} "
            f"(shape {tuple(x.shape)}); convert to RGB, channels first"
        )
    S = image_size
    H, W = x.shape[2], x.shape[3]
    if H != S or W != S:
        advice = advice.format(size=max(H, W))
        raise InputError(f"model was built for {S}x{S} images, got {H}x{W}; {advice}")
    if not x.is_floating_point():
        raise InputError(
            f"images must be float in [0, 1], got dtype {x.dtype}; convert with x.float() / 255"
        )


class GenerativeModel(nn.Module):
    """Base class: holds the config and states the contract. Subclasses implement it."""

    #: Dotted module name of the default explanation layer (last encoder conv block).
    explain_layer: str = ""

    #: Number of condition features the model needs (0 for unconditional models).
    cond_dim: int = 0

    #: Width of mu and z (K; K * s * s for a spatial latent): the number of latent units.
    latent_dim: int = 0

    #: (K,) for a vector latent, (K, s, s) for a spatial one; multiplies to ``latent_dim``.
    latent_shape: tuple[int, ...] = ()

    #: Side S of the square images the model reads and writes (H = W = S).
    image_size: int = 0

    @property
    def outputs(self) -> frozenset[str]:
        """What ``decode`` returns, a subset of {:data:`IMAGE`, :data:`SEGMENTATION`}: the
        image unless a subclass says otherwise (see :mod:`latentcam.models.protocol`)."""
        return frozenset({IMAGE})

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
        """Decode n draws z ~ N(0, I) (B = n).

        Args:
            n: number of samples (>= 1).
            cond: conditional models only: (n, cond_dim) or one (cond_dim,) row used for
                all n.
            generator: the source of the draws (seeded for reproducible samples); on the
                CPU or on the model's device.
        """
        if n < 1:
            raise InputError(f"number of samples must be >= 1, got {n}")
        param = next(self.parameters())
        if cond is not None and cond.dim() == 1:
            cond = cond.unsqueeze(0).expand(n, -1)
        draw_device = generator.device if generator is not None else param.device
        z = torch.randn(n, self.latent_dim, generator=generator, device=draw_device)
        return self.decode(z.to(device=param.device, dtype=param.dtype), cond)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> VAEOutput:
        raise NotImplementedError
