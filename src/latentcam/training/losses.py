"""Training losses: pure functions on tensors (no state, no model code).

Conventions:

- Image reconstruction terms and the KL term (``reduction="sum"``) are SUMMED over a
  sample's pixels (or latent units) and AVERAGED over the batch, so ``recon + beta * kl``
  is the negative ELBO per image (Kingma & Welling, ICLR 2014) and does not change with
  the batch size.
- Segmentation terms follow the paper's code (``segmentation_models``' ``bce_jaccard_loss``):
  the cross-entropy is the mean over pixels, and the soft Jaccard / Dice scores pool their
  sums over the whole batch (``per_image=False``), smoothed by ``smooth = 1e-5``, averaged
  over classes for multi-class outputs. Losses lie in [0, 1] for Jaccard and Dice.
- Binary segmentation takes logits (B, 1, H, W) and a target (B, H, W) or (B, 1, H, W) in
  {0, 1}; multi-class takes logits (B, P, H, W) and class ids (B, H, W) (integer, in
  [0, P)) or a one-hot / soft target (B, P, H, W). Sums run in float32 even under
  mixed precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from latentcam.errors import ConfigError, InputError
from latentcam.models.base import posterior_kl

#: Names accepted by :func:`seg_loss` (TrainConfig.seg_loss).
SEG_LOSSES = ("bce_jaccard", "jaccard", "dice", "ce", "ce_dice", "lovasz", "ce_lovasz")

#: Smoothing of the soft Jaccard and Dice ratios (segmentation_models' default).
SMOOTH = 1e-5


# -- reconstruction ----------------------------------------------------------------------


def _check_same_shape(recon: torch.Tensor, x: torch.Tensor, what: str) -> None:
    if recon.shape != x.shape:
        raise InputError(
            f"{what}: reconstruction {tuple(recon.shape)} and target {tuple(x.shape)} "
            "must have the same shape"
        )


def recon_mse(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared error summed over pixels and channels, averaged over the batch.

    The Gaussian log-likelihood term of the ELBO up to constants (Kingma & Welling 2014);
    the paper's Keras code uses the same sum (``mse * height * width``, per channel mean).

    Args:
        recon: (B, C, H, W) reconstruction, float.
        x: (B, C, H, W) target images, float in [0, 1].

    Returns:
        Scalar float32 tensor.
    """
    _check_same_shape(recon, x, "recon_mse")
    return (recon.float() - x.float()).pow(2).flatten(1).sum(1).mean()


