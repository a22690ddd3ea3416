"""The CAM engine against hand-computed maps, captum's LayerGradCam, and its own contracts."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from latentcam.config import model_config
from latentcam.errors import InputError
from latentcam.explain.cam import (
    METHODS,
    affine_jacobian,
    cams_by_layer,
    compute_cams,
    latent_cams,
    mean_map,
    normalise,
    upsample,
)
from latentcam.explain.targets import CustomTarget, LatentSum, LatentUnit, SegClass
from latentcam.models.base import VAEOutput, resolve_layer
from latentcam.models.registry import build_model

# ----------------------------------------------------------------------------- tiny models


def _output(mu: torch.Tensor) -> VAEOutput:
    return VAEOutput(recon=None, mu=mu, logvar=torch.zeros_like(mu), z=mu)


class LinearEncoder(nn.Module):
    """conv 3x3 -> A (B, C, h, w) -> flatten -> Linear: mu = W vec(A) + b."""

    explain_layer = "conv"

    def __init__(self, channels: int = 3, size: int = 4, latent: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, channels, 3, padding=1)
        self.fc = nn.Linear(channels * size * size, latent)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> VAEOutput:
        return _output(self.fc(self.conv(x).flatten(1)))


class QuadraticHead(nn.Module):
    """A is the input itself; mu_k = 1/2 sum W_k * A^2, so dmu_k/dA = W_k * A (per image)."""

    explain_layer = "layer"

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.layer = nn.Identity()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> VAEOutput:
        acts = self.layer(x)
        return _output(0.5 * torch.einsum("kchw,bchw->bk", self.weight, acts * acts))


class GatedHead(nn.Module):
    """Affine in A *given* a scale computed from the image below the layer: not input-free."""

    explain_layer = "conv"

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 16, 4)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> VAEOutput:
        scale = x.mean(dim=(1, 2, 3))[:, None] * 3.0 + 1.0
        return _output(self.fc(self.conv(x).flatten(1)) * scale)


#: The fields each model kind adds to the shared ones, in these tests' tiny models.
KIND_FIELDS: dict[str, dict[str, object]] = {"cvae": {"cond_dim": 3}, "segvae": {"seg_classes": 19}}


def _tiny(kind: str = "vae", head: str = "linear", **overrides: object) -> nn.Module:
    fields: dict = dict(
        kind=kind,
        image_size=16,
        latent_dim=4,
        num_layers=3,
        base_channels=4,
        max_channels=8,
        head=head,
        head_hidden=8,
    )
    fields.update(KIND_FIELDS.get(kind, {}))  # what each kind adds to the shared fields
    fields.update(overrides)
    torch.manual_seed(0)
    return build_model(model_config(**fields))


def _batch(kind: str = "vae", n: int = 3) -> tuple[torch.Tensor, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, 16, 16, generator=gen)
    cond = torch.randint(0, 2, (n, 3), generator=gen).float() if kind == "cvae" else None
    return x, cond


# ----------------------------------------------------------------------------- by hand


def test_linear_encoder_matches_hand_computed_alpha_and_map() -> None:
    torch.manual_seed(0)
    model = LinearEncoder()
    x = torch.randn(2, 2, 4, 4)
    result = latent_cams(model, x)

    acts = model.conv(x).detach().numpy()  # (B, C, h, w)
    weight = model.fc.weight.detach().numpy().reshape(5, 3, 4, 4)  # (K, C, h, w)
    expected = np.zeros((2, 5, 4, 4), np.float32)
    for b in range(2):
        for k in range(5):
            alpha = weight[k].mean(axis=(1, 2))  # (C,): mean_pq dmu_k / dA_c^pq
            expected[b, k] = np.maximum((alpha[:, None, None] * acts[b]).sum(axis=0), 0.0)
    np.testing.assert_allclose(result.maps.numpy(), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        mean_map(result).numpy(), expected.mean(axis=1), rtol=1e-5, atol=1e-7
    )
    assert result.layer == "conv"
    assert result.target_names == [f"mu[{k}]" for k in range(5)]
    assert result.units is not None and result.units.tolist() == [0, 1, 2, 3, 4]
    assert result.maps.dtype == torch.float32


def _reference(method: str, grads: np.ndarray, acts: np.ndarray, post: str = "relu") -> np.ndarray:
    """Each method's definition, written out with NumPy for one image: grads, acts (C, h, w)."""
    if method == "gradcam":
        cam = (grads.mean(axis=(1, 2))[:, None, None] * acts).sum(0)
    elif method == "gradcam++":
        sum_acts = acts.sum(axis=(1, 2))[:, None, None]
        denom = 2 * grads**2 + sum_acts * grads**3 + 1e-6
        alpha = np.where(grads != 0, grads**2 / denom, 0.0)
        weights = (alpha * np.maximum(grads, 0)).sum(axis=(1, 2))
        cam = (weights[:, None, None] * acts).sum(0)
    elif method == "xgradcam":
        weights = (grads * acts).sum(axis=(1, 2)) / (acts.sum(axis=(1, 2)) + 1e-7)
        cam = (weights[:, None, None] * acts).sum(0)
    elif method == "hirescam":
        cam = (grads * acts).sum(0)
    elif method == "layercam":
        cam = (np.maximum(grads, 0) * acts).sum(0)
    else:
        raise AssertionError(method)
    return {"relu": np.maximum(cam, 0), "abs": np.abs(cam), "none": cam}[post]


