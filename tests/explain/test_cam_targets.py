"""Explanation targets: scores computed by hand on small, known outputs."""

from __future__ import annotations

import pytest
import torch

from latentcam.errors import InputError
from latentcam.explain.targets import (
    CustomTarget,
    LatentSum,
    LatentUnit,
    SegClass,
    as_target,
    mu_coefficients,
    sampled_z,
    target_scores,
)
from latentcam.models.base import VAEOutput


def latent_output() -> VAEOutput:
    mu = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.0, -1.0]])
    logvar = torch.tensor([[0.0, 2.0, -2.0], [1.0, 0.0, 0.0]])
    return VAEOutput(recon=None, mu=mu, logvar=logvar, z=mu)


def seg_output(logits: torch.Tensor) -> VAEOutput:
    mu = torch.zeros(logits.shape[0], 2)
    return VAEOutput(recon=None, mu=mu, logvar=mu, z=mu, seg_logits=logits)


def test_latent_unit_sign_and_sum_of_mu() -> None:
    out = latent_output()
    torch.testing.assert_close(LatentUnit(1)(out), torch.tensor([-2.0, 0.0]))
    torch.testing.assert_close(LatentUnit(2, sign=-1)(out), torch.tensor([-3.0, 1.0]))
    torch.testing.assert_close(LatentSum()(out), torch.tensor([2.0, -0.5]))
    targets = [LatentUnit(2), LatentUnit(0, sign=-1)]
    torch.testing.assert_close(
        target_scores(targets, out), torch.tensor([[3.0, -1.0], [-1.0, -0.5]])
    )
    coefficients = mu_coefficients([*targets, LatentSum()], 3)
    assert coefficients is not None
    torch.testing.assert_close(coefficients, torch.tensor([[0.0, 0, 1], [-1, 0, 0], [1, 1, 1]]))
    assert mu_coefficients([LatentUnit(0, of="z")], 3) is None


def test_sampled_z_is_mu_plus_sigma_eps_with_a_seeded_generator() -> None:
    out = latent_output()
    eps = torch.randn(2, 3, generator=torch.Generator().manual_seed(7))
    expected = out.mu + torch.exp(0.5 * out.logvar) * eps
    torch.testing.assert_close(sampled_z(out, 7), expected)
    torch.testing.assert_close(LatentUnit(1, of="z", seed=7)(out), expected[:, 1])
    torch.testing.assert_close(LatentSum("z", seed=7)(out), expected.sum(1))
    assert LatentSum("z", seed=7).name == "sum(z) (sampled, seed 7)"
    assert LatentUnit(4, sign=-1).name == "-mu[4]"


def test_seg_class_pixel_sets() -> None:
    # two classes on a 2x3 map: argmax is class 1 where its logit is larger
    logits = torch.tensor(
        [[[[0.0, 5.0, 1.0], [2.0, 0.0, 0.0]], [[1.0, 2.0, 3.0], [1.0, 4.0, -1.0]]]]
    )  # (1, 2, 2, 3)
    out = seg_output(logits)
    # class 1 wins at (0,0), (0,2), (1,1): 1 + 3 + 4
    torch.testing.assert_close(SegClass(1)(out), torch.tensor([8.0]))
    # class 0 wins at (0,1), (1,0), (1,2): 5 + 2 + 0
    torch.testing.assert_close(SegClass(0)(out), torch.tensor([7.0]))
    mask = torch.tensor([[True, False, False], [False, False, True]])
    torch.testing.assert_close(SegClass(1, mask=mask)(out), torch.tensor([0.0]))
    torch.testing.assert_close(SegClass(0, box=(0, 1, 2, 3))(out), torch.tensor([6.0]))
    torch.testing.assert_close(SegClass(1, pixel=(1, 1))(out), torch.tensor([4.0]))
    assert SegClass(0, box=(0, 1, 2, 3), class_name="skin").name == "seg skin over box (0, 1, 2, 3)"


def test_binary_seg_class_is_the_sigmoid_foreground() -> None:
    logits = torch.tensor([[[[-1.0, 2.0], [0.5, -3.0]]], [[[1.0, 1.0], [1.0, -1.0]]]])  # (2,1,2,2)
    torch.testing.assert_close(SegClass(0)(seg_output(logits)), torch.tensor([2.5, 3.0]))


def test_target_errors() -> None:
    out = latent_output()
    with pytest.raises(InputError, match="out of range"):
        target_scores([LatentUnit(3)], out)
    with pytest.raises(InputError, match="seg_logits=None"):
        SegClass(0)(out)
    with pytest.raises(InputError, match="at most one"):
        SegClass(0, box=(0, 0, 1, 1), pixel=(0, 0))
    seg = seg_output(torch.zeros(1, 2, 4, 4))
    with pytest.raises(InputError, match="class 2 is out of range"):
        SegClass(2)(seg)
    with pytest.raises(InputError, match="outside"):
        SegClass(0, box=(0, 0, 5, 2))(seg)
    with pytest.raises(InputError, match="must be"):
        SegClass(0, mask=torch.ones(3, 3, dtype=torch.bool))(seg)
    with pytest.raises(InputError, match="one score per image"):
        target_scores([CustomTarget(lambda o: o.mu)], out)
    with pytest.raises(InputError, match="'mu' or 'z'"):
        LatentUnit(0, of="logvar")
    assert as_target(lambda o: o.mu[:, 0]).name == "<lambda>"
