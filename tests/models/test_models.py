"""Models: shapes for every kind/size/depth/option, the naming contract, input errors, training.

Tiny configs (base 4 channels) so that 256 px and depth 8 stay fast on two CPU cores.
"""

from __future__ import annotations

import pytest
import torch

from latentcam.config import ModelConfig, model_config
from latentcam.errors import ConfigError, InputError
from latentcam.models import (
    MODEL_CLASSES,
    VAE,
    ConditionalVAE,
    GenerativeModel,
    SegVAE,
    UNet,
    VAEOutput,
    build_model,
)
from latentcam.models.blocks import feature_sizes
from latentcam.training.losses import kl_divergence, recon_mse, seg_loss

torch.set_num_threads(1)


def tiny(**kw: object) -> ModelConfig:
    base = dict(image_size=32, latent_dim=6, num_layers=3, base_channels=4, max_channels=16)
    base.update(kw)
    return model_config(**base)  # type: ignore[arg-type]


def inputs(
    cfg: ModelConfig, batch: int = 2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, cfg.image_size, cfg.image_size, generator=g)
    cond = (
        torch.randint(0, 2, (batch, cfg.cond_dim), generator=g).float()
        if cfg.kind == "cvae"
        else None
    )
    return x, cond


def capture(
    model: torch.nn.Module, name: str, x: torch.Tensor, cond: torch.Tensor | None
) -> torch.Tensor:
    acts: list[torch.Tensor] = []
    handle = dict(model.named_modules())[name].register_forward_hook(lambda m, i, o: acts.append(o))
    try:
        model(x, cond)
    finally:
        handle.remove()
    return acts[0]


# -- shapes ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["vae", "cvae", "segvae"])
@pytest.mark.parametrize("size", [64, 128, 256])
def test_shapes_every_kind_and_size(kind: str, size: int) -> None:
    cfg = tiny(kind=kind, image_size=size, num_layers=4, base_channels=2, max_channels=8)
    model = build_model(cfg).eval()
    x, cond = inputs(cfg)
    out = model(x, cond)
    assert isinstance(out, VAEOutput)
    assert out.mu.shape == out.logvar.shape == out.z.shape == (2, 6)
    side = size // 16  # 4 halvings
    last = capture(model, model.explain_layer, x, cond)
    assert last.shape == (2, 8, side, side)
    assert model.head.mu.in_features == 8 * side * side
    if kind == "segvae":
        assert out.recon is None
        assert out.seg_logits is not None and out.seg_logits.shape == (2, 1, size, size)
    else:
        assert out.seg_logits is None
        assert out.recon is not None and out.recon.shape == (2, 3, size, size)
        assert 0.0 <= out.recon.min().item() and out.recon.max().item() <= 1.0