@pytest.mark.parametrize("method", METHODS)
def test_each_method_on_a_hand_case(method: str) -> None:
    gen = torch.Generator().manual_seed(3)
    weight = torch.randn(3, 2, 3, 3, generator=gen, dtype=torch.float64)
    x = torch.rand(2, 2, 3, 3, generator=gen, dtype=torch.float64) + 0.1  # A > 0
    x[0, 0, 0, 0] = 0.0  # a zero gradient entry (gradcam++ sets its alpha to 0)
    model = QuadraticHead(weight)
    for post in ("relu", "abs", "none"):
        result = latent_cams(model, x, method=method, post=post)
        for b in range(2):
            for k in range(3):
                grads = (weight[k] * x[b]).numpy()  # d mu_k / dA by hand
                expected = _reference(method, grads, x[b].numpy(), post)
                np.testing.assert_allclose(
                    result.maps[b, k].numpy(),
                    expected,
                    rtol=1e-5,
                    atol=1e-6,
                    err_msg=f"{post} b{b} k{k}",
                )


@pytest.mark.parametrize("method", METHODS)
def test_shortcut_equals_general_path(method: str) -> None:
    model = _tiny("vae", "linear")
    x, _ = _batch()
    assert affine_jacobian(model, x) is not None
    fast = latent_cams(model, x, method=method, post="none")
    general = compute_cams(
        model,
        x,
        [CustomTarget(lambda out, k=k: out.mu[:, k]) for k in range(4)],
        method=method,
        post="none",
    )
    torch.testing.assert_close(fast.maps, general.maps, rtol=1e-5, atol=1e-7)
    assert fast.maps.abs().max() > 0


def test_affine_detection() -> None:
    x, _ = _batch()
    mlp = _tiny("vae", "mlp")
    assert affine_jacobian(mlp, x) is None
    torch.manual_seed(0)
    linear = LinearEncoder()
    jac = affine_jacobian(linear, torch.randn(1, 2, 4, 4))
    assert jac is not None
    torch.testing.assert_close(jac, linear.fc.weight.detach().reshape(5, 3, 4, 4))
    assert affine_jacobian(QuadraticHead(torch.randn(2, 1, 2, 2)), torch.rand(1, 1, 2, 2)) is None


def test_data_dependent_gate_is_not_taken_for_affine() -> None:
    model = GatedHead()
    x = torch.rand(3, 2, 4, 4)
    x[1] *= 3.0
    assert affine_jacobian(model, x) is None
    result = latent_cams(model, x, post="none")
    acts = model.conv(x).detach()
    scale = x.mean(dim=(1, 2, 3)) * 3.0 + 1.0
    weight = model.fc.weight.detach().reshape(4, 3, 4, 4)
    alpha = weight.mean(dim=(2, 3))  # (K, C)
    expected = torch.einsum("kc,bchw->bkhw", alpha, acts) * scale[:, None, None, None]
    torch.testing.assert_close(result.maps, expected, rtol=1e-5, atol=1e-6)


def test_shortcut_cache_follows_parameter_updates() -> None:
    torch.manual_seed(0)
    model = LinearEncoder()
    x = torch.randn(2, 2, 4, 4)
    before = latent_cams(model, x, post="none").maps
    with torch.no_grad():
        model.fc.weight.mul_(2.0)
    after = latent_cams(model, x, post="none").maps
    torch.testing.assert_close(after, 2.0 * before)