def recon_bce(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy summed over pixels and channels, averaged over the batch.

    The Bernoulli log-likelihood term of the ELBO (Kingma & Welling 2014, appendix C).
    Log terms are clamped at -100 as in ``torch.nn.functional.binary_cross_entropy``
    (written out so that it also runs under autocast).

    Args:
        recon: (B, C, H, W) probabilities in [0, 1] (the models' sigmoid output).
        x: (B, C, H, W) targets in [0, 1].

    Returns:
        Scalar float32 tensor.
    """
    _check_same_shape(recon, x, "recon_bce")
    p, t = recon.float(), x.float()
    log_p = torch.log(p).clamp_min(-100.0)
    log_1mp = torch.log1p(-p).clamp_min(-100.0)
    bce = -(t * log_p + (1.0 - t) * log_1mp)  # (B, C, H, W)
    return bce.flatten(1).sum(1).mean()


# -- KL divergence -------------------------------------------------------------------------


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) of a diagonal Gaussian posterior.

    Per unit: 0.5 * (mu^2 + exp(logvar) - 1 - logvar) (Kingma & Welling, ICLR 2014,
    appendix B), in nats.

    Args:
        mu: (B, K) posterior means.
        logvar: (B, K) posterior log-variances.
        reduction: ``"sum"`` (default): summed over units, averaged over the batch (the
            convention of :func:`recon_mse`), a scalar; ``"sample"``: summed over units,
            (B,); ``"none"``: (B, K); ``"mean"``: averaged over units and batch, a scalar
            (the paper's Keras CVAE).

    Returns:
        float32 tensor of the shape given by ``reduction``.
    """
    if mu.shape != logvar.shape or mu.dim() != 2:
        raise InputError(
            f"kl_divergence: mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must both "
            "be (B, K)"
        )
    kl = posterior_kl(mu, logvar)  # (B, K)
    if reduction == "none":
        return kl
    if reduction == "sample":
        return kl.sum(1)
    if reduction == "sum":
        return kl.sum(1).mean()
    if reduction == "mean":
        return kl.mean()
    raise InputError(
        f"kl_divergence: reduction '{reduction}' is unknown; choose sum, sample, none or mean"
    )


def kl_weight(step: int, beta: float, warmup_steps: int) -> float:
    """Linear KL warm-up: beta * min(1, step / warmup_steps) (Bowman et al., CoNLL 2016).

    Args:
        step: optimiser steps done so far (0 at the first step).
        beta: the final weight (beta-VAE, Higgins et al. 2017; 1 = the plain ELBO).
        warmup_steps: steps to reach ``beta``; 0 = no warm-up (``beta`` from step 0).
    """
    if warmup_steps <= 0:
        return float(beta)
    return float(beta) * min(1.0, max(step, 0) / warmup_steps)


# -- segmentation --------------------------------------------------------------------------


def _check_logits(logits: torch.Tensor, target: torch.Tensor, what: str) -> None:
    if logits.dim() != 4:
        raise InputError(f"{what}: logits must be (B, P, H, W), got {tuple(logits.shape)}")
    B, P, H, W = logits.shape
    if target.shape not in ((B, H, W), (B, P, H, W)):
        raise InputError(
            f"{what}: target of shape {tuple(target.shape)} does not fit logits "
            f"{tuple(logits.shape)}; expected ({B}, {H}, {W}) or ({B}, {P}, {H}, {W})"
        )


def _probs_and_onehot(
    logits: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities and the matching float target, both (B, P, H, W) float32.

    P = 1: sigmoid and the {0, 1} mask. P > 1: softmax over classes and the one-hot of the
    class ids (or the given (B, P, H, W) target).
    """
    B, P, H, W = logits.shape
    logits = logits.float()
    if P == 1:
        return torch.sigmoid(logits), target.reshape(B, 1, H, W).float()
    probs = torch.softmax(logits, dim=1)
    if target.dim() == 4:
        return probs, target.float()
    onehot = F.one_hot(target.long(), P).permute(0, 3, 1, 2).float()  # (B, P, H, W)
    return probs, onehot


def _overlap_sums(
    probs: torch.Tensor, target: torch.Tensor, per_image: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft intersection, sum of probabilities, sum of targets: (P,) or (B, P) if per_image."""
    dims = (2, 3) if per_image else (0, 2, 3)
    return (probs * target).sum(dims), probs.sum(dims), target.sum(dims)


def soft_jaccard_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    smooth: float = SMOOTH,
    per_image: bool = False,
) -> torch.Tensor:
    """1 - soft IoU (Rahman & Wang, ISVC 2016), binary or multi-class.

    IoU_c = (sum p t + smooth) / (sum p + sum t - sum p t + smooth), sums over the batch's
    pixels (``per_image=False``, as segmentation_models) or per image, then averaged over
    classes (and images). p = sigmoid (P = 1) or softmax (P > 1) of the logits.

    Args:
        logits: (B, P, H, W) float logits.
        target: see the module docstring.

    Returns:
        Scalar float32 in [0, 1]: ~0 for a perfect prediction, ~1 for a disjoint one.
    """
    _check_logits(logits, target, "soft_jaccard_loss")
    probs, onehot = _probs_and_onehot(logits, target)
    inter, p_sum, t_sum = _overlap_sums(probs, onehot, per_image)
    iou = (inter + smooth) / (p_sum + t_sum - inter + smooth)
    return 1.0 - iou.mean()


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    smooth: float = SMOOTH,
    per_image: bool = False,
) -> torch.Tensor:
    """1 - soft Dice (Milletari et al., V-Net, 3DV 2016), binary or multi-class.

    Dice_c = (2 sum p t + smooth) / (sum p + sum t + smooth), pooled and averaged as in
    :func:`soft_jaccard_loss`.

    Returns:
        Scalar float32 in [0, 1].
    """
    _check_logits(logits, target, "dice_loss")
    probs, onehot = _probs_and_onehot(logits, target)
    inter, p_sum, t_sum = _overlap_sums(probs, onehot, per_image)
    dice = (2.0 * inter + smooth) / (p_sum + t_sum + smooth)
    return 1.0 - dice.mean()


def mask_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of mask logits (B, 1, H, W) against {0, 1}, mean over pixels."""
    _check_logits(logits, target, "mask_bce")
    B, P, H, W = logits.shape
    if P != 1:
        raise InputError(f"mask_bce: needs one logit channel, got {P}; use parsing_ce")
    return F.binary_cross_entropy_with_logits(logits.float(), target.reshape(B, 1, H, W).float())


def parsing_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-class cross-entropy of logits (B, P, H, W), mean over pixels (P > 1).

    Args:
        target: class ids (B, H, W) in [0, P), or class probabilities (B, P, H, W).
    """
    _check_logits(logits, target, "parsing_ce")
    if logits.shape[1] == 1:
        raise InputError("parsing_ce: needs P > 1 logit channels; use mask_bce for a binary mask")
    target = target.float() if target.dim() == 4 else target.long()
    return F.cross_entropy(logits.float(), target)


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mask_bce for one channel, parsing_ce for several."""
    return mask_bce(logits, target) if logits.shape[1] == 1 else parsing_ce(logits, target)


def bce_jaccard_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The paper's segmentation loss: cross-entropy + (1 - soft Jaccard).

    segmentation_models' ``bce_jaccard_loss`` (used by the paper's ``SegGradCAM.py``) for a
    binary mask; for P > 1 the multi-class analogue (softmax cross-entropy + class-mean
    soft Jaccard).
    """
    return _cross_entropy(logits, target) + soft_jaccard_loss(logits, target)


def _lovasz_grad(sorted_target: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss at errors sorted descending.

    ``sorted_target`` (N,) float in {0, 1}: the ground truth in the order of decreasing
    error. Entry i is J(first i + 1 errors) - J(first i errors), J = 1 - IoU when those
    pixels are the mistakes (Berman et al. 2018, Eq. 8-9).
    """
    total = sorted_target.sum()
    intersection = total - sorted_target.cumsum(0)
    union = total + (1.0 - sorted_target).cumsum(0)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def lovasz_loss(
    logits: torch.Tensor, target: torch.Tensor, per_image: bool = False
) -> torch.Tensor:
    """Lovasz loss: a convex surrogate that optimises the IoU itself (Berman, Rannen Triki
    & Blaschko, "The Lovasz-Softmax loss", CVPR 2018).

    P = 1: the Lovasz hinge on the logits (errors 1 - logit * sign, sign +1 on the mask,
    -1 off it; negative errors count as 0). P > 1: the Lovasz-softmax on the softmax
    probabilities (errors |onehot - p|), averaged over the classes present in the target
    (``classes='present'`` of the paper's code). Pixels are pooled over the batch
    (``per_image=False``, as :func:`soft_jaccard_loss`) or scored per image and averaged.

    On hard predictions it is the IoU loss of the prediction: exactly 1 - IoU for P > 1 with
    one-hot probabilities (averaged over present classes), and 2 (1 - IoU) for P = 1 with
    logits of +-1 (each wrong pixel has error 2, each right one 0).

    Args:
        logits: (B, P, H, W) float logits.
        target: class ids (B, H, W) (or the {0, 1} mask for P = 1); see the module docstring.

    Returns:
        Scalar float32 >= 0 (0 for a perfect prediction with margin).
    """
    _check_logits(logits, target, "lovasz_loss")
    B, P, H, W = logits.shape
    if P == 1:
        truth = target.reshape(B, H * W).float()
        errors = (1.0 - logits.float().reshape(B, H * W) * (2.0 * truth - 1.0)).clamp_min(0.0)
        truth, errors = truth.unsqueeze(1), errors.unsqueeze(1)  # (B, 1, N)
    else:
        probs, onehot = _probs_and_onehot(logits, target)
        truth = onehot.reshape(B, P, H * W)
        errors = (truth - probs.reshape(B, P, H * W)).abs()
    if not per_image:  # pool the batch: one (1, P, B * N) set of pixels
        truth = truth.transpose(0, 1).reshape(1, truth.shape[1], -1)
        errors = errors.transpose(0, 1).reshape(1, errors.shape[1], -1)
    losses = []
    for image_truth, image_errors in zip(truth, errors, strict=True):
        for class_truth, class_errors in zip(image_truth, image_errors, strict=True):
            if P > 1 and class_truth.sum() == 0:
                continue  # the class is absent from this target
            ordered, order = torch.sort(class_errors, descending=True)
            losses.append(torch.dot(ordered, _lovasz_grad(class_truth[order])))
    if not losses:  # no class present anywhere (P > 1 with an empty target): nothing to fit
        return logits.float().sum() * 0.0
    return torch.stack(losses).mean()


def seg_loss(name: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Segmentation loss by name (``TrainConfig.seg_loss``), binary or multi-class.

    ``bce_jaccard`` (the paper) | ``jaccard`` | ``dice`` | ``ce`` (BCE for P = 1, softmax
    cross-entropy for P > 1) | ``ce_dice`` (ce + dice) | ``lovasz`` (:func:`lovasz_loss`) |
    ``ce_lovasz`` (ce + lovasz).

    Raises:
        ConfigError: an unknown name.
    """
    if name == "bce_jaccard":
        return bce_jaccard_loss(logits, target)
    if name == "jaccard":
        return soft_jaccard_loss(logits, target)
    if name == "dice":
        return dice_loss(logits, target)
    if name == "ce":
        return _cross_entropy(logits, target)
    if name == "ce_dice":
        return _cross_entropy(logits, target) + dice_loss(logits, target)
    if name == "lovasz":
        return lovasz_loss(logits, target)
    if name == "ce_lovasz":
        return _cross_entropy(logits, target) + lovasz_loss(logits, target)
    raise ConfigError(
        f"config key 'train.seg_loss' is '{name}'; choose one of: {', '.join(SEG_LOSSES)}"
    )


# -- attention (explanations as a training signal) ------------------------------------------


def attention_maps(
    features: torch.Tensor,
    mu: torch.Tensor,
    units: torch.Tensor,
    post: str = "abs",
    eps: float = 1e-6,
) -> torch.Tensor:
    """Grad-CAM maps of latent units that stay differentiable, each scaled to max 1.

    Liu et al. (CVPR 2020, Sec. 3): M_k = post(sum_c alpha_c^k A_c), alpha_c^k the spatial
    mean of d mu_k / d A_c (the maps of :func:`latentcam.explain.cam.latent_cams`, method
    gradcam). The gradients are taken with ``create_graph=True`` so a loss on the maps trains
    both the features and the weights that read them. Each map is divided by its maximum
    (+ ``eps``), so a penalty on overlap cannot be met by shrinking maps. ``post="abs"`` (Liu
    et al.'s code, the default) also keeps it from being met by maps that vanish: with
    ``"relu"`` a penalty on overlap can be lowered by making a unit's weighted sum negative
    everywhere (measured: 67% of the maps all zero at the last block after 6 minutes, against
    7% without the term; ``benchmarks/localisation.py``).

    Args:
        features: A, (B, C, h, w) activations of the explained layer, part of ``mu``'s graph.
        mu: (B, K) posterior means computed from ``features``.
        units: (T,) int64 indices of the units to map (T >= 1).
        post: "abs" (default) or "relu" (the Grad-CAM of the paper's figures).
        eps: keeps the scaling finite for a map that is zero everywhere.

    Returns:
        (B, T, h, w) float32 maps in [0, 1].
    """
    if features.dim() != 4 or mu.dim() != 2 or features.shape[0] != mu.shape[0]:
        raise InputError(
            f"attention_maps: features {tuple(features.shape)} must be (B, C, h, w) and mu "
            f"{tuple(mu.shape)} (B, K) with the same B"
        )
    T = units.numel()
    picked = mu[:, units]  # (B, T)
    # One batched backward: row t of the grad_outputs selects unit t (vmap over T).
    eye = torch.eye(T, dtype=picked.dtype, device=picked.device)
    selectors = eye[:, None, :].expand(T, picked.shape[0], T)
    (grads,) = torch.autograd.grad(
        picked, features, grad_outputs=selectors, is_grads_batched=True, create_graph=True
    )  # (T, B, C, h, w)
    if post not in ("abs", "relu"):
        raise InputError(f"attention_maps: post '{post}' is unknown; choose abs or relu")
    alpha = grads.float().mean(dim=(-2, -1))  # (T, B, C)
    weighted = torch.einsum("tbc,bchw->bthw", alpha, features.float())
    maps = weighted.abs() if post == "abs" else F.relu(weighted)
    peak = maps.flatten(2).amax(-1)[..., None, None]
    return maps / (peak + eps)


def attention_overlap(maps: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean soft IoU between the attention maps of every pair of units (Liu et al. 2020's
    attention-disentanglement loss): sum(M_i * M_j) / sum(M_i + M_j - M_i * M_j), averaged
    over pairs i < j and images. 0 when no two maps overlap, 1 when all are equal and binary.

    Args:
        maps: (B, T, h, w) float maps in [0, 1] (:func:`attention_maps`), T >= 2.

    Returns:
        Scalar float32 tensor in [0, 1].
    """
    if maps.dim() != 4 or maps.shape[1] < 2:
        raise InputError(
            f"attention_overlap: maps {tuple(maps.shape)} must be (B, T, h, w) with T >= 2"
        )
    flat = maps.float().flatten(2)  # (B, T, P)
    inter = torch.einsum("bip,bjp->bij", flat, flat)
    mass = flat.sum(-1)  # (B, T)
    union = mass[:, :, None] + mass[:, None, :] - inter
    iou = inter / (union + eps)
    i, j = torch.triu_indices(flat.shape[1], flat.shape[1], offset=1, device=maps.device)
    return iou[:, i, j].mean()
