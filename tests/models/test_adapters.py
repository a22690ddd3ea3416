"""Adapters: diffusers' AutoencoderKL, pythae's models and plain PyTorch code through the
CAM engine (captum's LayerGradCam as the oracle), traversals, decoder maps and directions."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import latentcam
from latentcam.errors import InputError
from latentcam.explain.cam import compute_cams, latent_cams
from latentcam.explain.decoder import decoder_jacobian
from latentcam.explain.directions import pca_directions
from latentcam.explain.targets import LatentDirection
from latentcam.explain.traversal import effect_maps, traverse, traverse_directions
from latentcam.models.adapters import Adapter
from latentcam.models.base import Decoded, VAEOutput, resolve_layer
from latentcam.models.protocol import (
    LatentModel,
    check_model,
    has_image_output,
    has_seg_output,
    is_conditional,
    is_spatial,
)

Score = Callable[[VAEOutput], torch.Tensor]


def _images(n: int = 2, size: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _captum_maps(model: nn.Module, x: torch.Tensor, layer: str, score: Score) -> torch.Tensor:
    """captum's LayerGradCam, one call per target column of ``score``: (B, T, h, w)."""
    from captum.attr import LayerGradCam

    model.eval()
    _, module = resolve_layer(model, layer)
    cam = LayerGradCam(lambda inp: score(model(inp)), module)
    with torch.no_grad():
        num = score(model(x)).shape[1]
    maps = [cam.attribute(x, target=t, relu_attributions=True) for t in range(num)]
    return torch.cat(maps, dim=1).detach()


def _assert_maps_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.shape == theirs.shape
    scale = float(theirs.abs().max())
    assert scale > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * scale)


def _one_line(err: pytest.ExceptionInfo[InputError]) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# ----------------------------------------------------------------------------- diffusers