def test_sum_target_is_the_sum_of_unit_maps_before_relu() -> None:
    model = _tiny("vae", "mlp")
    x, _ = _batch()
    units = latent_cams(model, x, post="none")
    total = compute_cams(model, x, [LatentSum()], post="none")
    torch.testing.assert_close(total.maps[:, 0], units.maps.sum(1), rtol=1e-4, atol=1e-6)
    assert total.target_names == ["sum(mu)"]
    assert total.units is None


def test_sign_flips_the_map() -> None:
    model = _tiny("vae", "linear")
    x, _ = _batch()
    plus = compute_cams(model, x, [LatentUnit(2)], post="none").maps
    minus = compute_cams(model, x, [LatentUnit(2, sign=-1)], post="none").maps
    torch.testing.assert_close(minus, -plus)


def test_sampled_z_is_seeded() -> None:
    model = _tiny("vae", "linear")
    x, _ = _batch()
    first = latent_cams(model, x, of="z", seed=5, post="none")
    again = latent_cams(model, x, of="z", seed=5, post="none")
    other = latent_cams(model, x, of="z", seed=6, post="none")
    mu_maps = latent_cams(model, x, post="none")
    torch.testing.assert_close(first.maps, again.maps)
    assert not torch.allclose(first.maps, other.maps)
    assert not torch.allclose(first.maps, mu_maps.maps)
    assert first.target_names[0] == "z[0] (sampled, seed 5)"


def test_chunking_does_not_change_maps() -> None:
    model = _tiny("vae", "mlp")
    x, _ = _batch()
    whole = latent_cams(model, x, method="gradcam++")
    chunked = latent_cams(model, x, method="gradcam++", chunk_size=3)
    torch.testing.assert_close(whole.maps, chunked.maps)


class _NoBatchingRule(torch.autograd.Function):
    """x -> x * x, whose backward asks a question that vmap cannot answer (as diffusers'
    attention does on the CPU), so a batched backward through it fails."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, acts: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(acts)
        return acts * acts

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (acts,) = ctx.saved_tensors  # type: ignore[attr-defined]
        grad.is_contiguous(memory_format=torch.channels_last)
        return 2 * acts * grad


class SquaredHead(nn.Module):
    """conv -> A -> A * A (no batching rule) -> flatten -> Linear."""

    explain_layer = "conv"

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 16, 5)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> VAEOutput:
        return _output(self.fc(_NoBatchingRule.apply(self.conv(x)).flatten(1)))


def test_op_without_batching_rule_falls_back_to_one_backward_per_target() -> None:
    torch.manual_seed(0)
    model = SquaredHead()
    x = torch.randn(3, 2, 4, 4)
    acts = model.conv(x).detach()
    weight = model.fc.weight.detach().view(5, 3, 4, 4)
    grads = 2 * acts[:, None] * weight[None]  # d mu_k / dA = 2 A W_k: (B, K, C, h, w)
    expected = torch.relu((grads.mean(dim=(-2, -1), keepdim=True) * acts[:, None]).sum(2))
    for chunk_size in (None, 2):  # one chunk, and several after the fallback
        result = latent_cams(model, x, chunk_size=chunk_size)
        torch.testing.assert_close(result.maps, expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- captum oracle


def _captum_maps(
    model: nn.Module,
    x: torch.Tensor,
    cond: torch.Tensor | None,
    layer: str | None,
    score: Callable[[VAEOutput], torch.Tensor],
) -> torch.Tensor:
    """captum's LayerGradCam, called target by target: (B, T, h, w)."""
    from captum.attr import LayerGradCam

    model.eval()
    _, module = resolve_layer(model, layer)
    forward = (
        (lambda inp: score(model(inp))) if cond is None else (lambda inp, c: score(model(inp, c)))
    )
    cam = LayerGradCam(forward, module)
    extra = None if cond is None else (cond,)
    num = score(model(x) if cond is None else model(x, cond)).shape[1]
    maps = [
        cam.attribute(x, target=t, additional_forward_args=extra, relu_attributions=True)
        for t in range(num)
    ]
    return torch.cat(maps, dim=1).detach()


