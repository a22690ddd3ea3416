"""The attention-disentanglement term (Liu et al. 2020): maps, overlap, training option."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from latentcam.config import load_config
from latentcam.errors import ConfigError, InputError
from latentcam.explain.cam import latent_cams
from latentcam.models.registry import build_model
from latentcam.training.losses import attention_maps, attention_overlap
from latentcam.training.module import LatentcamModule
from latentcam.training.train import train


def _scaled(maps: torch.Tensor) -> torch.Tensor:
    return maps / (maps.flatten(2).amax(-1)[..., None, None] + 1e-6)


def test_attention_maps_of_a_linear_encoder_by_hand() -> None:
    torch.manual_seed(0)
    A = torch.randn(2, 3, 4, 4, requires_grad=True)
    W = torch.randn(5, 48)
    mu = A.flatten(1) @ W.T  # mu_k = <W_k, vec(A)>: d mu_k / dA = W_k
    alpha = W.view(5, 3, 4, 4).mean((-2, -1))  # Grad-CAM weights: spatial mean of W_k
    weighted = torch.einsum("kc,bchw->bkhw", alpha, A)[:, [0, 2, 4]]
    for post, expected in (("relu", torch.relu(weighted)), ("abs", weighted.abs())):
        maps = attention_maps(A, mu, torch.tensor([0, 2, 4]), post=post)
        torch.testing.assert_close(maps, _scaled(expected), rtol=1e-5, atol=1e-6)
        assert maps.requires_grad  # a loss on the maps trains A (and W through mu's graph)
    with pytest.raises(InputError, match="post 'sqrt'"):
        attention_maps(A, mu, torch.tensor([0]), post="sqrt")


def test_attention_maps_equal_the_engine_on_a_model() -> None:
    cfg = load_config(["tiny"], ["model.head=mlp"])  # a nonlinear path from A to mu
    model = build_model(cfg.model).eval()
    x = torch.rand(3, 3, 32, 32)
    feats: list[torch.Tensor] = []
    layer = model.get_submodule(model.explain_layer)
    handle = layer.register_forward_hook(lambda _m, _i, out: feats.append(out))
    mu = model(x).mu
    handle.remove()
    units = torch.tensor([1, 5, 6])
    for post in ("relu", "abs"):
        ours = attention_maps(feats[0], mu, units, post=post)
        engine = latent_cams(model, x, units=units.tolist(), post=post).maps  # gradcam
        torch.testing.assert_close(ours.detach(), _scaled(engine), rtol=1e-4, atol=1e-5)


def test_attention_overlap_by_hand() -> None:
    left = torch.zeros(1, 1, 2, 2)
    left[..., 0] = 1.0
    right = 1.0 - left
    assert attention_overlap(torch.cat([left, right], 1)).item() == pytest.approx(0.0)
    assert attention_overlap(torch.cat([left, left], 1)).item() == pytest.approx(1.0)
    half = torch.full((1, 1, 2, 2), 0.5)
    # inter = 4 * 0.5 * 1 * 0.5 (only the left column) = 1; union = 2 + 2 - 1 = 3
    assert attention_overlap(torch.cat([left, half], 1)).item() == pytest.approx(1 / 3)
    # three maps: pairs (l, r) = 0, (l, l) = 1, (r, l) = 0 -> mean 1/3
    assert attention_overlap(torch.cat([left, right, left], 1)).item() == pytest.approx(1 / 3)
    with pytest.raises(InputError, match="T >= 2"):
        attention_overlap(left)


def test_the_overlap_term_trains_maps_apart() -> None:
    cfg = load_config(["tiny"], [])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    layer = model.get_submodule(model.explain_layer)
    feats: list[torch.Tensor] = []
    layer.register_forward_hook(lambda _m, _i, out: feats.append(out))
    x = torch.rand(8, 3, 32, 32)
    units = torch.arange(cfg.model.latent_dim)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def overlap() -> torch.Tensor:
        feats.clear()
        mu = model(x).mu
        return attention_overlap(attention_maps(feats[0], mu, units))

    before = overlap().item()
    for _ in range(30):
        opt.zero_grad()
        loss = overlap()
        loss.backward()
        opt.step()
    assert overlap().item() < 0.5 * before


def test_training_with_the_attention_term_logs_it(_session_cache: Path, tmp_path: Path) -> None:
    cfg = load_config(
        ["tiny"],
        [
            f"data.cache_dir={_session_cache}",
            "data.synth_n=96",
            "train.attention_weight=5",
            "train.attention_units=4",
            "train.attention_layer=encoder.blocks.1",
        ],
    )
    result = train(cfg, tmp_path / "run", progress=False)
    rows = list(csv.DictReader(open(next((tmp_path / "run" / "logs").rglob("metrics.csv")))))
    values = [float(r["train/attention_overlap"]) for r in rows if r["train/attention_overlap"]]
    assert values and all(0.0 <= v <= 1.0 for v in values)
    assert result.metrics["global_step"] == cfg.train.max_steps


def test_attention_config_errors() -> None:
    with pytest.raises(ConfigError, match="train.attention_weight"):
        load_config(["tiny"], ["train.attention_weight=-1"])
    with pytest.raises(ConfigError, match="train.attention_post"):
        load_config(["tiny"], ["train.attention_post=square"])
    with pytest.raises(ConfigError, match="train.attention_units"):
        load_config(["tiny"], ["train.attention_weight=1", "train.attention_units=1"])
    cfg = load_config(
        ["tiny"], ["train.attention_weight=1", "train.attention_layer=encoder.blockz.1"]
    )
    with pytest.raises(ConfigError, match="train.attention_layer.*Did you mean"):
        LatentcamModule(cfg)