@pytest.fixture(scope="module")
def autoencoder_kl() -> nn.Module:
    """A tiny AutoencoderKL from a config (random weights): 64 px -> 4 x 16 x 16."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    return diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=64,
    ).eval()


@pytest.fixture(scope="module")
def adapted_kl(autoencoder_kl: nn.Module) -> Adapter:
    adapted = latentcam.adapt(autoencoder_kl)
    assert isinstance(adapted, Adapter)
    return adapted


def test_autoencoder_kl_latent_is_the_flattened_posterior(
    autoencoder_kl: Any, adapted_kl: Adapter
) -> None:
    assert isinstance(adapted_kl, LatentModel) and check_model(adapted_kl) is adapted_kl
    assert adapted_kl.latent_shape == (4, 16, 16) and adapted_kl.latent_dim == 1024
    assert is_spatial(adapted_kl) and has_image_output(adapted_kl)
    assert not has_seg_output(adapted_kl) and not is_conditional(adapted_kl)
    assert adapted_kl.image_size == 64 and adapted_kl.source == "diffusers"
    assert adapted_kl.encoder_layers() == [
        "module.encoder.down_blocks.0",
        "module.encoder.down_blocks.1",
        "module.encoder.down_blocks.2",
        "module.encoder.mid_block",
        "module.encoder.conv_out",
    ]
    assert [(s.channels, s.size) for s in adapted_kl.encoder_shapes()] == [
        (32, 32),
        (64, 16),
        (64, 16),
        (64, 16),
        (8, 16),
    ]
    assert adapted_kl.explain_layer == "module.encoder.down_blocks.2"
    names = dict(adapted_kl.named_modules())
    assert names["module.encoder.down_blocks.2"] is autoencoder_kl.encoder.down_blocks[2]

    x = _images()
    with torch.no_grad():
        mu, logvar = adapted_kl.encode(x)
        posterior = autoencoder_kl.encode(2 * x - 1).latent_dist  # diffusers reads [-1, 1]
        torch.testing.assert_close(mu, posterior.mean.flatten(1))  # channel-major (C, h, w)
        torch.testing.assert_close(logvar, posterior.logvar.flatten(1))
        decoded = adapted_kl.decode(mu)
        sample = autoencoder_kl.decode(posterior.mean).sample
        assert decoded.recon is not None and decoded.seg_logits is None
        torch.testing.assert_close(decoded.recon, ((sample + 1) / 2).clamp(0, 1))
        out = adapted_kl(x)
    torch.testing.assert_close(out.z, out.mu)  # eval mode: z = mu
    torch.testing.assert_close(out.recon, decoded.recon)
    samples = adapted_kl.sample(2, generator=torch.Generator().manual_seed(0))
    assert samples.recon is not None and samples.recon.shape == (2, 3, 64, 64)


@pytest.mark.parametrize("layer", ["module.encoder.down_blocks.1", "module.encoder.conv_out"])
def test_autoencoder_kl_unit_maps_equal_captum(adapted_kl: Adapter, layer: str) -> None:
    units = [0, 257, 700, 1023]  # cells of latent channels 0, 1, 2, 3
    x = _images()
    ours = latent_cams(adapted_kl, x, units=units, layer=layer)
    theirs = _captum_maps(adapted_kl, x, layer, lambda out: out.mu[:, units])
    assert ours.maps.shape == (2, 4, 16, 16)
    _assert_maps_close(ours.maps, theirs)


def test_autoencoder_kl_effects_traversal_and_decoder_maps(adapted_kl: Adapter) -> None:
    x = _images()
    with torch.no_grad():
        mu, _ = adapted_kl.encode(x)
    units = [3, 600]
    effects = effect_maps(adapted_kl, mu, units=units, delta=3.0)
    assert effects.shape == (2, 2, 64, 64)
    step = torch.zeros(1024)
    step[600] = 3.0
    with torch.no_grad():
        plus, minus = adapted_kl.decode(mu + step).recon, adapted_kl.decode(mu - step).recon
    assert plus is not None and minus is not None
    torch.testing.assert_close(effects[:, 1], (plus - minus).abs().mean(1))
    assert float(effects.max()) > 0

    trav = traverse(adapted_kl, x[:1], units=[600], steps=[-2.0, 2.0], mode="sigma")
    assert trav.images.shape == (1, 1, 2, 3, 64, 64)
    assert trav.heatmaps.shape == (1, 1, 2, 16, 16)
    assert trav.layer == "module.encoder.down_blocks.2"

    jac = decoder_jacobian(adapted_kl, mu[:1], units=units)
    assert jac.maps.shape == (1, 2, 64, 64)
    reference = copy.deepcopy(adapted_kl).double()  # central differences in float64, by hand
    h, columns = 1e-4, []
    for k in units:
        dz = torch.zeros(1024, dtype=torch.float64)
        dz[k] = h
        with torch.no_grad():
            up = reference.decode(mu[:1].double() + dz).recon
            down = reference.decode(mu[:1].double() - dz).recon
        assert up is not None and down is not None
        columns.append(((up - down) / (2 * h)).abs().mean(1))
    expected = torch.stack(columns, dim=1).float()
    # forward-mode AD, or float32 differences where diffusers' attention has no forward AD
    torch.testing.assert_close(jac.maps, expected, rtol=0.0, atol=0.01 * float(expected.max()))


def test_autoencoder_kl_directions(adapted_kl: Adapter) -> None:
    x = _images(4)
    with torch.no_grad():
        mu, _ = adapted_kl.encode(x)
    directions = pca_directions(mu, k=2)
    assert directions.latent_dim == 1024 and len(directions) == 2
    vectors = directions.vectors  # (2, 1024)
    layer = "module.encoder.conv_out"  # affine below mu: the engine's shortcut
    ours = compute_cams(
        adapted_kl, x[:2], [LatentDirection(v, f"d{i}") for i, v in enumerate(vectors)], layer=layer
    )
    theirs = _captum_maps(adapted_kl, x[:2], layer, lambda out: out.mu @ vectors.T)
    _assert_maps_close(ours.maps, theirs)
    effects = effect_maps(adapted_kl, mu[:2], directions=vectors, delta=directions.scales[0].item())
    assert effects.shape == (2, 2, 64, 64) and bool(torch.isfinite(effects).all())
    trav = traverse_directions(
        adapted_kl, x[:1], vectors, directions.names, directions.scales, steps=[-1.0, 1.0]
    )
    assert trav.images.shape == (1, 2, 2, 3, 64, 64) and trav.names == ("pca_0", "pca_1")


def test_autoencoder_kl_image_size_it_cannot_take(autoencoder_kl: nn.Module) -> None:
    with pytest.raises(InputError) as err:
        latentcam.adapt(autoencoder_kl, image_size=61)  # 61 -> 30 -> 15, decoded to 60
    assert _one_line(err) == (
        "AutoencoderKL decodes its image output as (2, 3, 60, 60) from 61x61 images; "
        "latentcam needs (2, 3, 61, 61): give the image size the model was built for"
    )


def test_adapted_model_rejects_other_image_sizes(adapted_kl: Adapter) -> None:
    with pytest.raises(InputError) as err:
        adapted_kl.encode(_images(size=32))
    assert _one_line(err) == (
        "model was built for 64x64 images, got 32x32; resize them, or adapt the model with "
        "image_size=32"
    )


# ----------------------------------------------------------------------------- pythae


def test_pythae_default_networks() -> None:
    models = pytest.importorskip("pythae.models")
    torch.manual_seed(0)
    vae = models.BetaTCVAE(models.BetaTCVAEConfig(input_dim=(3, 64, 64), latent_dim=16)).eval()
    adapted = latentcam.adapt(vae)
    assert isinstance(adapted, Adapter) and adapted.source == "pythae"
    assert adapted.latent_shape == (16,) and adapted.image_size == 64
    # pythae's default networks are MLPs: the only map to explain is the input image
    assert adapted.encoder_layers() == ["input"] and adapted.explain_layer == "input"
    x = _images()
    with torch.no_grad():
        encoded = vae.encoder(x)
        mu, logvar = adapted.encode(x)
        torch.testing.assert_close(mu, encoded.embedding)
        torch.testing.assert_close(logvar, encoded.log_covariance)
        recon = adapted.decode(mu).recon
        torch.testing.assert_close(recon, vae.decoder(mu).reconstruction)
    ours = latent_cams(adapted, x, units=[0, 7, 15])
    theirs = _captum_maps(adapted, x, "input", lambda out: out.mu[:, [0, 7, 15]])
    _assert_maps_close(ours.maps, theirs)
    effects = effect_maps(adapted, mu, units=[0, 1])
    assert effects.shape == (2, 2, 64, 64)


def test_pythae_model_with_conv_encoder() -> None:
    """A pythae VAE built with the user's own conv networks: its convs are found in order."""
    models = pytest.importorskip("pythae.models")
    pythae_nn = pytest.importorskip("pythae.models.nn")
    from pythae.models.base.base_utils import ModelOutput

    class ConvEncoder(pythae_nn.BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.convs = nn.Sequential(
                nn.Conv2d(3, 8, 3, stride=2, padding=1),  # 32 -> 16
                nn.ReLU(),
                nn.Conv2d(8, 16, 3, stride=2, padding=1),  # 16 -> 8
                nn.ReLU(),
            )
            self.embedding = nn.Linear(16 * 8 * 8, 6)
            self.log_var = nn.Linear(16 * 8 * 8, 6)

        def forward(self, x: torch.Tensor) -> Any:
            h = self.convs(x).flatten(1)
            return ModelOutput(embedding=self.embedding(h), log_covariance=self.log_var(h))

    class ConvDecoder(pythae_nn.BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 16 * 8 * 8)
            self.up = nn.Sequential(
                nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1),
                nn.ReLU(),
                nn.ConvTranspose2d(8, 3, 4, stride=2, padding=1),
                nn.Sigmoid(),
            )

        def forward(self, z: torch.Tensor) -> Any:
            return ModelOutput(reconstruction=self.up(self.fc(z).view(-1, 16, 8, 8)))

    torch.manual_seed(0)
    config = models.VAEConfig(input_dim=(3, 32, 32), latent_dim=6)
    vae = models.VAE(config, encoder=ConvEncoder(), decoder=ConvDecoder())
    adapted = latentcam.adapt(vae)
    assert adapted.encoder_layers() == ["module.encoder.convs.0", "module.encoder.convs.2"]
    assert adapted.explain_layer == "module.encoder.convs.2"
    x = _images(size=32)
    for layer in adapted.encoder_layers():
        ours = latent_cams(adapted, x, layer=layer)
        theirs = _captum_maps(adapted, x, layer, lambda out: out.mu)
        _assert_maps_close(ours.maps, theirs)