@pytest.mark.parametrize("kind", ["vae", "cvae", "segvae"])
@pytest.mark.parametrize("head", ["linear", "mlp"])
@pytest.mark.parametrize("layer", [None, "encoder.blocks.1"])
def test_latent_maps_equal_captum(kind: str, head: str, layer: str | None) -> None:
    model = _tiny(kind, head)
    x, cond = _batch(kind)
    ours = latent_cams(model, x, cond=cond, layer=layer)
    theirs = _captum_maps(model, x, cond, layer, lambda out: out.mu)
    assert ours.maps.shape == theirs.shape
    assert theirs.abs().max() > 0
    torch.testing.assert_close(ours.maps, theirs, rtol=1e-5, atol=1e-5 * float(theirs.abs().max()))


@pytest.mark.parametrize(("head", "classes"), [("linear", 19), ("mlp", 19), ("mlp", 1)])
def test_seg_grad_cam_equals_captum(head: str, classes: int) -> None:
    model = _tiny("segvae", head, seg_classes=classes)
    x, _ = _batch("segvae")
    with torch.no_grad():
        logits = model.eval()(x).seg_logits
    assert logits is not None
    if classes == 1:
        mask = logits[:, 0] < 0.0  # a ground-truth-like mask: the predicted background
        targets = [SegClass(0, mask=mask), SegClass(0, pixel=(5, 7))]
    else:
        present = logits.argmax(1).unique()[:2].tolist()  # predicted regions that are not empty
        targets = [SegClass(c) for c in present] + [SegClass(1, box=(2, 3, 9, 12))]
    ours = compute_cams(model, x, targets)

    def score(out: VAEOutput) -> torch.Tensor:
        return torch.stack([t(out) for t in targets], dim=1)

    theirs = _captum_maps(model, x, None, None, score)
    assert theirs.abs().max() > 0
    torch.testing.assert_close(ours.maps, theirs, rtol=1e-5, atol=1e-5 * float(theirs.abs().max()))
    assert ours.target_names[-1] in (
        "seg class 1 over box (2, 3, 9, 12)",
        "seg class 0 over pixel (5, 7)",
    )


# ----------------------------------------------------------------------------- contracts


def test_hooks_removed_grad_mode_restored_and_no_parameter_grads() -> None:
    model = _tiny("vae", "mlp")
    x, _ = _batch()
    for head_model in (model, _tiny("vae", "linear")):
        latent_cams(head_model, x)
        assert all(not m._forward_hooks for m in head_model.modules())
        assert all(p.grad is None for p in head_model.parameters())
    assert torch.is_grad_enabled()


def test_hooks_removed_after_an_exception() -> None:
    model = _tiny("vae", "mlp")
    with pytest.raises(InputError, match="built for 16x16"):
        latent_cams(model, torch.rand(2, 3, 8, 8))
    assert all(not m._forward_hooks for m in model.modules())
    assert torch.is_grad_enabled()
    assert model.training  # mode restored

    class Boom(nn.Module):
        explain_layer = "conv"

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)

        def forward(self, x: torch.Tensor) -> VAEOutput:
            self.conv(x)
            raise RuntimeError("boom after the layer")

    boom = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        latent_cams(boom, torch.rand(1, 1, 2, 2))
    assert not boom.conv._forward_hooks
    assert torch.is_grad_enabled()


def test_batchnorm_model_gives_the_same_map_alone_and_in_a_batch() -> None:
    model = _tiny("vae", "mlp", norm="batch")
    model.train()
    x, _ = _batch(n=4)
    batch_maps = latent_cams(model, x).maps
    alone = latent_cams(model, x[2:3]).maps
    torch.testing.assert_close(batch_maps[2:3], alone, rtol=1e-5, atol=1e-7)
    assert model.training


def test_unknown_layer_lists_close_matches_and_layers() -> None:
    model = _tiny()
    with pytest.raises(InputError) as err:
        latent_cams(model, _batch()[0], layer="encoder.block.1")
    message = str(err.value)
    assert "Did you mean: encoder.blocks.1" in message
    assert "encoder.blocks.0" in message and "encoder.blocks.2" in message
    assert resolve_layer(model, None)[0] == "encoder.blocks.2"
    block = dict(model.named_modules())["encoder.blocks.1"]
    assert resolve_layer(model, block)[0] == "encoder.blocks.1"


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_unit_out_of_range_is_an_input_error(head: str) -> None:
    model = _tiny("vae", head)
    x, _ = _batch()
    with pytest.raises(InputError, match="latent unit 4 is out of range.*K=4"):
        latent_cams(model, x, units=[0, 4])
    with pytest.raises(InputError, match=">= 0"):
        latent_cams(model, x, units=[-1])
    with pytest.raises(InputError, match="unknown CAM method"):
        latent_cams(model, x, method="scorecam")


