"""Our own models satisfy the model protocol, and its helpers read their capabilities."""

from __future__ import annotations

import math

import pytest
import torch

import latentcam
from latentcam.config import model_config
from latentcam.errors import InputError
from latentcam.models.base import GenerativeModel
from latentcam.models.protocol import (
    IMAGE,
    SEGMENTATION,
    LatentModel,
    check_model,
    has_image_output,
    has_seg_output,
    is_conditional,
    is_spatial,
)
from latentcam.models.registry import build_model, capabilities_of

#: The fields each model kind adds to the shared ones, in these tests' tiny models.
KIND_FIELDS: dict[str, dict[str, object]] = {"cvae": {"cond_dim": 3}, "segvae": {"seg_classes": 19}}


def _model(kind: str, **overrides: object) -> GenerativeModel:
    fields: dict = dict(
        kind=kind,
        image_size=16,
        latent_dim=4,
        num_layers=3,
        base_channels=4,
        max_channels=8,
    )
    fields.update(KIND_FIELDS.get(kind, {}))  # what each kind adds to the shared fields
    fields.update(overrides)
    torch.manual_seed(0)
    return build_model(model_config(**fields))


@pytest.mark.parametrize(
    ("kind", "overrides", "outputs", "conditional", "shape"),
    [
        ("vae", {}, {IMAGE}, False, (4,)),
        ("vae", {"bottleneck": "spatial", "min_feature_size": 4}, {IMAGE}, False, (4, 4, 4)),
        ("cvae", {}, {IMAGE}, True, (4,)),
        ("segvae", {}, {SEGMENTATION}, False, (4,)),
        ("segvae", {"seg_recon_image": True}, {SEGMENTATION, IMAGE}, False, (4,)),
    ],
)
def test_own_models_satisfy_the_protocol(
    kind: str, overrides: dict, outputs: set[str], conditional: bool, shape: tuple[int, ...]
) -> None:
    model = _model(kind, **overrides)
    assert isinstance(model, LatentModel)
    assert check_model(model) is model
    assert latentcam.adapt(model) is model  # our own models are returned as they are
    assert model.outputs == frozenset(outputs)
    assert has_image_output(model) == (IMAGE in outputs)
    assert has_seg_output(model) == (SEGMENTATION in outputs)
    assert is_conditional(model) == conditional
    assert model.latent_shape == shape and model.latent_dim == math.prod(shape)
    assert is_spatial(model) == (len(shape) == 3)
    assert model.image_size == 16
    assert model.explain_layer == model.encoder_layers()[-1]
    x = torch.rand(2, 3, 16, 16)
    cond = torch.ones(2, 3) if conditional else None
    mu, logvar = model.encode(x, cond)
    assert mu.shape == logvar.shape == (2, model.latent_dim)
    decoded = model.eval().decode(mu, cond)
    assert (decoded.recon is not None) == (IMAGE in outputs)
    assert (decoded.seg_logits is not None) == (SEGMENTATION in outputs)


def test_check_model_names_what_is_missing() -> None:
    with pytest.raises(InputError, match=r"Linear is not a latentcam model: it lacks encode, "):
        check_model(torch.nn.Linear(2, 2))


def test_adapt_refuses_another_size_for_our_model() -> None:
    with pytest.raises(InputError, match=r"built for 16x16 images, not 32x32"):
        latentcam.adapt(_model("vae"), image_size=32)


@pytest.mark.parametrize(
    ("kind", "overrides"),
    [
        ("vae", {}),
        ("vae", {"bottleneck": "spatial", "min_feature_size": 4}),
        ("cvae", {}),
        ("segvae", {}),
        ("segvae", {"seg_recon_image": True, "seg_classes": 1}),
    ],
)
def test_capabilities_of_a_config_are_the_built_models(kind: str, overrides: dict) -> None:
    model = _model(kind, **overrides)
    caps = capabilities_of(model.config)
    assert caps.latent_shape == model.latent_shape
    assert caps.latent_dim == model.latent_dim
    assert caps.cond_dim == model.cond_dim
    assert caps.outputs == model.outputs
    assert caps.seg_classes == getattr(model, "seg_classes", 0)
    for ask in (has_image_output, has_seg_output, is_conditional, is_spatial):
        assert ask(caps) == ask(model)