def test_pythae_image_size_it_cannot_take() -> None:
    models = pytest.importorskip("pythae.models")
    vae = models.BetaVAE(models.BetaVAEConfig(input_dim=(3, 64, 64), latent_dim=4))
    with pytest.raises(InputError) as err:
        latentcam.adapt(vae, image_size=32)
    assert _one_line(err).startswith("BetaVAE cannot encode 32x32 images (RuntimeError: ")


# ----------------------------------------------------------------------------- plain code


class ListVAE(nn.Module):
    """PyTorch-VAE's style: ``encode`` returns [mu, log_var], ``decode`` a tensor in [-1, 1]."""

    def __init__(self, latent: int = 5, spatial: bool = False) -> None:
        super().__init__()
        self.spatial = spatial
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),  # 16 -> 8
            nn.LeakyReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),  # 8 -> 4
            nn.LeakyReLU(),
        )
        if spatial:  # a 1x1 conv head: mu is (B, 2, 4, 4)
            self.fc_mu: nn.Module = nn.Conv2d(8, 2, 1)
            self.fc_var: nn.Module = nn.Conv2d(8, 2, 1)
            self.decoder_input: nn.Module = nn.Conv2d(2, 8, 1)
        else:
            self.fc_mu = nn.Linear(8 * 4 * 4, latent)
            self.fc_var = nn.Linear(8 * 4 * 4, latent)
            self.decoder_input = nn.Linear(latent, 8 * 4 * 4)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(8, 8, 4, stride=2, padding=1),
            nn.LeakyReLU(),
            nn.ConvTranspose2d(8, 3, 4, stride=2, padding=1),
            nn.Tanh(),
        )

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.encoder(x)
        h = h if self.spatial else h.flatten(1)
        return [self.fc_mu(h), self.fc_var(h)]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.decoder_input(z)
        return self.decoder(h if self.spatial else h.view(-1, 8, 4, 4))