def test_selected_units_in_order() -> None:
    model = _tiny("vae", "mlp")
    x, _ = _batch()
    every = latent_cams(model, x)
    some = latent_cams(model, x, units=[3, 1])
    torch.testing.assert_close(some.maps, every.maps[:, [3, 1]])
    assert some.units is not None and some.units.tolist() == [3, 1]
    torch.testing.assert_close(some.output.mu, every.output.mu)
    assert not some.output.mu.requires_grad


# ----------------------------------------------------------------------------- post-processing


def test_normalise_per_map_unit_and_batch() -> None:
    maps = torch.tensor(
        [[[[0.0, 2.0]], [[1.0, 1.0]]], [[[0.0, 4.0]], [[3.0, 5.0]]]]
    )  # (2, 2, 1, 2)
    per_map = normalise(maps, per="map")
    torch.testing.assert_close(per_map[:, 0], torch.tensor([[[0.0, 1.0]], [[0.0, 1.0]]]))
    torch.testing.assert_close(per_map[0, 1], torch.tensor([[0.0, 0.0]]))  # constant -> 0
    per_unit = normalise(maps, per="unit")
    torch.testing.assert_close(per_unit[:, 0], torch.tensor([[[0.0, 0.5]], [[0.0, 1.0]]]))
    torch.testing.assert_close(per_unit[:, 1], torch.tensor([[[0.0, 0.0]], [[0.5, 1.0]]]))
    torch.testing.assert_close(normalise(maps, per="batch"), maps / 5.0)
    with pytest.raises(InputError):
        normalise(maps, per="image")


def test_upsample_shapes_and_values() -> None:
    maps = torch.arange(8.0).reshape(2, 1, 2, 2)
    nearest = upsample(maps, 4, mode="nearest")
    assert nearest.shape == (2, 1, 4, 4)
    torch.testing.assert_close(nearest[1, 0, :2, :2], torch.full((2, 2), 4.0))
    smooth = upsample(torch.full((3, 2, 2), 7.0), (6, 4))
    assert smooth.shape == (3, 6, 4)
    torch.testing.assert_close(smooth, torch.full((3, 6, 4), 7.0))


def test_layer_errors_and_plain_tensor_outputs() -> None:
    torch.manual_seed(0)
    model = LinearEncoder()
    x = torch.randn(2, 2, 4, 4)
    with pytest.raises(InputError, match="conv activation map"):
        latent_cams(model, x, layer="fc")

    class Twice(nn.Module):
        explain_layer = "conv"

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.conv(x)).flatten(1)  # a plain (B, K) tensor is mu

    with pytest.raises(InputError, match="ran 2 times"):
        latent_cams(Twice(), x)

    class Plain(nn.Module):
        explain_layer = "inner.conv"

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x).mu

    torch.testing.assert_close(latent_cams(Plain(model), x).maps, latent_cams(model, x).maps)


def test_cams_by_layer_equal_one_pass_per_layer_for_general_targets() -> None:
    """cams_by_layer with non-linear targets (one backward for both layers) and with a
    layer given twice: the maps of compute_cams at each layer."""
    torch.manual_seed(1)
    model = build_model(
        model_config(kind="vae", image_size=16, latent_dim=4, num_layers=2, base_channels=4)
    )
    images = torch.rand(2, 3, 16, 16)
    targets = [LatentUnit(1), LatentUnit(2, of="z", seed=3)]  # z is not linear in mu
    layers = ["encoder.blocks.1", "encoder.blocks.0", "encoder.blocks.1"]
    maps = cams_by_layer(model, images, layers, ["gradcam", "layercam"], targets=targets)
    assert list(maps) == ["encoder.blocks.1", "encoder.blocks.0"]
    for layer in ("encoder.blocks.0", "encoder.blocks.1"):
        for method in ("gradcam", "layercam"):
            expected = compute_cams(model, images, targets, layer=layer, method=method).maps
            torch.testing.assert_close(maps[layer][method].maps, expected)
