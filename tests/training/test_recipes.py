"""Every packaged recipe survives its first optimiser steps at its own learning rate.

The paper's ``segvae256`` has a linear latent head on a 32x32x128 map (131,072 inputs per
unit). Adam moves every weight by about ``lr`` per step whatever the gradient's size, so at
1e-3 mu and logvar jumped by about 60 per step and the run was NaN by its fourth step (on a
GPU and on the CPU alike). Each recipe here trains 5 steps with its own objective, learning
rate and model on 4 synthetic faces at its own image size.
"""

from __future__ import annotations

import math

import pytest
import torch

from latentcam.config import load_config, recipe_names
from latentcam.data.classes import binary_mask
from latentcam.data.synthetic import render_faces
from latentcam.training import losses
from latentcam.training.module import LatentcamModule, seg_target_is_binary

STEPS = 5


def synthetic_batch(size: int, binary: bool) -> dict[str, torch.Tensor]:
    faces = render_faces(4, size, seed=0)
    parts = binary_mask(faces.parts) if binary else faces.parts
    return {
        "image": torch.from_numpy(faces.images).permute(0, 3, 1, 2).float() / 255.0,
        "attrs": torch.from_numpy(faces.attrs > 0).float(),
        "parts": torch.from_numpy(parts).long(),
    }


@pytest.mark.parametrize("recipe", [r for r in recipe_names() if r != "tiny"])
def test_recipe_first_steps_stay_finite(recipe: str) -> None:
    cfg = load_config([recipe])
    torch.manual_seed(0)
    module = LatentcamModule(cfg)
    binary = cfg.model.kind == "segvae" and seg_target_is_binary(cfg)
    batch = synthetic_batch(cfg.model.image_size, binary)
    optimiser = module.configure_optimizers()
    for step in range(STEPS):
        out = module(batch)
        kl_w = losses.kl_weight(step, cfg.train.beta, cfg.train.kl_warmup_steps)
        terms = module.loss_terms(batch, out, kl_w)
        assert math.isfinite(float(terms.total.detach())), f"{recipe}: loss {terms} at step {step}"
        assert math.isfinite(float(terms.kl.detach())), f"{recipe}: KL {terms.kl} at step {step}"
        optimiser.zero_grad()
        terms.total.backward()
        optimiser.step()