@pytest.mark.parametrize("spatial", [False, True])
def test_wrap_pytorch_vae_style(spatial: bool) -> None:
    torch.manual_seed(0)
    vae = ListVAE(spatial=spatial)
    adapted = latentcam.wrap(vae, image_size=16, value_range=(-1.0, 1.0))
    assert isinstance(adapted, LatentModel) and adapted.source == "wrap"
    assert adapted.latent_shape == ((2, 4, 4) if spatial else (5,))
    # every conv that mu depends on, in running order (a spatial mu head is one; the
    # logvar head is not)
    layers = ["module.encoder.0", "module.encoder.2"] + (["module.fc_mu"] if spatial else [])
    assert adapted.encoder_layers() == layers and adapted.explain_layer == layers[-1]
    assert "module.encoder.0" in dict(adapted.named_modules())
    assert adapted.method_names == ("encode", "decode")
    x = _images(size=16)
    with torch.no_grad():
        mu, logvar = adapted.encode(x)
        expected_mu, expected_logvar = vae.encode(2 * x - 1)
        torch.testing.assert_close(mu, expected_mu.flatten(1))
        torch.testing.assert_close(logvar, expected_logvar.flatten(1))
        recon = adapted.decode(mu).recon
        torch.testing.assert_close(recon, (vae.decode(expected_mu) + 1) / 2)
    for layer in adapted.encoder_layers():
        ours = latent_cams(adapted, x, layer=layer)
        theirs = _captum_maps(adapted, x, layer, lambda out: out.mu)
        _assert_maps_close(ours.maps, theirs)
    assert effect_maps(adapted, mu).shape == (2, adapted.latent_dim, 16, 16)


