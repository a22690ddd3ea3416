"""latentcam's networks inside pythae models: the same function as our VAE, pythae's losses
run on them, and the factory of ``latentcam import --from python`` round-trips."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from latentcam.config import model_config
from latentcam.errors import InputError
from latentcam.models.pythae_nets import OBJECTIVES, pythae_adapter, pythae_model
from latentcam.models.saved import SPEC_FILE, import_model, load_adapted
from latentcam.models.vae import VAE

TINY = {"image_size": 32, "latent_dim": 4, "num_layers": 3, "base_channels": 4, "max_channels": 16}


def _as_pythae_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our VAE's state dict under the pythae model's names."""
    prefixes = {
        "encoder.": "encoder.body.",
        "head.": "encoder.head.",
        "decoder.": "decoder.body.",
        "image_head.": "decoder.image_head.",
    }
    out = {}
    for key, value in state.items():
        old = next(p for p in prefixes if key.startswith(p))
        out[prefixes[old] + key.removeprefix(old)] = value
    return out


def test_pythae_networks_compute_what_our_vae_computes() -> None:
    torch.manual_seed(0)
    ours = VAE(model_config(kind="vae", **TINY)).eval()
    model = pythae_model("betatc", TINY).eval()
    model.load_state_dict(_as_pythae_names(ours.state_dict()), strict=True)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        mu, logvar = ours.encode(x)
        encoded = model.encoder(x)
        torch.testing.assert_close(encoded.embedding, mu, rtol=0, atol=0)
        torch.testing.assert_close(encoded.log_covariance, logvar, rtol=0, atol=0)
        recon = ours.decode(mu).recon
        torch.testing.assert_close(model.decoder(mu).reconstruction, recon, rtol=0, atol=0)


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_pythae_losses_run_and_train_the_networks(objective: str) -> None:
    torch.manual_seed(1)
    model = pythae_model(objective, TINY)
    x = torch.rand(8, 3, 32, 32)
    out = model({"data": x}, dataset_size=100)
    assert out.loss.dim() == 0 and math.isfinite(float(out.loss.detach()))
    out.loss.backward()
    grad = model.encoder.body.blocks[0].conv.weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0


def test_adapter_explains_the_conv_blocks() -> None:
    adapted = pythae_adapter("betavae", TINY, {"beta": 4.0})
    ours = VAE(model_config(kind="vae", **TINY))
    names = [f"module.encoder.body.blocks.{i}" for i in range(3)]
    assert adapted.encoder_layers() == names
    assert adapted.explain_layer == names[-1]
    shapes = [(s.channels, s.size) for s in adapted.encoder_shapes()]
    assert shapes == [(s.channels, s.size) for s in ours.encoder_shapes()]
    assert adapted.latent_shape == (4,) and type(adapted.module).__name__ == "BetaVAE"
    assert adapted.module.beta == 4.0


def test_factory_import_with_kwargs_and_pythae_weights(tmp_path: Path) -> None:
    torch.manual_seed(2)
    kwargs = {"objective": "betatc", "model": TINY, "params": {"beta": 6.0}}
    trained = pythae_model(**kwargs)
    trained.save(str(tmp_path / "saved"))  # pythae's save: model.pt + pickled networks
    run = import_model(
        "python",
        "latentcam.models.pythae_nets:pythae_adapter",
        tmp_path / "run",
        weights=tmp_path / "saved" / "model.pt",
        kwargs=kwargs,
    )
    spec = json.loads((run / SPEC_FILE).read_text())
    assert spec["architecture"]["kwargs"] == kwargs
    loaded = load_adapted(run)
    assert loaded.module.beta == 6.0
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        want = trained.eval().encoder(x).embedding
        torch.testing.assert_close(loaded.encode(x)[0], want, rtol=0, atol=0)


def test_bad_arguments_name_what_is_wrong() -> None:
    with pytest.raises(InputError, match="unknown objective 'factor'"):
        pythae_model("factor", TINY)
    with pytest.raises(InputError, match="unknown model field 'width'"):
        pythae_model("vae", {**TINY, "width": 3})
    with pytest.raises(InputError, match="BetaVAEConfig has no field 'gamma'"):
        pythae_model("betavae", TINY, {"gamma": 2.0})
    with pytest.raises(InputError, match="mirror the plain VAE"):
        pythae_model("vae", {**TINY, "kind": "cvae"})
    with pytest.raises(InputError, match="vector latent"):
        pythae_model("vae", {**TINY, "bottleneck": "spatial"})
    with pytest.raises(InputError, match="factory arguments are for --from python"):
        import_model("pythae", "somewhere", "out", kwargs={"a": 1})
