"""Traversals and effect maps on a hand-made model whose units change known squares."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from latentcam.config import model_config
from latentcam.data.classes import ATTRIBUTE_NAMES
from latentcam.errors import InputError
from latentcam.explain.cam import latent_cams
from latentcam.explain.traversal import (
    LABEL_PX,
    PAPER_STEPS,
    SIGMA_STEPS,
    attribute_traversal,
    effect_maps,
    save_traversal,
    traverse,
)
from latentcam.models.base import Decoded, GenerativeModel, VAEOutput

SIZE, K = 16, 3


def _squares() -> torch.Tensor:
    squares = torch.zeros(K, SIZE, SIZE)
    squares[0, 10:14, 4:12] = 1  # unit 0: "mouth"
    squares[1, 6:9, 6:10] = 1  # unit 1: "nose"
    squares[2, 0:4, :] = 1  # unit 2: "hair"
    return squares


class SquareVAE(GenerativeModel):
    """conv encoder + linear mu head; decoder: unit k adds 0.05 * z_k on square k only.

    With ``cond_dim`` = 2 it is a CVAE whose attribute a adds 0.2 * cond_a on square a.
    """

    explain_layer = "conv"

    def __init__(self, cond_dim: int = 0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.cond_dim = cond_dim
        self.conv = nn.Conv2d(3 + cond_dim, 4, 3, stride=2, padding=1)  # -> (4, 8, 8)
        self.mu_head = nn.Linear(4 * 8 * 8, K)
        self.logvar_head = nn.Linear(4 * 8 * 8, K)
        self.register_buffer("squares", _squares())

    def encode(self, x, cond=None):
        if self.cond_dim:
            x = torch.cat([x, cond[:, :, None, None].expand(-1, -1, SIZE, SIZE)], 1)
        flat = torch.relu(self.conv(x)).flatten(1)
        return self.mu_head(flat), self.logvar_head(flat)

    def decode(self, z, cond=None) -> Decoded:
        image = 0.5 + 0.05 * torch.einsum("bk,khw->bhw", z, self.squares)
        if self.cond_dim:
            image = image + 0.2 * torch.einsum("ba,ahw->bhw", cond, self.squares[: self.cond_dim])
        return Decoded(recon=image.unsqueeze(1).expand(-1, 3, -1, -1))

    def forward(self, x, cond=None) -> VAEOutput:
        mu, logvar = self.encode(x, cond)
        return VAEOutput(recon=self.decode(mu, cond).recon, mu=mu, logvar=logvar, z=mu)


def _images(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def test_traverse_paper_steps_shapes_effects_and_heatmaps():
    model = SquareVAE().train()
    x = _images()
    trav = traverse(model, x, units=[2, 0])
    assert model.training  # mode restored
    S = len(PAPER_STEPS)
    assert trav.mode == "additive" and trav.layer == "conv" and trav.method == "gradcam"
    assert trav.units.tolist() == [2, 0]
    assert torch.allclose(trav.steps, torch.tensor(PAPER_STEPS))
    assert trav.images.shape == (2, 2, S, 3, SIZE, SIZE)
    assert trav.heatmaps.shape == (2, 2, S, 8, 8)
    assert trav.effects.shape == (2, 2, S, SIZE, SIZE)
    squares = _squares()
    for j, k in enumerate([2, 0]):
        for s, step in enumerate(PAPER_STEPS):
            expected = 0.05 * step * squares[k]  # only unit k's square changes
            assert torch.allclose(trav.effects[:, j, s], expected.expand(2, -1, -1), atol=1e-6)
    # the paper's "heatmap for each iteration": unit k's map on the decoded image, re-encoded
    b, j, s = 1, 1, 4
    oracle = latent_cams(model, trav.images[b, j, s][None], units=[0]).maps[0, 0]
    assert torch.allclose(trav.heatmaps[b, j, s], oracle, atol=1e-5)


def test_sigma_mode_defaults_and_step_zero():
    model = SquareVAE()
    x = _images()
    sigma = traverse(model, x, units=[1], mode="sigma")
    assert sigma.steps.tolist() == list(SIGMA_STEPS)
    zero = SIGMA_STEPS.index(0.0)
    assert torch.count_nonzero(sigma.effects[:, 0, zero]) == 0
    # the prior is N(0, I): a step of s SDs is a step of s latent units
    additive = traverse(model, x, units=[1], steps=SIGMA_STEPS, mode="additive")
    assert torch.allclose(sigma.images, additive.images)
    peak = sigma.effects[:, 0, -1]  # +3 SD: 0.15 on the nose square, 0 elsewhere
    assert torch.allclose(peak, 0.15 * _squares()[1].expand(2, -1, -1), atol=1e-6)
    with pytest.raises(InputError, match="mode"):
        traverse(model, x, units=[1], mode="absolute")
    with pytest.raises(InputError, match="out of range"):
        traverse(model, x, units=[3])


def test_effect_maps_symmetric_and_one_sided():
    model = SquareVAE()
    mu = torch.randn(4, K)
    both = effect_maps(model, mu, delta=2.0, chunk_size=5)  # chunks cut across images
    assert both.shape == (4, K, SIZE, SIZE)
    assert torch.allclose(both, 0.2 * _squares().expand(4, -1, -1, -1), atol=1e-6)
    one = effect_maps(model, mu, units=[1], delta=2.0, symmetric=False)
    assert torch.allclose(one, both[:, 1:2] / 2, atol=1e-6)


def test_attribute_traversal_of_a_cvae():
    model = SquareVAE(cond_dim=2)
    x = _images()
    cond = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    trav = attribute_traversal(model, x, cond, attrs=[1], steps=[0.0, 1.0])
    assert trav.mode == "attribute" and trav.units.tolist() == [1]
    assert trav.images.shape == (2, 1, 2, 3, SIZE, SIZE)
    nose = _squares()[1]
    # image 0 has attribute 1 off: step 0 changes nothing, step 1 adds 0.2 on square 1
    assert torch.count_nonzero(trav.effects[0, 0, 0]) == 0
    assert torch.allclose(trav.effects[0, 0, 1], 0.2 * nose, atol=1e-6)
    # image 1 has it on: the reverse
    assert torch.allclose(trav.effects[1, 0, 0], 0.2 * nose, atol=1e-6)
    assert trav.heatmaps.shape == (2, 1, 2, 8, 8)
    changed = cond[:1].clone()
    changed[0, 1] = 1.0
    oracle = latent_cams(model, trav.images[0, 0, 1][None], cond=changed).maps.mean(1)[0]
    assert torch.allclose(trav.heatmaps[0, 0, 1], oracle, atol=1e-5)


def test_attribute_strips_are_named_by_attribute(tmp_path):
    model = SquareVAE(cond_dim=2)
    x = _images()
    cond = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    trav = attribute_traversal(model, x, cond, attrs=[1], steps=[0.0, 1.0])
    saved = save_traversal(trav, tmp_path / "attrs")
    assert [p.name for p in saved.strips] == [f"attr_{ATTRIBUTE_NAMES[1]}.png"]
    assert [p.name for p in saved.gifs] == [f"attr_{ATTRIBUTE_NAMES[1]}.gif"]


def test_save_traversal_writes_strips_gifs_and_arrays(tmp_path):
    model = SquareVAE()
    trav = traverse(model, _images(), units=[0, 2], steps=[0.0, 0.5, 1.0])
    saved = save_traversal(trav, tmp_path / "trav", image_index=1)
    assert [p.name for p in saved.strips] == ["unit_000.png", "unit_002.png"]
    assert [p.name for p in saved.gifs] == ["unit_000.gif", "unit_002.gif"]
    strip = Image.open(saved.strips[0])
    tile = SIZE * 8  # 16 px images are enlarged 8x for legibility
    grid = (3 * (tile + 2) + 2, 3 * (tile + 2) + 2)  # 3 steps x 3 rows
    band = 2 * LABEL_PX + 12  # the title and the step labels, in DejaVu Sans
    assert strip.size[1] == grid[1] + band
    assert strip.size[0] > grid[0] + 40  # a gutter for the row names and the effect's scale
    gif = Image.open(saved.gifs[1])
    assert gif.n_frames == 3 and gif.info.get("loop") == 0
    with np.load(saved.arrays) as arrays:
        assert arrays["units"].tolist() == [0, 2]
        assert str(arrays["mode"]) == "additive"
        assert arrays["images"].dtype == np.uint8
        assert arrays["images"].shape == (2, 2, 3, 3, SIZE, SIZE)
        assert np.allclose(arrays["effects"], trav.effects.numpy())
        assert np.allclose(arrays["heatmaps"], trav.heatmaps.numpy())
    assert not list((tmp_path / "trav").glob(".*"))  # no temporary files left
    with pytest.raises(InputError, match="image_index"):
        save_traversal(trav, tmp_path / "trav", image_index=2)


def test_on_real_tiny_models():
    registry = pytest.importorskip("latentcam.models.registry")
    vae = registry.build_model(
        model_config(kind="vae", image_size=16, latent_dim=4, num_layers=2, base_channels=4)
    )
    x = _images()
    trav = traverse(vae, x, units=[1, 3], steps=[0.0, 1.0])
    assert trav.images.shape == (2, 2, 2, 3, 16, 16)
    assert trav.layer == vae.explain_layer
    assert trav.images.min() >= 0 and trav.images.max() <= 1
    assert trav.effects[:, :, 0].max() < 1e-6  # float noise of decoding in other batch sizes
    assert trav.effects[:, :, 1].max() > 1e-3
    vae.eval()
    with torch.no_grad():
        mu = vae.encode(x)[0]
        shifted = mu.clone()
        shifted[:, 3] += 1.5
        oracle = (vae.decode(shifted).recon - vae.decode(mu).recon).abs().mean(1)
    one = effect_maps(vae, mu, units=[3], delta=1.5, symmetric=False)
    assert torch.allclose(one[:, 0], oracle, atol=1e-6)
    cvae = registry.build_model(
        model_config(
            kind="cvae", image_size=16, latent_dim=4, num_layers=2, base_channels=4, cond_dim=3
        )
    )
    cond = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    by_attr = attribute_traversal(cvae, x, cond, attrs=[0, 2], steps=[0.0, 1.0])
    assert by_attr.images.shape == (2, 2, 2, 3, 16, 16)
    assert by_attr.effects[0, :, 1].max() < 1e-6  # image 0 already has attributes 0 and 2
    assert by_attr.effects[1, :, 0].max() < 1e-6  # image 1 has neither
    assert by_attr.effects[1, :, 1].max() > 1e-4
    seg = registry.build_model(
        model_config(
            kind="segvae",
            image_size=16,
            latent_dim=4,
            num_layers=2,
            base_channels=4,
            seg_classes=19,
        )
    )
    seg_trav = traverse(seg, x, units=[0], steps=[0.0, 2.0])
    assert seg_trav.images.shape == (2, 1, 2, 3, 16, 16)  # class probabilities, painted
    assert seg_trav.heatmaps.shape[:3] == (2, 1, 2)
    assert torch.equal(seg_trav.heatmaps[:, :, 0], seg_trav.heatmaps[:, :, 1])  # the input's maps
    assert seg_trav.effects[:, :, 0].max() < 1e-6
