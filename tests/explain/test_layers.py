"""Layer specs, multi-layer fusion and ``auto`` layer choice (latentcam.explain.layers)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from latentcam.config import model_config
from latentcam.errors import InputError
from latentcam.explain.cam import latent_cams
from latentcam.explain.layers import (
    FUSION,
    CamBank,
    ComparisonRow,
    choose_layer,
    fuse_maps,
    fused_cams,
    fusion_layers,
    localisation_scores,
    parse_layers,
    pick_best,
)
from latentcam.models.base import Decoded, GenerativeModel, VAEOutput
from latentcam.models.registry import build_model

# ----------------------------------------------------------------------------- fusion


def test_fuse_two_known_maps_mean_max_geomean() -> None:
    a = torch.tensor([[0.0, 2.0], [0.0, 0.0]]).view(1, 1, 2, 2)  # normalised: [[0, 1], [0, 0]]
    b = torch.tensor([[1.0, 1.0], [3.0, 1.0]]).view(1, 1, 2, 2)  # normalised: [[0, 0], [1, 0]]
    assert fuse_maps([a, b], 2).view(2, 2).tolist() == [[0.0, 0.5], [0.5, 0.0]]
    assert fuse_maps([a, b], 2, how="max").view(2, 2).tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert fuse_maps([a, b], 2, how="geomean").view(2, 2).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    c = torch.tensor([[0.0, 4.0], [2.0, 0.0]]).view(1, 1, 2, 2)  # normalised: [[0, 1], [.5, 0]]
    geo = fuse_maps([a, c], 2, how="geomean").view(2, 2)
    torch.testing.assert_close(geo, torch.tensor([[0.0, 1.0], [0.0, 0.0]]))


def test_fuse_upsamples_each_layer_bilinearly() -> None:
    small = torch.tensor([[0.0, 1.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    flat = torch.full((1, 1, 4, 4), 7.0)  # a constant map normalises to 0
    fused = fuse_maps([small, flat], 4)
    # bilinear, align_corners=False: row 0 samples x = 0, .25, .75, 1 of [0, 1]; halved by
    # the mean with the zero map
    torch.testing.assert_close(fused[0, 0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]) / 2)
    assert fused.shape == (1, 1, 4, 4)
    with pytest.raises(InputError, match="unknown fusion 'median'"):
        fuse_maps([small], 4, how="median")
    with pytest.raises(InputError, match="same B, T"):
        fuse_maps([small, torch.zeros(1, 2, 4, 4)], 4)


# ----------------------------------------------------------------------------- a hand-built model


class Quadrants(nn.Module):
    """(B, 3, 16, 16) -> (B, 2, 16, 16): channel 0 = grey level inside the bottom-right
    quadrant only, channel 1 = grey level inside the top-left quadrant only."""

    def __init__(self) -> None:
        super().__init__()
        br = torch.zeros(16, 16)
        br[8:, 8:] = 1.0
        tl = torch.zeros(16, 16)
        tl[:8, :8] = 1.0
        self.register_buffer("masks", torch.stack([br, tl]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1, keepdim=True) * self.masks


class QuadrantVAE(GenerativeModel):
    """mu_0 reads the bottom-right quadrant, mu_1 the top-left one. ``encoder.blocks.0`` is
    a 16x16 map where each unit's channel is non-zero only in its quadrant (Grad-CAM there
    localises exactly); ``encoder.blocks.1`` pools to 1x1 (its maps are constant). The
    decoder paints z_0 on the bottom-right quadrant and z_1 on the top-left one."""

    latent_dim = 2

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.blocks = nn.ModuleList([Quadrants(), nn.AdaptiveAvgPool2d(1)])
        self.explain_layer = "encoder.blocks.1"

    def encoder_layers(self) -> list[str]:
        return ["encoder.blocks.0", "encoder.blocks.1"]

    def encode(
        self, x: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder.blocks[1](self.encoder.blocks[0](x))  # (B, 2, 1, 1)
        mu = 4.0 * h.flatten(1)  # the mean grey level of each quadrant
        return mu, torch.zeros_like(mu)

    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> Decoded:
        masks = self.encoder.blocks[0].masks  # (2, 16, 16)
        image = torch.einsum("bk,khw->bhw", z, masks)[:, None].expand(-1, 3, -1, -1)
        return Decoded(recon=image)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> VAEOutput:
        mu, logvar = self.encode(x, cond)
        return VAEOutput(self.decode(mu).recon, mu, logvar, mu)


def _faces(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    images = 0.2 + 0.6 * torch.rand(n, 3, 16, 16)
    parts = torch.ones(n, 16, 16, dtype=torch.long)  # skin
    parts[:, 8:, 8:] = 10  # mouth: the bottom-right quadrant
    parts[:, :8, :8] = 4  # eyes: the top-left quadrant
    return images, parts


def test_parse_layers_words_and_names() -> None:
    model = QuadrantVAE()
    assert parse_layers(model, None).layers == ["encoder.blocks.1"]  # the paper's layer
    assert parse_layers(model, "all").layers == ["encoder.blocks.0", "encoder.blocks.1"]
    req = parse_layers(model, ["encoder.blocks.1", "fusion", "auto", "encoder.blocks.1"])
    assert req.layers == ["encoder.blocks.1", FUSION] and req.auto
    assert parse_layers(model, ["auto"]).layers == [] and parse_layers(model, "auto").auto
    assert fusion_layers(model) == ["encoder.blocks.0", "encoder.blocks.1"]  # sizes unknown
    with pytest.raises(InputError, match="Did you mean: encoder.blocks.0"):
        parse_layers(model, ["encoder.block.0"])


def test_fusion_layers_keep_8x8_and_up_plus_the_last() -> None:
    model = build_model(
        model_config(
            kind="vae",
            image_size=32,
            latent_dim=4,
            num_layers=4,
            base_channels=4,
            max_channels=8,
            min_feature_size=2,
        )
    )
    sides = [s.size for s in model.encoder_shapes()]
    assert sides == [16, 8, 4, 2]
    assert fusion_layers(model) == ["encoder.blocks.0", "encoder.blocks.1", "encoder.blocks.3"]


def test_fused_cams_equal_fusion_of_each_layer() -> None:
    model = QuadrantVAE()
    images, _ = _faces(2)
    fused = fused_cams(model, images, units=[0, 1])
    per_layer = [
        latent_cams(model, images, units=[0, 1], layer=n).maps for n in fusion_layers(model)
    ]
    torch.testing.assert_close(fused, fuse_maps(per_layer, 16))
    # block 1's maps are constant (-> 0), so the fusion is half of block 0's normalised map
    quadrant = torch.zeros(16, 16)
    quadrant[8:, 8:] = 1.0
    assert float(fused[:, 0][:, quadrant == 0].abs().max()) == 0.0
    assert float(fused[:, 0][:, quadrant == 1].max()) == pytest.approx(0.5)


def test_choose_layer_picks_the_layer_that_localises() -> None:
    model = QuadrantVAE()
    images, parts = _faces()
    choice = choose_layer(
        model, images, parts=parts, candidates=["encoder.blocks.0", "encoder.blocks.1"]
    )
    assert choice.layer == "encoder.blocks.0" and choice.method == "gradcam"
    good, paper = choice.scores["encoder.blocks.0"], choice.scores["encoder.blocks.1"]
    # at 16x16 each unit's map is exactly its quadrant's grey level: all energy in the part,
    # always pointing into it; the part is a quarter of the image
    assert good["energy_in_part"] == pytest.approx(1.0)
    assert good["pointing_game"] == 1.0 and good["chance"] == pytest.approx(0.25)
    # the paper's layer is 1x1: a constant map (energy = area share) whose argmax is the
    # first pixel, which is in unit 1's part (top-left) and not in unit 0's (bottom-right)
    assert paper["energy_in_part"] == pytest.approx(0.25)
    assert paper["pointing_game"] == pytest.approx(0.5)
    assert good["mean_rank"] == 1.0 and paper["mean_rank"] == 2.0
    assert "encoder.blocks.0 (16x16, gradcam): pointing 1.00 vs chance 0.25" in choice.reason
    assert "the paper's encoder.blocks.1" in choice.reason
    # without part masks: the Spearman agreement with the effect maps decides
    blind = choose_layer(model, images, candidates=["encoder.blocks.1", "encoder.blocks.0"])
    assert blind.layer == "encoder.blocks.0"
    assert "agreement with effect maps" in blind.reason


def test_localisation_scores_by_hand() -> None:
    cams = torch.tensor([[[[0.0, 1.0], [0.0, 3.0]]]])  # (1, 1, 2, 2)
    effects = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    parts = torch.tensor([[[1, 1], [10, 10]]])  # bottom row is the mouth
    sc = localisation_scores(cams, effects, parts, ["mouth"], decoder=effects)
    assert float(sc["energy_in_part"][0]) == pytest.approx(0.75)
    assert float(sc["pointing_game"][0]) == 1.0 and float(sc["chance"][0]) == 0.5
    # ranks of cams (ties averaged): 1.5, 3, 1.5, 4; of effects 1, 2, 3, 4
    expected = torch.corrcoef(torch.tensor([[1.5, 3, 1.5, 4], [1.0, 2, 3, 4]]))[0, 1]
    assert float(sc["spearman_cam_effect"][0]) == pytest.approx(float(expected), abs=1e-6)
    assert float(sc["spearman_cam_decoder"][0]) == pytest.approx(float(expected), abs=1e-6)


def test_pick_best_mean_rank_and_tie_break() -> None:
    rows = [
        ComparisonRow("a", "gradcam", [4, 4], 0.3, 0.2, 0.1, 0.5),  # ranks 3, 2, 1
        ComparisonRow("b", "gradcam", [8, 8], 0.5, 0.5, 0.1, 0.2),  # ranks 1, 1, 3
        ComparisonRow("c", "gradcam", [16, 16], 0.4, 0.1, 0.1, 0.4),  # ranks 2, 3, 2
    ]
    choice = pick_best(rows, has_parts=True, paper_layer="a")
    assert choice.layer == "b" and choice.scores["b"]["mean_rank"] == pytest.approx(5 / 3)
    assert "the paper's a (4x4, gradcam)" in choice.reason
    assert pick_best(rows, has_parts=False).layer == "a"


def test_cam_bank_reuses_maps() -> None:
    model = QuadrantVAE()
    images, _ = _faces(3)
    bank = CamBank(model, images, None)
    first = bank.layer_maps("encoder.blocks.0", "gradcam")
    assert bank.layer_maps("encoder.blocks.0", "gradcam") is first
    assert bank.map_size("encoder.blocks.0") == [16, 16] and bank.map_size(FUSION) == [16, 16]
    assert bank.image_maps("encoder.blocks.1", "gradcam", [1]).shape == (3, 1, 16, 16)


def _tiny_vae(head: str) -> nn.Module:
    """A seeded 16 px VAE with three blocks and the given mu head."""
    torch.manual_seed(0)
    return build_model(
        model_config(
            kind="vae",
            image_size=16,
            latent_dim=3,
            num_layers=3,
            base_channels=4,
            max_channels=8,
            head=head,
            head_hidden=8,
        )
    )


def test_bank_shares_one_gradient_pass_between_methods() -> None:
    model = _tiny_vae("mlp")
    images = torch.rand(3, 3, 16, 16)
    bank = CamBank(model, images, None)
    methods = ["gradcam", "layercam", "hirescam"]
    bank.prefetch("encoder.blocks.0", methods)
    for method in methods:
        expected = latent_cams(model, images, layer="encoder.blocks.0", method=method).maps
        torch.testing.assert_close(bank.layer_maps("encoder.blocks.0", method), expected)


@pytest.mark.parametrize("head", ["mlp", "linear"])
def test_bank_shares_one_gradient_pass_between_layers(head: str) -> None:
    """One forward and one backward for every layer: the same maps as one pass per layer
    (mlp: every layer takes the backward; linear: the last layer takes the affine shortcut)."""
    model = _tiny_vae(head)
    images = torch.rand(3, 3, 16, 16)
    layers = ["encoder.blocks.2", "encoder.blocks.0", "encoder.blocks.1"]
    methods = ["gradcam", "layercam", "hirescam"]
    bank = CamBank(model, images, None)
    bank.prefetch_layers(layers, methods)
    for layer in layers:
        for method in methods:
            expected = latent_cams(model, images, layer=layer, method=method).maps
            torch.testing.assert_close(bank.layer_maps(layer, method), expected)
