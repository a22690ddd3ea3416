"""Draw from a trained model: prior samples (attribute-controlled for a CVAE) and
reconstructions.

Both return pictures (B, 3, H, W) float in [0, 1] on the model's device: the image
output where the model has one, else (a segmentation VAE without image head) its
predicted mask coloured by :func:`colorize_labels`. Model outputs follow
:mod:`latentcam.models.base`; the CVAE condition is the 40 CelebA attributes in {0, 1}
(Sohn et al. 2015; the paper's CVAE).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

import numpy as np
import torch

from latentcam.data.classes import ATTRIBUTE_IDS, ATTRIBUTE_NAMES, NUM_CLASSES
from latentcam.errors import InputError
from latentcam.figures import colorize
from latentcam.models.base import Decoded, GenerativeModel
from latentcam.models.segvae import predicted_labels


def _device(model: GenerativeModel) -> torch.device:
    return next(model.parameters()).device


def colorize_labels(labels: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Label maps (B, H, W) int -> RGB pictures (B, 3, H, W) float in [0, 1].

    Class ids 0..P-1 map to distinct colours of matplotlib's ``tab20`` (P <= 19); a binary
    mask (P = 2) is drawn black/white.
    """
    ids = labels.detach().long().cpu().numpy()
    if num_classes <= 2:
        rgb = colorize(ids.astype(np.float32), cmap="gray")
    else:
        rgb = colorize(ids.astype(np.float32) / (num_classes - 1), cmap="tab20")
    return torch.from_numpy(rgb).permute(0, 3, 1, 2).float().div(255.0).to(labels.device)


def as_pictures(decoded: Decoded) -> torch.Tensor:
    """The image output (B, 3, H, W) of ``decoded``, else its coloured predicted mask."""
    if decoded.recon is not None:
        return decoded.recon.float().clamp(0.0, 1.0)
    if decoded.seg_logits is None:
        raise InputError("the model returned neither an image nor segmentation logits")
    logits = decoded.seg_logits
    return colorize_labels(predicted_labels(logits), num_classes=max(2, logits.shape[1]))


def attribute_vector(
    attrs: Mapping[str, float] | None,
    base: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """A (40,) float condition: ``base`` (zeros if None, e.g. the training attribute means)
    with the named attributes set.

    Raises:
        InputError: an unknown attribute name (close matches are listed).
    """
    vector = torch.zeros(len(ATTRIBUTE_NAMES))
    if base is not None:
        vector = torch.as_tensor(np.asarray(base, dtype=np.float32)).clone()
        if vector.shape != (len(ATTRIBUTE_NAMES),):
            raise InputError(
                f"base attribute vector must have shape ({len(ATTRIBUTE_NAMES)},), "
                f"got {tuple(vector.shape)}"
            )
    for name, value in (attrs or {}).items():
        if name not in ATTRIBUTE_IDS:
            close = difflib.get_close_matches(name, ATTRIBUTE_NAMES, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise InputError(
                f"unknown attribute '{name}': {hint}the 40 CelebA attributes are "
                f"{', '.join(ATTRIBUTE_NAMES)}"
            )
        vector[ATTRIBUTE_IDS[name]] = float(value)
    return vector


@torch.no_grad()
def sample(
    model: GenerativeModel,
    n: int,
    attrs: Mapping[str, float] | None = None,
    seed: int = 0,
    base: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """Decode ``n`` prior draws z ~ N(0, I), seeded.

    Args:
        model: a trained model (put in eval mode here).
        n: number of samples.
        attrs: CVAE only: attribute values by name (e.g. ``{"Smiling": 1.0}``), set on top
            of ``base``; every sample gets the same condition.
        seed: seed of the draws (same seed, same samples).
        base: CVAE only: (40,) base attribute vector (default zeros; e.g.
            ``LoadedRun.attr_means`` for the average training face).

    Returns:
        (n, 3, H, W) float in [0, 1], on the model's device.

    Raises:
        InputError: ``attrs`` for a model that is not conditional, or an unknown name.
    """
    model.eval()
    device = _device(model)
    cond = None
    if model.cond_dim > 0:
        cond = attribute_vector(attrs, base).to(device)
    elif attrs:
        raise InputError(
            "attribute values (--set) need a conditional model (cvae); this model takes no "
            "attributes"
        )
    generator = torch.Generator(device=device).manual_seed(seed)
    return as_pictures(model.sample(n, cond=cond, generator=generator))


@torch.no_grad()
def reconstruct(
    model: GenerativeModel, images: torch.Tensor, cond: torch.Tensor | None = None
) -> torch.Tensor:
    """Encode and decode ``images`` (B, 3, H, W) float in [0, 1] with z = mu (eval mode).

    Args:
        cond: CVAE only: (B, 40) attributes in {0, 1}.

    Returns:
        (B, 3, H, W) float in [0, 1] on the model's device: the reconstruction, or for a
        segmentation VAE without image head the coloured predicted mask.
    """
    model.eval()
    device = _device(model)
    out = model(images.to(device), cond.to(device) if cond is not None else None)
    return as_pictures(Decoded(out.recon, out.seg_logits))
