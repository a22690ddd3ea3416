"""Losses on cases computed by hand, oracles from torch.distributions / torch.nn.functional."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from latentcam.errors import ConfigError, InputError
from latentcam.models.base import kl_per_unit
from latentcam.training.losses import (
    SEG_LOSSES,
    bce_jaccard_loss,
    dice_loss,
    kl_divergence,
    kl_weight,
    lovasz_loss,
    mask_bce,
    parsing_ce,
    recon_bce,
    recon_mse,
    seg_loss,
    soft_jaccard_loss,
)

BIG = 30.0  # a logit that saturates the sigmoid / softmax: a "perfect" prediction


# -- reconstruction ----------------------------------------------------------------------


def test_recon_mse_sums_pixels_and_averages_batch() -> None:
    x = torch.ones(2, 3, 4, 4)
    recon = torch.zeros(2, 3, 4, 4)
    recon[1] = 0.5  # sample 0: 48 * 1, sample 1: 48 * 0.25
    assert recon_mse(recon, x).item() == pytest.approx((48 + 12) / 2)


def test_recon_bce_known_values() -> None:
    x = torch.zeros(2, 3, 4, 4)
    x[:, :, :2] = 1.0
    recon = torch.full_like(x, 0.5)
    assert recon_bce(recon, x).item() == pytest.approx(48 * math.log(2), rel=1e-6)
    recon = torch.where(x > 0, 0.8, 0.1)  # half the pixels -log(0.8), half -log(0.9)
    expected = 24 * -math.log(0.8) + 24 * -math.log(0.9)
    assert recon_bce(recon, x).item() == pytest.approx(expected, rel=1e-6)
    oracle = F.binary_cross_entropy(recon, x, reduction="sum") / 2
    assert recon_bce(recon, x).item() == pytest.approx(oracle.item(), rel=1e-6)


def test_recon_shape_mismatch() -> None:
    with pytest.raises(InputError, match="same shape"):
        recon_mse(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 8, 8))


# -- KL ------------------------------------------------------------------------------------


def test_kl_hand_cases() -> None:
    zeros = torch.zeros(2, 3)
    assert kl_divergence(zeros, zeros).item() == 0.0
    ones = torch.ones(2, 3)
    torch.testing.assert_close(
        kl_divergence(ones, zeros, reduction="none"), torch.full((2, 3), 0.5)
    )
    torch.testing.assert_close(kl_per_unit(ones, zeros), torch.full((3,), 0.5))
    assert kl_divergence(ones, zeros).item() == pytest.approx(1.5)  # sum over K, mean over B
    torch.testing.assert_close(
        kl_divergence(ones, zeros, reduction="sample"), torch.full((2,), 1.5)
    )
    assert kl_divergence(ones, zeros, reduction="mean").item() == pytest.approx(0.5)
    # sigma^2 = 2, mu = 0: 0.5 * (2 - 1 - ln 2)
    logvar = torch.full((1, 1), math.log(2.0))
    assert kl_divergence(torch.zeros(1, 1), logvar).item() == pytest.approx(0.5 * (1 - math.log(2)))


def test_kl_matches_torch_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    post = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    prior = torch.distributions.Normal(torch.zeros(5, 7), torch.ones(5, 7))
    oracle = torch.distributions.kl_divergence(post, prior)  # (5, 7)
    torch.testing.assert_close(kl_divergence(mu, logvar, reduction="none"), oracle)
    torch.testing.assert_close(kl_per_unit(mu, logvar), oracle.mean(0))


def test_kl_errors() -> None:
    with pytest.raises(InputError, match="reduction"):
        kl_divergence(torch.zeros(1, 2), torch.zeros(1, 2), reduction="max")
    with pytest.raises(InputError, match="\\(B, K\\)"):
        kl_divergence(torch.zeros(1, 2), torch.zeros(1, 3))


def test_kl_weight_linear_warmup() -> None:
    assert kl_weight(0, 2.0, 10) == 0.0
    assert kl_weight(5, 2.0, 10) == pytest.approx(1.0)
    assert kl_weight(10, 2.0, 10) == 2.0
    assert kl_weight(50, 2.0, 10) == 2.0
    assert kl_weight(0, 0.5, 0) == 0.5  # no warm-up


# -- binary segmentation -------------------------------------------------------------------


def two_by_two() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits 0 (p = 0.5 everywhere) against a 2x2 mask with two ones."""
    return torch.zeros(1, 1, 2, 2), torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])


