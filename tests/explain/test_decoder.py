"""Decoder-side explanations (latentcam.explain.decoder): exact Jacobian maps, unit x part."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from latentcam.errors import InputError
from latentcam.explain import decoder as D
from latentcam.explain.metrics import UnitPartTable
from latentcam.models.base import Decoded, GenerativeModel


class LinearDecoder(GenerativeModel):
    """decode(z) = (W z + b) reshaped to (3, 4, 5): its Jacobian is W, known by hand."""

    latent_dim = 3

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3, 3 * 4 * 5)

    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> Decoded:
        return Decoded(recon=self.fc(z).view(-1, 3, 4, 5))


def test_decoder_maps_equal_the_analytic_jacobian_of_a_linear_decoder() -> None:
    model = LinearDecoder()
    z = torch.randn(2, 3)
    got = D.decoder_jacobian(model, z, units=[2, 0])
    assert got.exact
    W = model.fc.weight.detach().view(3, 4, 5, 3)  # (C, H, W, K)
    expected = W.abs().mean(0).permute(2, 0, 1)  # (K, H, W), the same for every z
    torch.testing.assert_close(got.maps, expected[[2, 0]][None].expand(2, -1, -1, -1))
    assert D.decoder_maps(model, z).shape == (2, 3, 4, 5)
    with pytest.raises(InputError, match="unit 3 is out of range"):
        D.decoder_maps(model, z, units=[3])
    with pytest.raises(InputError, match="z must be a \\(N, K\\)"):
        D.decoder_maps(model, z[0])


class NoForwardAD(torch.autograd.Function):
    """tanh whose forward-mode derivative is not implemented (forces the fallback)."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.tanh(x)


class FallbackDecoder(LinearDecoder):
    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> Decoded:
        return Decoded(recon=NoForwardAD.apply(self.fc(z)).view(-1, 3, 4, 5))


def test_finite_difference_fallback_when_forward_ad_fails(caplog: pytest.LogCaptureFixture) -> None:
    model = FallbackDecoder()
    z = torch.randn(2, 3, dtype=torch.float32)
    got = D.decoder_jacobian(model, z, units=[1])
    assert not got.exact and "finite differences" in caplog.text
    # analytic: d tanh(Wz + b) / dz_1 = (1 - tanh^2) W[:, 1]
    pre = model.fc(z).detach()
    cols = ((1 - torch.tanh(pre) ** 2) * model.fc.weight.detach()[:, 1]).view(2, 3, 4, 5)
    torch.testing.assert_close(got.maps[:, 0], cols.abs().mean(1), atol=1e-4, rtol=1e-3)


def test_part_matrix_and_units_for_part_on_hand_masks() -> None:
    parts = torch.tensor([[[1, 1], [10, 10]]])  # top row skin, bottom row mouth
    maps = torch.tensor(
        [[[[1.0, 0.0], [3.0, 0.0]], [[2.0, 2.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]]
    )  # (1, 3, 2, 2): unit 0 mostly mouth, unit 1 only skin, unit 2 nothing
    table = D.part_matrix(maps, parts)
    skin, mouth = table.regions.index("skin"), table.regions.index("mouth")
    assert table.share[0, skin] == pytest.approx(0.25) and table.share[0, mouth] == 0.75
    assert table.share[1, skin] == 1.0 and table.share[1, mouth] == 0.0
    assert bool(table.share[2].isnan().all())
    assert table.area[skin] == 0.5 and table.area[mouth] == 0.5
    assert D.units_for_part(table, "mouth", k=5, units=[7, 8, 9]) == [7, 8]  # unit 9: no mass
    assert D.units_for_part(table, "skin", k=1) == [1]
    with pytest.raises(InputError, match="unknown region 'lips'"):
        D.units_for_part(table, "lips")


def test_matrix_and_map_agreement() -> None:
    a = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    assert D.matrix_agreement(a, a) == pytest.approx(1.0)
    assert D.matrix_agreement(a, a.flip(1)) == pytest.approx(-1.0)
    # rows are normalised first: a scaled row is the same distribution
    assert D.matrix_agreement(a, a * torch.tensor([[2.0], [5.0]])) == pytest.approx(1.0)
    # centred: each region's mean share over units removed, only the differences compared
    c = torch.tensor([[0.5, 0.5], [0.7, 0.3]])
    d = torch.tensor([[0.2, 0.8], [0.4, 0.6]])
    assert D.matrix_agreement(c, d, centre=True) == pytest.approx(1.0)
    assert D.matrix_agreement(c, d) == pytest.approx(
        float(torch.corrcoef(torch.stack([c.flatten(), d.flatten()]))[0, 1])
    )
    nan_row = torch.tensor([[float("nan"), float("nan")]])
    assert D.matrix_agreement(
        torch.cat([c, nan_row]), torch.cat([d, d[:1]]), centre=True
    ) == pytest.approx(1.0)
    maps = torch.arange(8.0).view(1, 2, 2, 2)
    torch.testing.assert_close(D.map_agreement(maps, maps), torch.ones(2, dtype=torch.float32))
    assert isinstance(D.part_matrix(maps, torch.zeros(1, 2, 2, dtype=torch.long)), UnitPartTable)


def test_decoder_maps_match_finite_differences_on_a_tiny_run(runs: dict) -> None:
    from latentcam.checkpoint import load_run

    for kind in ("vae", "segvae"):
        model = load_run(runs[kind]).model.double()
        torch.manual_seed(0)
        z = torch.randn(2, model.latent_dim, dtype=torch.float64)
        got = D.decoder_jacobian(model, z, units=[0, 3])
        assert got.exact
        h = 1e-5
        with torch.no_grad():
            model.eval()
            cols = []
            for k in (0, 3):
                step = torch.zeros_like(z)
                step[:, k] = h
                out = D.decoded_output(model.decode(z + step), "auto")
                back = D.decoded_output(model.decode(z - step), "auto")
                cols.append(((out - back) / (2 * h)).abs().mean(1))
        torch.testing.assert_close(got.maps, torch.stack(cols, 1).float(), atol=1e-5, rtol=1e-4)