@pytest.mark.parametrize("depth", [3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("downsample", ["stride", "pool"])
def test_depths_beyond_the_downsampling_limit(depth: int, downsample: str) -> None:
    # 32 px with min_feature_size 4: three halvings (16, 8, 4), then blocks keep 4x4.
    cfg = tiny(num_layers=depth, downsample=downsample)
    model = build_model(cfg).eval()
    x, _ = inputs(cfg)
    out = model(x)
    assert out.recon is not None and out.recon.shape == x.shape
    level_sides = [16, 8, 4] + [4] * (depth - 3)
    assert feature_sizes(32, depth, 4) == level_sides
    # stride: a block's output is the halved map; pool: the pre-pool map, one level larger.
    block_sides = level_sides if downsample == "stride" else [32, *level_sides[:-1]]
    widths = [min(4 * 2**i, 16) for i in range(depth)]
    shapes = model.encoder_shapes()
    assert [s.size for s in shapes] == block_sides
    assert [s.channels for s in shapes] == widths
    assert model.encoder_layers() == [f"encoder.blocks.{i}" for i in range(depth)]
    assert model.explain_layer == f"encoder.blocks.{depth - 1}"
    modules = dict(model.named_modules())
    for shape in shapes:  # every name exists and its output is the 4-D map announced
        act = capture(model, shape.name, x, None)
        assert act.shape == (2, shape.channels, shape.size, shape.size)
        assert isinstance(modules[shape.name], torch.nn.Module)
    sides = [s.size for s in shapes]
    assert all(a >= b for a, b in zip(sides, sides[1:], strict=False))
    assert sides[0] > sides[-1]


def test_explain_layer_output_is_the_post_activation_conv_map() -> None:
    cfg = tiny(downsample="pool", activation="relu", norm="none")
    model = build_model(cfg).eval()
    x, _ = inputs(cfg)
    block = dict(model.named_modules())[model.explain_layer]
    act = capture(model, model.explain_layer, x, None)
    conv_out = capture(model, model.explain_layer + ".conv", x, None)
    torch.testing.assert_close(act, torch.relu(conv_out))  # conv -> (no norm) -> relu, no pool
    assert isinstance(block.conv, torch.nn.Conv2d) and block.conv.stride == (1, 1)


def test_linear_head_is_affine_from_the_explained_layer() -> None:
    # mu = W vec(A) + b exactly: what the CAM engine's no-backward shortcut relies on.
    cfg = tiny(kind="cvae")
    model = build_model(cfg).eval()
    x, cond = inputs(cfg)
    acts = capture(model, model.explain_layer, x, cond)
    mu = model(x, cond).mu
    W, b = model.head.mu.weight, model.head.mu.bias
    torch.testing.assert_close(mu, acts.flatten(1) @ W.T + b)


def test_mlp_head_has_a_hidden_nonlinear_layer() -> None:
    cfg = tiny(head="mlp", head_hidden=7, activation="relu")
    model = build_model(cfg).eval()
    x, _ = inputs(cfg)
    acts = capture(model, model.explain_layer, x, None)
    hidden = torch.relu(acts.flatten(1) @ model.head.hidden.weight.T + model.head.hidden.bias)
    expected = hidden @ model.head.mu.weight.T + model.head.mu.bias
    torch.testing.assert_close(model(x).mu, expected)
    assert model.head.hidden.out_features == 7


@pytest.mark.parametrize("classes", [1, 19])
@pytest.mark.parametrize("with_image", [False, True])
def test_segvae_outputs(classes: int, with_image: bool) -> None:
    cfg = tiny(kind="segvae", seg_classes=classes, seg_recon_image=with_image)
    model = build_model(cfg).eval()
    x, _ = inputs(cfg)
    out = model(x)
    assert out.seg_logits is not None and out.seg_logits.shape == (2, classes, 32, 32)
    if with_image:
        assert out.recon is not None and out.recon.shape == (2, 3, 32, 32)
        assert 0.0 <= out.recon.min().item() and out.recon.max().item() <= 1.0
    else:
        assert out.recon is None
    decoded = model.decode(out.mu)
    torch.testing.assert_close(decoded.seg_logits, out.seg_logits)


@pytest.mark.parametrize("kind", ["vae", "cvae", "segvae"])
def test_spatial_bottleneck_residual_decoder_coords(kind: str) -> None:
    cfg = tiny(
        kind=kind,
        image_size=64,
        num_layers=4,
        min_feature_size=16,
        bottleneck="spatial",
        decoder="residual",
        coord_channels=True,
    )
    model = build_model(cfg).eval()
    x, cond = inputs(cfg)
    out = model(x, cond)
    assert model.latent_shape == (6, 16, 16)
    assert model.latent_dim == 6 * 16 * 16
    assert out.mu.shape == (2, 6 * 16 * 16)
    head_in = capture(model, "encoder", x, cond)  # (B, C_L, 16, 16), the head's input
    torch.testing.assert_close(out.mu, torch.flatten(model.head.mu(head_in), 1))  # channel-major
    main = out.seg_logits if kind == "segvae" else out.recon
    assert main is not None and main.shape[-2:] == (64, 64)
    # no skip connection: the decoder output depends on the input only through z
    decoded = model.decode(out.z, cond)
    torch.testing.assert_close(decoded.seg_logits if kind == "segvae" else decoded.recon, main)


def test_spatial_mlp_head() -> None:
    cfg = tiny(bottleneck="spatial", head="mlp", head_hidden=5)
    model = build_model(cfg).eval()
    x, _ = inputs(cfg)
    out = model(x)
    assert model.head.hidden.out_channels == 5 and model.head.mu.in_channels == 5
    assert out.mu.shape == (2, 6 * 4 * 4) and model.latent_shape == (6, 4, 4)
    assert out.recon is not None and out.recon.shape == x.shape


def test_paper_sized_vae() -> None:
    # 64 px, 4 blocks of base 32 channels -> 256 x 4 x 4 = 4096 features into the mu head.
    model = build_model(model_config())
    assert [s.size for s in model.encoder_shapes()] == [32, 16, 8, 4]
    assert [s.channels for s in model.encoder_shapes()] == [32, 64, 128, 256]
    assert model.head.mu.in_features == 4096 and model.head.mu.out_features == 100
    assert model.decoder.stem.out_features == 4096


@pytest.mark.parametrize("kind", ["vae", "cvae", "segvae"])
def test_eval_z_is_mu_and_train_z_is_reparameterised(kind: str) -> None:
    cfg = tiny(kind=kind)
    model = build_model(cfg)
    x, cond = inputs(cfg)
    model.eval()
    out = model(x, cond)
    assert torch.equal(out.z, out.mu)
    model.train()
    torch.manual_seed(3)
    out = model(x, cond)
    torch.manual_seed(3)
    eps = torch.randn_like(out.mu)
    torch.testing.assert_close(out.z, out.mu + torch.exp(0.5 * out.logvar) * eps)
    assert not torch.allclose(out.z, out.mu)


@pytest.mark.parametrize("bottleneck", ["vector", "spatial"])
def test_logvar_init_sets_the_starting_posterior_sd(bottleneck: str) -> None:
    cfg = tiny(kind="segvae", bottleneck=bottleneck, logvar_init=-6.0)
    model = build_model(cfg)
    assert torch.all(model.head.logvar.bias == -6.0)
    x, _ = inputs(cfg)
    out = model.train()(x)
    # logvar = W h - 6 with W h small at init: the sampling noise starts at SD ~ e^-3
    assert out.logvar.mean().item() == pytest.approx(-6.0, abs=1.0)
    default = build_model(tiny(kind="segvae", bottleneck=bottleneck))
    assert default.head.logvar.bias.abs().max().item() < 1.0  # PyTorch's default init


@pytest.mark.parametrize(
    "norm,activation",
    [("batch", "leaky_relu"), ("group", "relu"), ("instance", "elu"), ("none", "silu")],
)
def test_norms_and_activations(norm: str, activation: str) -> None:
    cfg = tiny(norm=norm, activation=activation)
    model = build_model(cfg).eval()
    block = dict(model.named_modules())["encoder.blocks.0"]
    names = {
        "batch": "BatchNorm2d",
        "group": "GroupNorm",
        "instance": "InstanceNorm2d",
        "none": "Identity",
    }
    acts = {"leaky_relu": "LeakyReLU", "relu": "ReLU", "elu": "ELU", "silu": "SiLU"}
    assert type(block.norm).__name__ == names[norm]
    assert type(block.act).__name__ == acts[activation]
    assert (block.conv.bias is None) == (norm != "none")
    x, _ = inputs(cfg)
    assert model(x).recon.shape == x.shape  # type: ignore[union-attr]


# -- CVAE, sampling ----------------------------------------------------------------------


def test_cvae_uses_its_condition_in_encoder_and_decoder() -> None:
    cfg = tiny(kind="cvae")
    model = build_model(cfg).eval()
    assert isinstance(model, ConditionalVAE) and model.cond_dim == 40
    assert model.encoder.blocks[0].conv.in_channels == 4  # RGB + the projected condition
    assert model.cond_embed.out_features == 32 * 32
    assert model.decoder.stem.in_features == 6 + 40
    x, cond = inputs(cfg)
    flipped = 1.0 - cond  # type: ignore[operator]
    assert not torch.allclose(model(x, cond).mu, model(x, flipped).mu)
    z = torch.zeros(2, 6)
    assert not torch.allclose(model.decode(z, cond).recon, model.decode(z, flipped).recon)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["vae", "cvae", "segvae"])
def test_sample_is_seeded(kind: str) -> None:
    cfg = tiny(kind=kind)
    model = build_model(cfg).eval()
    cond = torch.ones(cfg.cond_dim) if kind == "cvae" else None  # one row for all n
    a = model.sample(3, cond, torch.Generator().manual_seed(7))
    b = model.sample(3, cond, torch.Generator().manual_seed(7))
    main_a, main_b = (a.seg_logits, b.seg_logits) if kind == "segvae" else (a.recon, b.recon)
    assert main_a is not None and main_b is not None
    assert main_a.shape[0] == 3
    torch.testing.assert_close(main_a, main_b)
    z = torch.randn(3, 6, generator=torch.Generator().manual_seed(7))
    expected = model.decode(z, None if cond is None else cond.expand(3, -1))
    torch.testing.assert_close(a, expected)


# -- errors --------------------------------------------------------------------------------


def test_wrong_image_size_says_what_to_do() -> None:
    model = build_model(model_config(base_channels=4, max_channels=8))
    with pytest.raises(
        InputError,
        match=r"model was built for 64x64 images, got 128x128; resize, or train a model at 128",
    ):
        model(torch.rand(1, 3, 128, 128))


@pytest.mark.parametrize(
    "shape,match",
    [
        ((3, 32, 32), "4-D"),
        ((1, 1, 32, 32), "3 \\(RGB\\) channels"),
        ((1, 4, 32, 32), "3 \\(RGB\\)"),
    ],
)
def test_wrong_dims_and_channels(shape: tuple[int, ...], match: str) -> None:
    model = build_model(tiny())
    with pytest.raises(InputError, match=match):
        model(torch.rand(shape))
    with pytest.raises(InputError, match=match):
        model.encode(torch.rand(shape))


def test_integer_images_are_refused() -> None:
    with pytest.raises(InputError, match="float in \\[0, 1\\]"):
        build_model(tiny())(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_cvae_cond_errors() -> None:
    model = build_model(tiny(kind="cvae"))
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(
        InputError, match=r"this CVAE needs cond \(B, 40\) attribute values in \{0,1\}"
    ):
        model(x)
    with pytest.raises(InputError, match=r"\(2, 40\).*got \(2, 39\)"):
        model(x, torch.zeros(2, 39))
    with pytest.raises(InputError, match=r"got \(3, 40\)"):
        model(x, torch.zeros(3, 40))
    with pytest.raises(InputError, match="needs cond"):
        model.decode(torch.zeros(2, 6))
    with pytest.raises(InputError, match="needs cond"):
        model.sample(2)


def test_unconditional_model_refuses_cond_and_bad_latents() -> None:
    model = build_model(tiny())
    with pytest.raises(InputError, match="unconditional"):
        model(torch.rand(1, 3, 32, 32), torch.zeros(1, 40))
    with pytest.raises(InputError, match=r"\(B, 6\).*got \(2, 5\)"):
        model.decode(torch.zeros(2, 5))
    with pytest.raises(InputError, match=">= 1"):
        model.sample(0)


def test_bad_configs() -> None:
    with pytest.raises(ConfigError, match="model.kind"):
        build_model(tiny(kind="gan"))
    with pytest.raises(ConfigError, match="model.downsample"):
        build_model(tiny(downsample="avg"))
    cfg = tiny()
    cfg.decoder = "unet"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="model.decoder"):
        build_model(cfg)


def test_registry() -> None:
    assert MODEL_CLASSES == {"vae": VAE, "cvae": ConditionalVAE, "segvae": SegVAE}
    for kind, cls in MODEL_CLASSES.items():
        model = build_model(tiny(kind=kind))
        assert type(model) is cls and isinstance(model, GenerativeModel)
        assert model.kind == kind


# -- torch.func, gradients, U-Net ----------------------------------------------------------


def test_torch_func_vjp_over_all_units_matches_autograd() -> None:
    # The CAM engine's vectorised path: vmap over one-hot cotangents of a vjp.
    cfg = tiny(kind="cvae", head="mlp")
    model = build_model(cfg).eval()
    x, cond = inputs(cfg)
    mu, vjp_fn = torch.func.vjp(lambda inp: model(inp, cond).mu, x)
    eye = torch.eye(6).unsqueeze(1).expand(6, 2, 6)  # (K, B, K)
    (grads,) = torch.func.vmap(vjp_fn)(eye)  # (K, B, 3, H, W)
    x.requires_grad_(True)
    for k in (0, 5):
        (ref,) = torch.autograd.grad(model(x, cond).mu[:, k].sum(), x)
        torch.testing.assert_close(grads[k], ref)


@pytest.mark.parametrize("kind", ["vae", "cvae", "segvae"])
def test_one_step_reduces_the_loss(kind: str) -> None:
    seg = {"seg_classes": 19, "seg_recon_image": True} if kind == "segvae" else {}
    cfg = tiny(kind=kind, **seg)
    model = build_model(cfg).train()
    x, cond = inputs(cfg, batch=4)
    parts = torch.randint(0, 19, (4, 32, 32), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_fn() -> torch.Tensor:
        torch.manual_seed(0)  # the same eps every time
        out = model(x, cond)
        loss = kl_divergence(out.mu, out.logvar) + recon_mse(out.recon, x)  # type: ignore[arg-type]
        if kind == "segvae":
            loss = loss + seg_loss("ce_dice", out.seg_logits, parts)  # type: ignore[arg-type]
        return loss

    before = loss_fn()
    opt.zero_grad()
    before.backward()
    no_grad = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert no_grad == []
    opt.step()
    after = loss_fn()
    assert after.item() < before.item()


def test_unet_baseline() -> None:
    net = UNet(in_ch=3, out_ch=19, base=4).eval()
    logits = net(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 19, 32, 32)
    # 4 pooling levels: channels 4, 8, 16, 32, 64; the deepest double conv is 32 -> 64.
    assert [m[0].out_channels for m in net.down] == [4, 8, 16, 32, 64]