def test_jaccard_and_dice_on_a_2x2_example() -> None:
    logits, target = two_by_two()
    # intersection 0.5 + 0.5 = 1, sum p = 2, sum t = 2
    assert soft_jaccard_loss(logits, target, smooth=0).item() == pytest.approx(1 - 1 / 3)
    assert dice_loss(logits, target, smooth=0).item() == pytest.approx(1 - 2 / 4)
    # the default smoothing moves it by less than 1e-5
    assert soft_jaccard_loss(logits, target).item() == pytest.approx(2 / 3, abs=1e-5)


def test_jaccard_perfect_and_disjoint() -> None:
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1.0
    perfect = (2 * target - 1) * BIG
    assert soft_jaccard_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    disjoint = -perfect
    assert soft_jaccard_loss(disjoint, target).item() == pytest.approx(1.0, abs=1e-6)
    assert dice_loss(disjoint, target).item() == pytest.approx(1.0, abs=1e-6)


def test_binary_target_layouts_agree() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 5, 5, generator=g)
    target = (torch.rand(2, 5, 5, generator=g) > 0.5).float()
    for fn in (soft_jaccard_loss, dice_loss, mask_bce, bce_jaccard_loss):
        assert fn(logits, target).item() == pytest.approx(fn(logits, target[:, None]).item())


def test_per_image_jaccard_averages_images() -> None:
    logits = torch.full((2, 1, 2, 2), -BIG)
    logits[0] = BIG  # image 0 predicts everything, image 1 nothing
    target = torch.ones(2, 2, 2)
    # pooled over the batch: intersection 4, union 8 -> loss 0.5
    assert soft_jaccard_loss(logits, target, smooth=0).item() == pytest.approx(0.5, abs=1e-6)
    target[1, 0] = 0.0  # image 1: 2 target pixels, none predicted -> IoU 0; image 0: IoU 1
    pooled = 1 - 4 / 6
    per_image = 1 - (1.0 + 0.0) / 2
    assert soft_jaccard_loss(logits, target, smooth=0).item() == pytest.approx(pooled, abs=1e-6)
    got = soft_jaccard_loss(logits, target, smooth=0, per_image=True).item()
    assert got == pytest.approx(per_image, abs=1e-6)


def test_bce_known_values_and_bce_jaccard_sum() -> None:
    logits, target = two_by_two()
    assert mask_bce(logits, target).item() == pytest.approx(math.log(2))
    logits = torch.tensor([[[[2.0, -1.0], [0.0, 3.0]]]])
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    p = torch.sigmoid(logits).flatten().tolist()
    t = target.flatten().tolist()
    hand = (
        -sum(ti * math.log(pi) + (1 - ti) * math.log(1 - pi) for pi, ti in zip(p, t, strict=True))
        / 4
    )
    assert mask_bce(logits, target).item() == pytest.approx(hand, rel=1e-6)
    total = bce_jaccard_loss(logits, target).item()
    assert total == pytest.approx(hand + soft_jaccard_loss(logits, target).item(), rel=1e-6)


# -- multi-class segmentation ----------------------------------------------------------


def test_parsing_ce_known_values() -> None:
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    assert parsing_ce(torch.zeros(1, 19, 2, 2), target).item() == pytest.approx(math.log(19))
    logits = torch.zeros(1, 19, 2, 2)
    logits[:, 3] = 2.0
    target = torch.full((1, 2, 2), 3)
    expected = -2.0 + math.log(math.exp(2.0) + 18)
    assert parsing_ce(logits, target).item() == pytest.approx(expected, rel=1e-6)
    onehot = F.one_hot(target, 19).permute(0, 3, 1, 2).float()
    assert parsing_ce(logits, onehot).item() == pytest.approx(expected, rel=1e-6)


def test_multiclass_jaccard_dice() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 19, (2, 6, 6), generator=g)
    onehot = F.one_hot(target, 19).permute(0, 3, 1, 2).float()
    perfect = onehot * BIG
    assert soft_jaccard_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-5)
    assert dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-5)
    # uniform softmax (p = 1/P) over P = 2 classes, one pixel of each class:
    logits = torch.zeros(1, 2, 1, 2)
    two = torch.tensor([[[0, 1]]])
    # each class: intersection 0.5, sum p 1, sum t 1 -> IoU 1/3, Dice 1/2
    assert soft_jaccard_loss(logits, two, smooth=0).item() == pytest.approx(2 / 3)
    assert dice_loss(logits, two, smooth=0).item() == pytest.approx(1 / 2)
    random_logits = torch.randn(2, 19, 6, 6, generator=g)
    ids = soft_jaccard_loss(random_logits, target).item()
    assert ids == pytest.approx(soft_jaccard_loss(random_logits, onehot).item())


# -- Lovasz (Berman et al. 2018) -------------------------------------------------------


