"""Metrics and disentanglement scores on constructed cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from latentcam.data.classes import REGIONS
from latentcam.errors import InputError
from latentcam.explain import disentangle as dis
from latentcam.explain import metrics as m
from latentcam.models.base import Decoded, VAEOutput

REGION_NAMES = tuple(REGIONS)


# ----------------------------------------------------------------------------- localisation


def test_energy_all_inside_is_one_and_uniform_is_chance():
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    mask[:, 2:4, 2:6] = True  # 8 of 64 pixels
    inside = torch.zeros(2, 3, 8, 8)
    inside[:, :, 2:4, 2:6] = torch.rand(2, 3, 2, 4) + 0.1
    assert torch.allclose(m.energy_in_region(inside, mask), torch.ones(2, 3))
    uniform = torch.ones(2, 1, 8, 8)
    assert torch.allclose(m.energy_in_region(uniform, mask), torch.full((2, 1), 8 / 64))
    assert torch.allclose(m.region_share(mask), torch.full((2,), 8 / 64))
    half = torch.zeros(1, 1, 8, 8)
    half[0, 0, 2, 2] = 3.0  # inside
    half[0, 0, 7, 7] = 1.0  # outside
    assert m.energy_in_region(half, mask[:1]).item() == pytest.approx(0.75)
    assert torch.isnan(m.energy_in_region(torch.zeros(1, 1, 8, 8), mask[:1])).all()


def test_energy_rejects_other_resolution_and_negative_maps():
    with pytest.raises(InputError, match="upsample"):
        m.energy_in_region(torch.ones(1, 1, 4, 4), torch.ones(1, 8, 8, dtype=torch.bool))
    with pytest.raises(InputError, match=">= 0"):
        m.energy_in_region(-torch.ones(1, 1, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool))


def test_pointing_game_known_argmax_and_tolerance():
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 0:2, 0:2] = True
    maps = torch.zeros(1, 3, 8, 8)
    maps[0, 0, 1, 1] = 1.0  # peak inside
    maps[0, 1, 5, 5] = 1.0  # peak far outside
    maps[0, 2, 3, 3] = 1.0  # peak 2 px (Chebyshev) from the region
    hits = m.pointing_game(maps, mask)
    assert hits.tolist() == [[True, False, False]]
    assert m.pointing_game(maps, mask, tolerance=2).tolist() == [[True, False, True]]


def test_region_scores_uses_named_region():
    parts = torch.ones(1, 8, 8, dtype=torch.long)  # skin
    parts[0, 6:8, 2:6] = 11  # upper lip -> region "mouth"
    maps = torch.zeros(1, 1, 8, 8)
    maps[0, 0, 7, 3] = 2.0
    maps[0, 0, 0, 0] = 2.0
    scores = m.region_scores(maps, parts, "mouth")
    assert scores.energy.item() == pytest.approx(0.5)
    assert scores.chance.item() == pytest.approx(8 / 64)
    with pytest.raises(InputError, match="unknown region"):
        m.region_scores(maps, parts, "tail")


class SquareDecoder(nn.Module):
    """Unit k brightens square k only: decode(z) = 0.5 + 0.05 * sum_k z_k * square_k."""

    def __init__(self, squares: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("squares", squares)  # (K, H, W) float {0, 1}
        self.scale = nn.Parameter(torch.tensor(0.05))

    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> Decoded:
        image = 0.5 + self.scale * torch.einsum("bk,khw->bhw", z, self.squares)
        return Decoded(recon=image.unsqueeze(1).expand(-1, 3, -1, -1))


def _squares_and_parts(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    squares = torch.zeros(3, size, size)
    squares[0, 10:14, 4:12] = 1  # unit 0: the mouth
    squares[1, 6:9, 6:10] = 1  # unit 1: the nose
    squares[2, 0:4, :] = 1  # unit 2: the hair band
    parts = torch.ones(2, size, size, dtype=torch.long)  # skin
    parts[:, 10:14, 4:12] = 12  # lower lip
    parts[:, 6:9, 6:10] = 2  # nose
    parts[:, 0:4, :] = 13  # hair
    return squares, parts


def test_unit_part_table_of_square_decoder():
    from latentcam.explain.traversal import effect_maps

    squares, parts = _squares_and_parts()
    model = SquareDecoder(squares)
    mu = torch.randn(2, 3)
    effects = effect_maps(model, mu, delta=3.0)
    # |0.05 * 3 - 0.05 * (-3)| = 0.3 inside unit k's square, 0 elsewhere
    assert torch.allclose(effects, 0.3 * squares.expand(2, -1, -1, -1), atol=1e-6)
    table = m.unit_part_table(effects, parts)
    assert table.regions == REGION_NAMES
    assert torch.allclose(table.share.sum(1), torch.ones(3))
    mouth, nose, hair = (REGION_NAMES.index(r) for r in ("mouth", "nose", "hair"))
    assert table.share[0, mouth].item() == pytest.approx(1.0)
    assert table.share[1, nose].item() == pytest.approx(1.0)
    assert table.share[2, hair].item() == pytest.approx(1.0)
    assert table.area[mouth].item() == pytest.approx(32 / 256)
    best = m.best_region(table)
    assert best.names == ["mouth", "nose", "hair"]
    assert best.lift[0].item() == pytest.approx(256 / 32)
    # a uniform effect has lift 1 everywhere present
    flat = m.unit_part_table(torch.ones(2, 1, 16, 16), parts)
    present = flat.area > 0
    assert torch.allclose(flat.lift[0, present], torch.ones(int(present.sum())))


def test_best_region_prefers_concentration_over_size():
    squares, parts = _squares_and_parts()
    effect = torch.zeros(2, 1, 16, 16)
    effect[:, 0] = (parts == 1).float()  # the whole skin, 60% of the effect's mass ...
    effect[:, 0, 6:9, 6:10] = 4.0  # ... plus a strong nose
    table = m.unit_part_table(effect, parts)
    skin, nose = REGION_NAMES.index("skin"), REGION_NAMES.index("nose")
    assert table.share[0, skin] > table.share[0, nose]
    assert m.best_region(table).names == ["nose"]
    dead = m.best_region(m.unit_part_table(torch.zeros(2, 1, 16, 16), parts))
    assert dead.names == ["none"] and dead.region_index.item() == -1


# ----------------------------------------------------------------------------- map agreement


def test_rank_correlation_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (2, 3, 5, 5), generator=gen).float()  # many ties
    b = a + torch.randint(0, 3, (2, 3, 5, 5), generator=gen).float()
    rho = m.rank_correlation(a, b)
    for i in range(2):
        for k in range(3):
            expected = stats.spearmanr(a[i, k].flatten().numpy(), b[i, k].flatten().numpy())[0]
            assert rho[i, k].item() == pytest.approx(expected, abs=1e-6)
    assert torch.allclose(m.rank_correlation(a, a.exp()), torch.ones(2, 3))
    ramp = torch.arange(25.0).reshape(1, 1, 5, 5)
    assert m.rank_correlation(ramp, -ramp).item() == pytest.approx(-1.0)
    assert torch.isnan(m.rank_correlation(torch.ones(1, 1, 3, 3), a[:1, :1, :3, :3])).all()
    with pytest.raises(InputError, match="same shape"):
        m.rank_correlation(a, a[..., :4, :4])


def test_top_fraction_iou_hand_cases():
    a = torch.arange(100.0).reshape(1, 1, 10, 10)
    assert m.top_fraction_iou(a, a).item() == 1.0
    assert m.top_fraction_iou(a, -a).item() == 0.0  # top 10 vs bottom 10
    shifted = torch.roll(a, shifts=5)  # top 10 of b: pixels 95..99 and 0..4 -> 5 shared
    assert m.top_fraction_iou(a, shifted).item() == pytest.approx(5 / 15)


# ----------------------------------------------------------------------------- ranking


def test_active_units_effect_size_and_ranking():
    kl = torch.tensor([0.5, 0.001, 0.02, 0.0])
    assert m.active_units(kl).tolist() == [True, False, True, False]
    assert m.active_units(kl.expand(3, 4)).tolist() == [True, False, True, False]
    effects = torch.zeros(2, 3, 4, 4)
    effects[:, 1] = 0.5
    effects[:, 2, 0, 0] = 1.6  # mean 0.1
    assert torch.allclose(m.effect_size(effects), torch.tensor([0.0, 0.5, 0.1]))
    assert m.rank_units(torch.tensor([0.2, float("nan"), 0.9, 0.1])).tolist() == [2, 0, 3, 1]


# ----------------------------------------------------------------------------- sanity check


class LinearHeadEncoder(nn.Module):
    """conv -> ReLU -> flatten -> linear mu: Grad-CAM has a closed form on it."""

    def __init__(self, k: int = 4) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.mu = nn.Linear(8 * 4 * 4, k)
        self.logvar = nn.Linear(8 * 4 * 4, k)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(torch.relu(self.conv1(x))))

    def encode(self, x, cond=None):
        flat = self.features(x).flatten(1)
        return self.mu(flat), self.logvar(flat)

    def forward(self, x, cond=None) -> VAEOutput:
        mu, logvar = self.encode(x)
        return VAEOutput(recon=None, mu=mu, logvar=logvar, z=mu)


def gradcam_by_hand(model: LinearHeadEncoder, x: torch.Tensor) -> torch.Tensor:
    """alpha_kc = mean_hw W_k reshaped; map_k = ReLU(sum_c alpha_kc A_c): (B, K, 4, 4)."""
    acts = model.features(x)  # (B, C, 4, 4)
    alpha = model.mu.weight.reshape(-1, 8, 4, 4).mean(dim=(2, 3))  # (K, C)
    return torch.relu(torch.einsum("kc,bchw->bkhw", alpha, acts)).detach()


def test_cascading_randomisation_passes_structured_and_fails_fixed_maps():
    model = LinearHeadEncoder()
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    curve = m.cascading_randomisation(model, x, gradcam_by_hand, seed=0)
    assert [step.layer for step in curve] == ["logvar", "mu", "conv2", "conv1"]
    assert curve[0].correlation == pytest.approx(1.0)  # logvar does not touch mu maps
    assert curve[-1].correlation < 0.5
    assert m.passes_sanity(curve)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched

    def fixed_maps(_model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        noise = torch.rand(4, 4, 8, 8, generator=torch.Generator().manual_seed(3))
        return noise + images.mean(1, keepdim=True)  # does not depend on the weights

    fixed = m.cascading_randomisation(model, x, fixed_maps, layers=["mu", "conv2", "conv1"])
    assert [round(step.correlation, 6) for step in fixed] == [1.0, 1.0, 1.0]
    assert not m.passes_sanity(fixed)
    with pytest.raises(InputError, match="unknown layer"):
        m.cascading_randomisation(model, x, gradcam_by_hand, layers=["decoder"])


def test_cascading_randomisation_on_a_real_tiny_vae():
    registry = pytest.importorskip("latentcam.models.registry")
    from latentcam.config import model_config
    from latentcam.explain.cam import latent_cams

    torch.manual_seed(0)
    vae = registry.build_model(
        model_config(kind="vae", image_size=32, latent_dim=6, num_layers=2, base_channels=4)
    )
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    curve = m.cascading_randomisation(vae, x, lambda model, images: latent_cams(model, images).maps)
    layers = [step.layer for step in curve]
    assert layers[:2] == ["head.logvar", "head.mu"]  # from the top down
    assert layers[-1] == "encoder.blocks.0.conv"
    assert curve[0].correlation == pytest.approx(1.0)
    assert m.passes_sanity(curve)


# ----------------------------------------------------------------------------- segmentation


def test_seg_iou_hand_case_and_torchmetrics():
    target = torch.tensor([[[0, 0, 1, 1], [2, 2, 1, 1]]])
    pred = torch.tensor([[[0, 1, 1, 1], [2, 2, 2, 1]]])
    result = m.seg_iou(pred, target, num_classes=4)
    # class 0: tp 1, union 2; class 1: tp 3, union 5; class 2: tp 2, union 3; class 3 absent
    expected = [1 / 2, 3 / 5, 2 / 3]
    assert result.per_class[:3].tolist() == pytest.approx(expected)
    assert math.isnan(result.per_class[3].item())
    assert result.miou == pytest.approx(sum(expected) / 3)
    from torchmetrics.functional.classification import multiclass_jaccard_index

    oracle = multiclass_jaccard_index(pred, target, num_classes=4, average="none")
    assert torch.allclose(result.per_class[:3], oracle[:3].float())
    ignored = m.seg_iou(pred, torch.where(target == 2, 255, target), 4, ignore_index=255)
    assert ignored.per_class[0].item() == pytest.approx(1 / 2)


def test_binary_iou():
    target = torch.zeros(2, 4, 4)
    target[0, :2] = 1
    probs = torch.zeros(2, 4, 4)
    probs[0, :1] = 0.9  # 4 of the 8 target pixels
    probs[0, 3, 0] = 0.7  # one false positive
    iou = m.binary_iou(probs, target)
    assert iou[0].item() == pytest.approx(4 / 9)
    assert math.isnan(iou[1].item())


# ----------------------------------------------------------------------------- disentanglement


def _factors(n: int = 2000, f: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, f, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_entropy_and_mutual_information_hand_values():
    bits = torch.tensor([0, 1] * 50, dtype=torch.float64).unsqueeze(1)
    noise = torch.tensor([0, 0, 1, 1] * 25, dtype=torch.float64).unsqueeze(1)
    mi = dis.mutual_info_matrix(torch.cat([bits, noise], 1), bits)
    assert mi[0, 0].item() == pytest.approx(math.log(2))  # a copy: MI = H = ln 2
    assert mi[1, 0].item() == pytest.approx(0.0, abs=1e-12)  # independent by construction


def test_mig_perfect_and_random_codes():
    factors = _factors()
    perm = [2, 0, 3, 1]
    perfect = dis.mig(factors[:, perm], factors)
    assert perfect.score > 0.9
    assert dis.best_unit_per_factor(factors[:, perm], factors).unit.tolist() == [1, 3, 0, 2]
    random_code = torch.randn(2000, 4, generator=torch.Generator().manual_seed(1))
    assert dis.mig(random_code, factors).score < 0.05
    coin = (torch.rand(2000, 1, generator=torch.Generator().manual_seed(4)) > 0.5).double()
    with_binary = torch.cat([factors, coin], 1)  # a binary factor is used as it is
    assert dis.mig(with_binary[:, [4, 0, 1, 2, 3]], with_binary).per_factor[4].item() > 0.9
    # a code that copies factor 0 twice: no gap for factor 0
    twice = dis.mig(factors[:, [0, 0, 1, 2, 3]], factors)
    assert twice.per_factor[0].item() == pytest.approx(0.0, abs=1e-9)


def test_dci_permuted_identity_and_random_mixing():
    factors = _factors(n=1000, f=5)
    train, test = slice(0, 800), slice(800, 1000)
    code = factors[:, [3, 1, 4, 0, 2]]
    good = dis.dci(code[train], factors[train], code[test], factors[test], method="ridge")
    assert good.method == "ridge"
    assert good.disentanglement > 0.95 and good.completeness > 0.95
    assert good.informativeness_test > 0.99
    mixing = torch.randn(5, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    mixed = factors @ mixing
    bad = dis.dci(mixed[train], factors[train], mixed[test], factors[test], method="ridge")
    assert bad.disentanglement < 0.5 and bad.completeness < 0.5
    assert bad.informativeness_test > 0.99  # still a linear function of the factors
    auto = dis.dci(code[train], factors[train], code[test], factors[test])
    assert auto.method == "ridge"  # whatever else is installed: the same run, the same DCI
    assert auto.disentanglement == pytest.approx(good.disentanglement)
    with pytest.raises(InputError, match="at least 2"):
        dis.dci(code[:, :1], factors, code[:, :1], factors)


def test_auroc_matrix_hand_case():
    values = torch.tensor([[1.0], [2.0], [2.0], [4.0]], dtype=torch.float64)
    positives = torch.tensor([[False], [False], [True], [True]])
    # pairs (pos, neg): (2,1) win, (2,2) tie, (4,1) win, (4,2) win -> 3.5 / 4
    assert dis.auroc_matrix(values, positives).item() == pytest.approx(0.875)


@pytest.mark.parametrize("method", ["auroc", "logistic"])
def test_probe_finds_the_unit_built_for_the_attribute(method: str):
    gen = torch.Generator().manual_seed(0)
    n, k = 400, 8
    mu = torch.randn(n, k, generator=gen)
    smiling = torch.rand(n, generator=gen) > 0.5
    mu[:, 5] = smiling.float() * 2.0 - 1.0 + 0.3 * torch.randn(n, generator=gen)
    labels = torch.stack(
        [smiling.long() * 2 - 1, torch.ones(n, dtype=torch.long)], 1
    )  # CelebA -1/1
    result = dis.probe_units(mu, labels, method=method)
    assert result.scores.shape == (2, k)
    assert int(result.scores[0].argmax()) == 5
    assert result.heldout_auroc[0].item() > 0.95
    assert torch.isnan(result.scores[1]).all()  # one class only
    top = dis.top_units_per_attribute(result.scores, ["Smiling", "Always"], k=3)
    assert top["Smiling"][0] == 5 and len(top["Smiling"]) == 3
    assert top["Always"] == []


def test_discretise_equal_width_bins():
    values = np.array([[0.0], [0.49], [0.5], [1.0]])
    assert dis.discretise(values, bins=2)[:, 0].tolist() == [0, 0, 1, 1]
    assert dis.discretise(np.ones((3, 1)), bins=4)[:, 0].tolist() == [0, 0, 0]


def test_dci_with_more_units_than_factors() -> None:
    """Non-square importance: 3 factors carried by 3 of 8 units, 5 units pure noise."""
    from latentcam.explain.disentangle import dci

    gen = torch.Generator().manual_seed(0)
    f = torch.rand(400, 3, generator=gen)
    mu = torch.cat([f[:, [2, 0, 1]], 0.01 * torch.randn(400, 5, generator=gen)], dim=1)
    res = dci(mu[:200], f[:200], mu[200:], f[200:], method="ridge")
    assert res.importance.shape == (8, 3)
    assert res.disentanglement > 0.9
    assert res.completeness > 0.9
    assert res.informativeness_test > 0.95


def test_units_by_kl_is_the_one_ordering() -> None:
    from latentcam.explain.metrics import RANKING_IMAGES, units_by_kl
    from latentcam.models.base import kl_per_unit

    g = torch.Generator().manual_seed(0)
    mu = torch.randn(RANKING_IMAGES + 20, 6, generator=g) * torch.tensor([0.1, 2, 1, 3, 0.5, 1])
    logvar = torch.zeros_like(mu)
    want = m.rank_units(kl_per_unit(mu[:RANKING_IMAGES], logvar[:RANKING_IMAGES])).tolist()
    assert units_by_kl(mu, logvar) == want
    assert want[0] == 3 and want[-1] == 0  # KL = mu^2 / 2 on average, unit 3 spreads most
    # images past the first RANKING_IMAGES change nothing: every tool ranks on the same ones
    changed = mu.clone()
    changed[RANKING_IMAGES:] = 100.0 * torch.arange(6.0)
    assert units_by_kl(changed, logvar) == want
    # ties keep index order
    assert units_by_kl(torch.ones(4, 3), torch.zeros(4, 3)) == [0, 1, 2]
