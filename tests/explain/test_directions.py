"""Latent directions: the engine on mu . w by hand, the finders against NumPy and planted
directions, the file round trip, effect maps and traversals along directions, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from latentcam.concepts import cell_chance, score_directions
from latentcam.config import model_config
from latentcam.errors import InputError
from latentcam.explain.cam import compute_cams, compute_cams_by_method, latent_cams
from latentcam.explain.directions import (
    ATTRIBUTE_PARTS,
    DirectionSet,
    attribute_directions,
    factor_directions,
    factor_parts,
    first_linear_weight,
    jacobian_directions,
    make_direction,
    mean_difference,
    part_ids,
    pca_directions,
    random_directions,
    read_vectors,
    sefa_directions,
    unit_direction,
)
from latentcam.explain.targets import CustomTarget, LatentDirection, direction_targets
from latentcam.explain.traversal import effect_maps, traverse, traverse_directions
from latentcam.models.base import Decoded, GenerativeModel, VAEOutput
from latentcam.models.registry import build_model


class LinearEncoder(nn.Module):
    """conv 3x3 -> A (B, C, h, w) -> flatten -> Linear: mu = W vec(A) + b."""

    explain_layer = "conv"

    def __init__(self, channels: int = 3, size: int = 4, latent: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, channels, 3, padding=1)
        self.fc = nn.Linear(channels * size * size, latent)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> VAEOutput:
        mu = self.fc(self.conv(x).flatten(1))
        return VAEOutput(recon=None, mu=mu, logvar=torch.zeros_like(mu), z=mu)


def _tiny_vae(**overrides: object) -> GenerativeModel:
    fields: dict = dict(
        kind="vae", image_size=16, latent_dim=4, num_layers=3, base_channels=4, max_channels=8
    )
    fields.update(overrides)
    torch.manual_seed(0)
    return build_model(model_config(**fields))


# ----------------------------------------------------------------------------- the engine


def test_direction_map_by_hand_on_a_linear_encoder() -> None:
    torch.manual_seed(0)
    model = LinearEncoder()
    x = torch.randn(2, 2, 4, 4)
    w = torch.tensor([0.5, -1.0, 0.0, 2.0, 0.25])
    results = compute_cams_by_method(
        model, x, [LatentDirection(w, "d")], methods=("gradcam", "hirescam", "layercam")
    )
    acts = model.conv(x).detach().numpy()  # (B, C, h, w)
    jac = model.fc.weight.detach().numpy().reshape(5, 3, 4, 4)  # d mu_k / dA
    grad = np.einsum("k,kchw->chw", w.numpy(), jac)  # d (mu . w) / dA = sum_k w_k d mu_k / dA
    expected = {
        "gradcam": np.maximum(np.einsum("c,bchw->bhw", grad.mean(axis=(1, 2)), acts), 0),
        "hirescam": np.maximum(np.einsum("chw,bchw->bhw", grad, acts), 0),
        "layercam": np.maximum(np.einsum("chw,bchw->bhw", np.maximum(grad, 0), acts), 0),
    }
    for method, maps in expected.items():
        np.testing.assert_allclose(results[method].maps[:, 0].numpy(), maps, rtol=1e-5, atol=1e-6)
    assert results["gradcam"].target_names == ["d"]


def test_direction_gradient_is_the_weighted_sum_of_unit_gradients() -> None:
    torch.manual_seed(1)
    model = _tiny_vae(head="mlp", head_hidden=8)  # nonlinear head: the batched backward
    x = torch.rand(3, 3, 16, 16)
    w = torch.randn(4)
    layer = "encoder.blocks.1"
    direction = compute_cams(
        model, x, [LatentDirection(w, "d")], layer=layer, method="hirescam", post="none"
    ).maps[:, 0]
    units = latent_cams(model, x, layer=layer, method="hirescam", post="none").maps  # (B, K, h, w)
    # HiResCAM without the post-op is linear in the gradient: sum_k w_k map_k
    np.testing.assert_allclose(
        direction.numpy(), torch.einsum("k,bkhw->bhw", w, units).numpy(), rtol=1e-4, atol=1e-6
    )
    # the affine shortcut (linear head) and the general backward give the same maps
    linear = _tiny_vae()
    fast = compute_cams(linear, x, [LatentDirection(w, "d")], method="layercam").maps
    slow = compute_cams(linear, x, [CustomTarget(lambda o: o.mu @ w)], method="layercam").maps
    np.testing.assert_allclose(fast.numpy(), slow.numpy(), rtol=1e-4, atol=1e-6)


def test_direction_of_the_wrong_width_is_one_clear_error() -> None:
    model = _tiny_vae()
    with pytest.raises(InputError, match="has 3 components; this model's mu has K=4"):
        compute_cams(model, torch.rand(1, 3, 16, 16), [LatentDirection(torch.ones(3), "x")])
    with pytest.raises(InputError, match="finite"):
        LatentDirection(torch.tensor([1.0, float("nan")]), "x")


# ----------------------------------------------------------------------------- finders


def test_probe_recovers_a_planted_direction_with_rare_positives() -> None:
    gen = torch.Generator().manual_seed(0)
    K, N = 8, 3000
    scales = torch.tensor([3.0, 0.5, 1.0, 2.0, 0.2, 1.0, 1.5, 0.7])
    mu = torch.randn(N, K, generator=gen) * scales
    planted = torch.tensor([1.0, 0.0, -2.0, 0.5, 0.0, 0.0, 1.0, 0.0])
    planted = planted / planted.norm()
    score = mu @ planted + 0.2 * torch.randn(N, generator=gen)
    labels = (score > torch.quantile(score, 0.9)).float()[:, None]  # 10% positives
    found = attribute_directions(mu[:2000], labels[:2000], mu[2000:], labels[2000:], ["Smiling"])
    d = found["Smiling"]
    assert float(d.vector @ planted) > 0.97
    assert d.scores["auroc"] > 0.97
    assert d.scores["n_pos"] == int(labels[:2000].sum())
    assert d.parts == ATTRIBUTE_PARTS["Smiling"]
    assert d.scale == pytest.approx(float((mu[:2000] @ d.vector).std()), rel=1e-4)


def test_the_pattern_says_what_moves_with_the_score() -> None:
    """Haufe et al. 2014: a = Cov(mu) w / (w^T Cov(mu) w); z + t * sd * a moves the score by
    t data SDs. A probe that cancels a nuisance points off the data; its pattern does not."""
    gen = torch.Generator().manual_seed(3)
    N = 4000
    concept = torch.randn(N, generator=gen)
    nuisance = torch.randn(N, generator=gen)
    # unit 0 carries concept + nuisance, unit 1 the nuisance alone, unit 2 noise
    mu = torch.stack([concept + nuisance, nuisance, 0.1 * torch.randn(N, generator=gen)], dim=1)
    d = make_direction("c", [1.0, -1.0, 0.0], "attribute", mu=mu)  # the filter: unit 0 - unit 1
    cov = torch.cov(mu.T.double())
    w = d.vector.double()
    expected = cov @ w / (w @ cov @ w)
    np.testing.assert_allclose(d.pattern.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    assert float(d.pattern.double() @ w) == pytest.approx(1.0, abs=1e-5)  # one score unit
    np.testing.assert_allclose(d.displacement.numpy(), (d.scale * d.pattern).numpy())
    # the concept moves unit 0 only: the pattern is (1, 0, 0) up to the norm of w
    np.testing.assert_allclose(d.pattern.numpy() / d.pattern.norm().item(), [1, 0, 0], atol=0.03)
    # a principal component's pattern is the component itself; a unit moves alone
    pc = pca_directions(mu, k=1).directions[0]
    np.testing.assert_allclose(pc.displacement.numpy(), (pc.scale * pc.vector).numpy(), atol=1e-4)
    assert unit_direction(1, 3, mu=mu).pattern is None


def test_attribute_directions_skip_and_refuse_with_reasons() -> None:
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(200, 4, generator=gen)
    labels = torch.zeros(200, 2)
    labels[::2, 0] = 1
    labels[:3, 1] = 1  # 3 positives: too few
    found = attribute_directions(mu[:150], labels[:150], mu[150:], labels[150:], ["A", "B"])
    assert found.names == ["A"] and "too few" in found.skipped["B"]
    with pytest.raises(InputError, match="attribute 'B' has too few positives"):
        attribute_directions(
            mu[:150], labels[:150], mu[150:], labels[150:], ["A", "B"], required=["B"]
        )
    with pytest.raises(InputError, match="unknown attribute 'Smilin'"):
        attribute_directions(
            mu[:150], labels[:150], mu[150:], labels[150:], ["A", "B"], required=["Smilin"]
        )


def test_factor_regression_recovers_the_factor_axis() -> None:
    gen = torch.Generator().manual_seed(2)
    mu = torch.randn(1000, 6, generator=gen)
    axis = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 0.0]) / 2**0.5
    factor = (mu @ axis)[:, None] + 0.1 * torch.randn(1000, 1, generator=gen)
    found = factor_directions(mu[:800], factor[:800], mu[800:], factor[800:], ["smile"])
    assert float(found["smile"].vector @ axis) > 0.99
    assert found["smile"].scores["r2"] > 0.95
    assert found["smile"].parts == ("mouth", "u_lip", "l_lip")


def test_pca_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5))
    found = pca_directions(torch.from_numpy(mu), k=3)
    values, vectors = np.linalg.eigh(np.cov(mu.T))
    order = np.argsort(values)[::-1][:3]
    for i, j in enumerate(order):
        assert abs(
            float(found.vectors[i].double() @ torch.from_numpy(vectors[:, j]))
        ) == pytest.approx(1.0, abs=1e-5)
        assert found.directions[i].scores["explained_variance"] == pytest.approx(
            values[j] / values.sum(), rel=1e-5
        )
        assert found.directions[i].scale == pytest.approx(np.sqrt(values[j]), rel=1e-3)


def test_sefa_matches_numpy_and_reads_the_decoder_stem() -> None:
    rng = np.random.default_rng(1)
    W = rng.normal(size=(12, 4))
    found = sefa_directions(torch.from_numpy(W), k=2)
    values, vectors = np.linalg.eigh(W.T @ W)
    for i, j in enumerate(np.argsort(values)[::-1][:2]):
        assert abs(
            float(found.vectors[i].double() @ torch.from_numpy(vectors[:, j]))
        ) == pytest.approx(1.0, abs=1e-5)
    model = _tiny_vae()
    weight = first_linear_weight(model, 4)
    assert weight is not None
    np.testing.assert_allclose(weight.numpy(), model.decoder.stem.weight.detach().numpy()[:, :4])
    spatial = _tiny_vae(bottleneck="spatial", latent_dim=2)
    assert first_linear_weight(spatial, spatial.latent_dim) is None  # decoder starts with a conv


class LinearDecoder(nn.Module):
    """decode(z) = reshape(W z): its Jacobian is W for every z."""

    latent_dim = 3
    cond_dim = 0

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> Decoded:
        return Decoded(recon=(z @ self.weight.T).view(-1, 3, 2, 2))


def test_jacobian_directions_of_a_linear_decoder_are_sefa_directions() -> None:
    torch.manual_seed(0)
    W = torch.randn(12, 3)
    model = LinearDecoder(W)
    found = jacobian_directions(model, torch.randn(5, 3), k=3)
    sefa = sefa_directions(W, k=3)
    for a, b in zip(found.vectors, sefa.vectors, strict=True):
        assert float(a @ b) == pytest.approx(1.0, abs=1e-4)  # same sign convention too


def test_mean_difference_and_unit_direction() -> None:
    a = torch.tensor([[1.0, 2.0], [3.0, 2.0]])
    b = torch.tensor([[0.0, 2.0], [0.0, 2.0]])
    d = mean_difference(a, b, "smile", parts=("mouth",))
    np.testing.assert_allclose(d.vector.numpy(), [1.0, 0.0])
    assert d.scores == {"auroc": 1.0, "n_with": 2, "n_without": 2}
    with pytest.raises(InputError, match="needs images with and without"):
        mean_difference(torch.zeros(0, 2), b)
    with pytest.raises(InputError, match="the same mean"):
        mean_difference(b, b)
    u = unit_direction(1, 3, sign=-1)
    assert u.vector.tolist() == [0.0, -1.0, 0.0] and u.kind == "unit"


# ----------------------------------------------------------------------------- files


def test_directions_file_round_trips_without_pickle(tmp_path) -> None:
    mu = torch.randn(50, 3)
    found = DirectionSet(
        [
            make_direction(
                "Smiling",
                [1.0, 2.0, 2.0],
                "attribute",
                mu=mu,
                parts=("mouth",),
                scores={"auroc": 0.9, "n_pos": 12},
            ),
            make_direction("pca_0", [0.0, 0.0, 1.0], "pca", scores={"explained_variance": 0.5}),
        ],
        3,
        {"run": "r"},
        {"Bald": "too few positives"},
    )
    path = found.save(tmp_path / "directions.npz")
    with np.load(path, allow_pickle=False) as arrays:
        assert set(arrays.files) == {"vectors", "patterns", "scales", "names", "kinds", "meta"}
        assert json.loads(str(arrays["meta"]))["format"] == "latentcam.directions/1"
    back = DirectionSet.load(path)
    assert back.names == ["Smiling", "pca_0"] and back.latent_dim == 3
    np.testing.assert_allclose(back.vectors.numpy(), found.vectors.numpy())
    np.testing.assert_allclose(back.scales.numpy(), found.scales.numpy())
    assert back["Smiling"].parts == ("mouth",) and back["Smiling"].scores["n_pos"] == 12
    assert back["pca_0"].kind == "pca" and back.skipped == {"Bald": "too few positives"}
    np.testing.assert_allclose(back.displacements.numpy(), found.displacements.numpy(), rtol=1e-6)
    assert back.meta["run"] == "r"
    assert float(back["Smiling"].vector.norm()) == pytest.approx(1.0)
    assert read_vectors(path, 3).names == ["Smiling", "pca_0"]
    with pytest.raises(InputError, match="for K=3 latent units; this model has K=4"):
        read_vectors(path, 4)


def test_user_vector_files(tmp_path) -> None:
    np.save(tmp_path / "v.npy", np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    assert read_vectors(tmp_path / "v.npy", 3).names == ["v_0", "v_1"]
    (tmp_path / "smile.json").write_text(json.dumps({"smile": [0, 0, 2]}))
    got = read_vectors(tmp_path / "smile.json", 3)
    assert got.names == ["smile"] and got["smile"].vector.tolist() == [0.0, 0.0, 1.0]
    (tmp_path / "one.txt").write_text("1, 2, 3\n")
    assert read_vectors(tmp_path / "one.txt", 3).names == ["one"]
    with pytest.raises(InputError, match="has 3 components; this model has K=4"):
        read_vectors(tmp_path / "one.txt", 4)
    (tmp_path / "bad.txt").write_text("1 nan 3\n")
    with pytest.raises(InputError, match="NaN or Inf"):
        read_vectors(tmp_path / "bad.txt", 3)
    (tmp_path / "zero.txt").write_text("0 0 0\n")
    with pytest.raises(InputError, match="points nowhere"):
        read_vectors(tmp_path / "zero.txt", 3)
    with pytest.raises(InputError, match="no directions file"):
        read_vectors(tmp_path / "missing.npy", 3)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a latentcam directions file"):
        DirectionSet.load(tmp_path / "junk.npz")


def test_parts_tables() -> None:
    assert part_ids(("mouth", "u_lip")) == (10, 11)
    with pytest.raises(InputError, match="unknown face part 'lips'"):
        part_ids(("lips",))
    table = factor_parts()
    assert table["glasses"] == ("eye_g",) and table["hat"] == ("hat",)
    assert "yaw" not in table and "light_direction" not in table  # everywhere: no part


# ----------------------------------------------------------------------------- effects, traversals


def test_effect_maps_and_traversals_along_unit_directions_equal_the_unit_ones() -> None:
    model = _tiny_vae()
    x = torch.rand(2, 3, 16, 16)
    mu = model.encode(x)[0].detach()
    one_hot = torch.eye(4)[[1, 3]]
    np.testing.assert_allclose(
        effect_maps(model, mu, directions=one_hot).numpy(),
        effect_maps(model, mu, units=[1, 3]).numpy(),
        rtol=1e-6,
    )
    by_unit = traverse(model, x, [1, 3], mode="sigma")
    by_direction = traverse_directions(model, x, one_hot, ["a", "b"])
    for field in ("images", "heatmaps", "effects"):
        np.testing.assert_allclose(
            getattr(by_direction, field).numpy(),
            getattr(by_unit, field).numpy(),
            rtol=1e-5,
            atol=1e-7,
        )
    assert by_direction.mode == "direction" and by_direction.names == ("a", "b")
    # a scale stretches the steps: 2 x sigma-steps of 1 == 1 x sigma-steps of 2
    stretched = traverse_directions(model, x, one_hot, ["a", "b"], scales=[2.0, 2.0], steps=[1.0])
    doubled = traverse_directions(model, x, one_hot, ["a", "b"], steps=[2.0])
    np.testing.assert_allclose(
        stretched.images.numpy(), doubled.images.numpy(), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(InputError, match=r"directions must be \(T, 4\)"):
        effect_maps(model, mu, directions=torch.ones(2, 3))


def test_cell_chance_by_hand() -> None:
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, :2, :2] = True  # the top-left 2x2 pixels: area share 4/64
    assert float(cell_chance(mask, (8, 8))[0]) == pytest.approx(4 / 64)
    assert float(cell_chance(mask, (4, 4))[0]) == pytest.approx(1 / 16)  # centre (1, 1) is in
    assert float(cell_chance(mask, (2, 2))[0]) == 0.0  # centres (2, 2) ... miss the corner


class RegionEncoder(GenerativeModel):
    """mu_0 = mean of the image over a 4x4 box at rows 8-11, cols 4-7; mu_1 over the
    opposite corner. Its layer A is the image itself, so a direction's HiResCAM map is
    w-weighted box indicators times the image."""

    explain_layer = "layer"
    latent_dim = 2

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Identity()
        weight = torch.zeros(2, 3, 16, 16)
        weight[0, :, 8:12, 4:8] = 1.0 / 48
        weight[1, :, 0:4, 12:16] = 1.0 / 48
        self.weight = nn.Parameter(weight)

    def encode(self, x: torch.Tensor, cond: torch.Tensor | None = None):
        mu = torch.einsum("kchw,bchw->bk", self.weight, self.layer(x))
        return mu, torch.zeros_like(mu)

    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> Decoded:
        return Decoded(recon=torch.einsum("bk,kchw->bchw", z, self.weight * 48).clamp(0, 1))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> VAEOutput:
        mu, logvar = self.encode(x)
        return VAEOutput(self.decode(mu).recon, mu, logvar, mu)


def test_score_directions_against_parts_by_hand() -> None:
    model = RegionEncoder()
    x = torch.full((3, 3, 16, 16), 0.5)
    parts = torch.zeros(3, 16, 16, dtype=torch.long)
    parts[:, 8:12, 4:8] = 10  # the mouth sits under unit 0's box
    parts[2] = 0  # no mouth on the last face: left out, counted
    found = DirectionSet(
        [
            make_direction("toward", [1.0, 0.0], "attribute", parts=("mouth",)),
            make_direction("away", [0.0, 1.0], "attribute", parts=("mouth",)),
        ],
        2,
    )
    scores = score_directions(model, x, None, parts, found, layers=["layer"], methods=["hirescam"])
    toward, away = (s.layers["layer"]["hirescam"] for s in scores)
    assert scores[0].faces == 2 and scores[0].faces_without_part == 1
    assert toward["pointing_game"] == 1.0 and toward["energy_in_part"] == pytest.approx(1.0)
    assert toward["chance"] == pytest.approx(16 / 256) and toward["cell_chance"] == pytest.approx(
        16 / 256
    )
    assert toward["effect_pointing"] == 1.0 and toward["spearman_cam_effect"] == pytest.approx(1.0)
    assert away["pointing_game"] == 0.0 and away["energy_in_part"] == 0.0
    assert scores[0].best_layer == "layer" and scores[0].best_method == "hirescam"
    # the null baseline, by hand: a random w hits the mouth when w_0 > max(w_1, 0); a map that
    # is zero everywhere (both negative) counts as chance (the area share)
    null = random_directions(2, 8).vectors
    w0, w1 = null[:, 0], null[:, 1]
    by_hand = torch.where((w0 <= 0) & (w1 <= 0), 16 / 256, ((w0 > 0) & (w0 > w1)).float())
    assert toward["random_pointing"] == pytest.approx(float(by_hand.mean()), abs=1e-6)
    assert toward["random_pointing"] == away["random_pointing"]


def test_direction_targets_need_one_name_per_row() -> None:
    with pytest.raises(InputError, match="one name per row"):
        direction_targets(torch.ones(2, 3), ["a"])