def hard_iou(pred: torch.Tensor, target: torch.Tensor, cls: int) -> float:
    inter = ((pred == cls) & (target == cls)).sum().item()
    return inter / ((pred == cls) | (target == cls)).sum().item()


def test_lovasz_hinge_on_hard_logits_is_twice_the_iou_loss() -> None:
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(2, 8, 8, generator=g) > 0.5).long()
    pred = (torch.rand(2, 8, 8, generator=g) > 0.5).long()
    logits = (2.0 * pred - 1.0).unsqueeze(1)  # +-1: right pixels error 0, wrong ones 2
    expected = 2 * (1 - hard_iou(pred, target, 1))
    assert lovasz_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    # with a margin of 3 the right pixels have no error and the loss is 0
    perfect = (2.0 * target - 1.0).unsqueeze(1) * 3
    assert lovasz_loss(perfect, target).item() == 0.0


def test_lovasz_hinge_hand_case() -> None:
    # two pixels, both in the mask, logits 0.5 and -1: errors 0.5 and 2.
    # Sorted [2, 0.5]: J after the first error = 1 - 1/2, after both = 1 -> grads [0.5, 0.5]
    logits = torch.tensor([[[[0.5, -1.0]]]])
    target = torch.ones(1, 1, 2)
    assert lovasz_loss(logits, target).item() == pytest.approx(2 * 0.5 + 0.5 * 0.5)


def test_lovasz_softmax_on_one_hot_probs_is_the_mean_iou_loss() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (2, 8, 8), generator=g)
    pred = torch.randint(0, 3, (2, 8, 8), generator=g)
    logits = F.one_hot(pred, 3).permute(0, 3, 1, 2).float() * 60.0  # softmax = one-hot
    expected = 1 - sum(hard_iou(pred, target, c) for c in range(3)) / 3
    assert lovasz_loss(logits, target).item() == pytest.approx(expected, rel=1e-5)
    # a class absent from the target is left out (classes='present')
    target[target == 2] = 0
    expected = 1 - (hard_iou(pred, target, 0) + hard_iou(pred, target, 1)) / 2
    assert lovasz_loss(logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_lovasz_per_image_averages_images() -> None:
    logits = torch.full((2, 1, 2, 2), -1.0)
    logits[0] = 1.0  # image 0 predicts everything, image 1 nothing
    target = torch.ones(2, 2, 2)
    target[1, 0] = 0.0
    # image 0: 4 of 4 predicted -> loss 0; image 1: none of its 2 predicted -> 2 (1 - 0)
    per_image = lovasz_loss(logits, target, per_image=True).item()
    assert per_image == pytest.approx((0.0 + 2.0) / 2)
    pooled = 1 - 4 / 6  # intersection 4 of union 6 over the batch
    assert lovasz_loss(logits, target).item() == pytest.approx(2 * pooled)


# -- dispatch, errors, gradients -------------------------------------------------------


@pytest.mark.parametrize("classes", [1, 19])
def test_seg_loss_dispatch(classes: int) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, classes, 4, 4, generator=g)
    target = torch.randint(0, max(classes, 2), (2, 4, 4), generator=g)
    ce = mask_bce(logits, target) if classes == 1 else parsing_ce(logits, target)
    expected = {
        "bce_jaccard": ce + soft_jaccard_loss(logits, target),
        "jaccard": soft_jaccard_loss(logits, target),
        "dice": dice_loss(logits, target),
        "ce": ce,
        "ce_dice": ce + dice_loss(logits, target),
        "lovasz": lovasz_loss(logits, target),
        "ce_lovasz": ce + lovasz_loss(logits, target),
    }
    assert set(expected) == set(SEG_LOSSES)
    for name, value in expected.items():
        assert seg_loss(name, logits, target).item() == pytest.approx(value.item())


def test_seg_errors() -> None:
    with pytest.raises(ConfigError, match="train.seg_loss"):
        seg_loss("focal", torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(InputError, match="does not fit"):
        soft_jaccard_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 2))
    with pytest.raises(InputError, match="\\(B, P, H, W\\)"):
        dice_loss(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4))
    with pytest.raises(InputError, match="P > 1"):
        parsing_ce(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(InputError, match="parsing_ce"):
        mask_bce(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2))


@pytest.mark.parametrize("name", SEG_LOSSES)
@pytest.mark.parametrize("classes", [1, 19])
def test_one_step_on_logits_reduces_each_loss(name: str, classes: int) -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, classes, 4, 4, generator=g).requires_grad_(True)
    target = torch.randint(0, max(classes, 2), (2, 4, 4), generator=g)
    opt = torch.optim.SGD([logits], lr=0.5)
    before = seg_loss(name, logits, target)
    before.backward()
    opt.step()
    assert seg_loss(name, logits, target).item() < before.item()