def test_wrap_callables_named_layers_condition_and_segmentation() -> None:
    torch.manual_seed(0)
    vae = ListVAE()

    def encode(x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = vae.encode(x)
        return mu + cond.sum(1, keepdim=True), logvar

    def decode(z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return vae.decode(z)[:, :2]  # two segmentation classes, as logits

    adapted = latentcam.wrap(
        vae,
        encode=encode,
        decode=decode,
        layers=["encoder.1", "encoder.3"],
        explain_layer="encoder.1",
        image_size=16,
        latent_dim=5,
        cond_dim=2,
        outputs=("seg",),
    )
    assert adapted.encoder_layers() == ["module.encoder.1", "module.encoder.3"]
    assert adapted.explain_layer == "module.encoder.1" and adapted.method_names == (None, None)
    assert is_conditional(adapted) and has_seg_output(adapted) and not has_image_output(adapted)
    x, cond = _images(size=16), torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    out = adapted.eval()(x, cond)
    assert (
        out.recon is None and out.seg_logits is not None and out.seg_logits.shape == (2, 2, 16, 16)
    )
    torch.testing.assert_close(out.mu, vae.encode(x)[0] + cond.sum(1, keepdim=True))
    with pytest.raises(InputError, match=r"needs cond of shape \(B, 2\)"):
        adapted.encode(x)
    assert latent_cams(adapted, x, cond=cond).maps.shape == (2, 5, 8, 8)


# ----------------------------------------------------------------------------- bad input


class Broken(nn.Module):
    """encode and decode chosen by the test."""

    def __init__(self, encode: Callable[[torch.Tensor], Any], decode: Any = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 6)
        self._encode = encode
        self._decode = decode

    def encode(self, x: torch.Tensor) -> Any:
        return self._encode(self.fc(self.conv(x).flatten(1)))

    def decode(self, z: torch.Tensor) -> Any:
        if self._decode is not None:
            return self._decode(z)
        return torch.sigmoid(z[:, :3, None, None].expand(-1, -1, 16, 16))


@pytest.mark.parametrize("obj", [nn.Linear(2, 2), "vae.ckpt", None])
def test_adapt_names_what_it_accepts(obj: Any) -> None:
    with pytest.raises(InputError) as err:
        latentcam.adapt(obj)
    message = _one_line(err)
    assert message.startswith(f"latentcam.adapt cannot adapt a {type(obj).__name__}; it accepts ")
    assert "diffusers.AutoencoderKL" in message and "latentcam.wrap(" in message


@pytest.mark.parametrize(
    ("encode", "expected"),
    [
        (lambda h: h, "Broken's encode returned (2, 6); wrap needs it to return (mu, logvar)"),
        (
            lambda h: (h, h[:, :5]),
            "Broken's encode returned mu (2, 6) and logvar (2, 5) for 2 images; latentcam "
            "needs both (B, K) or both (B, C, h, w), B=2",
        ),
        (
            lambda h: (h.reshape(-1), h.reshape(-1)),
            "Broken's encode returned mu (12,) and logvar (12,) for 2 images",
        ),
        (
            lambda h: (h, None),
            "Broken's encode must give tensors (mu, logvar); got ((2, 6), NoneType)",
        ),
    ],
)
def test_wrap_rejects_an_encode_of_the_wrong_shape(encode: Any, expected: str) -> None:
    with pytest.raises(InputError) as err:
        latentcam.wrap(Broken(encode), image_size=16)
    assert expected in _one_line(err)


def test_wrap_rejects_wrong_latent_dim_layers_methods_and_sizes() -> None:
    pair = Broken(lambda h: (h, h))
    cases: list[tuple[Callable[[], Any], str]] = [
        (
            lambda: latentcam.wrap(pair, image_size=16, latent_dim=8),
            "Broken's encode returned mu (2, 6): 6 latent units per image, not latent_dim=8",
        ),
        (
            lambda: latentcam.wrap(pair, image_size=16, layers=["conv2"]),
            "Broken has no layer named 'conv2'; its conv layers are: conv",
        ),
        (
            lambda: latentcam.wrap(pair, image_size=16, layers=["fc"]),
            "layer 'fc' of Broken returns (2, 6); Grad-CAM needs a conv activation map",
        ),
        (
            lambda: latentcam.wrap(pair, image_size=16, explain_layer="fc"),
            "explain_layer 'fc' is not one of the encoder layers: conv",
        ),
        (
            lambda: latentcam.wrap(pair, encode="embed", image_size=16),
            "Broken has no method 'embed' to encode with",
        ),
        (
            lambda: latentcam.wrap(pair, image_size=32),
            "Broken cannot encode 32x32 images (RuntimeError: ",
        ),
        (
            lambda: latentcam.wrap(Broken(lambda h: (h, h), lambda z: z), image_size=16),
            "Broken decodes its image output as (2, 6) from 16x16 images; latentcam needs "
            "(2, 3, 16, 16)",
        ),
        (
            lambda: latentcam.wrap(pair, image_size=16, outputs=("image", "seg")),
            "Broken's decode returned (2, 3, 16, 16); wrap needs a tensor (one output) or a "
            "latentcam Decoded",
        ),
        (
            lambda: latentcam.wrap(pair, image_size=16, outputs=("mask",)),
            "outputs ['mask'] must be a non-empty subset of image, seg",
        ),
    ]
    for build, expected in cases:
        with pytest.raises(InputError) as err:
            build()
        assert expected in _one_line(err), expected


def test_wrap_rejects_layers_mu_does_not_depend_on() -> None:
    with pytest.raises(InputError) as err:
        latentcam.wrap(ListVAE(spatial=True), image_size=16, layers=["encoder.0", "fc_var"])
    assert _one_line(err) == "mu of ListVAE does not depend on layer 'fc_var'; name layers below mu"
    with pytest.raises(InputError) as err:
        latentcam.wrap(Broken(lambda h: (h.detach(), h.detach())), image_size=16)
    assert _one_line(err).startswith("Broken's encode computes mu without gradients")


def test_wrap_decode_may_return_decoded() -> None:
    both = Broken(
        lambda h: (h, h),
        lambda z: Decoded(
            torch.sigmoid(z[:, :3, None, None]).expand(-1, -1, 16, 16),
            z[:, :, None, None].expand(-1, -1, 16, 16),
        ),
    )
    adapted = latentcam.wrap(both, image_size=16, outputs=("image", "seg"))
    out = adapted.eval()(_images(size=16))
    assert out.recon is not None and out.seg_logits is not None and out.seg_logits.shape[1] == 6


def test_latentcam_imports_without_diffusers_or_pythae() -> None:
    import subprocess
    import sys

    code = (
        "import sys, latentcam, latentcam.models\n"
        "latentcam.adapt, latentcam.wrap\n"
        "assert not {'diffusers', 'pythae'} & set(sys.modules), sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
