"""Adapted models as self-describing run folders: adapter.json + weights.safetensors, read
back by load_run with nothing else."""

from __future__ import annotations

import json
import struct
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import latentcam
from latentcam.checkpoint import load_run
from latentcam.errors import CheckpointError, InputError
from latentcam.models.adapters import Adapter
from latentcam.models.saved import SPEC_FILE, WEIGHTS_FILE, adapter_spec, load_adapted, save_adapted

FACTORY_MODULE = textwrap.dedent(
    '''
    """A user's own VAE code, importable by name (PyTorch-VAE style returns)."""
    import torch
    from torch import nn


    class ListVAE(nn.Module):
        def __init__(self, latent):
            super().__init__()
            self.encoder = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
            self.fc_mu = nn.Linear(8 * 8 * 8, latent)
            self.fc_var = nn.Linear(8 * 8 * 8, latent)
            self.fc_dec = nn.Linear(latent, 3 * 16 * 16)

        def encode(self, x):
            h = self.encoder(x).flatten(1)
            return [self.fc_mu(h), self.fc_var(h)]

        def decode(self, z):
            return torch.sigmoid(self.fc_dec(z)).view(-1, 3, 16, 16)


    def build(latent=5):
        return ListVAE(latent)


    def broken(latent=5):
        raise ValueError(f"no weights for latent={latent}")
    '''
)


@pytest.fixture
def factory_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module ``user_vaes_<n>`` on sys.path; returns its name."""
    name = f"user_vaes_{abs(hash(tmp_path)) % 10**8}"
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / f"{name}.py").write_text(FACTORY_MODULE)
    monkeypatch.syspath_prepend(str(code_dir))
    return name


def _images(n: int = 2, size: int = 64) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(3))


def _assert_same_model(a: Adapter, b: Adapter, x: torch.Tensor) -> None:
    with torch.no_grad():
        out_a, out_b = a.eval()(x), b.eval()(x)
    torch.testing.assert_close(out_a.mu, out_b.mu, rtol=0, atol=0)
    torch.testing.assert_close(out_a.recon, out_b.recon, rtol=0, atol=0)
    assert a.encoder_layers() == b.encoder_layers() and a.explain_layer == b.explain_layer


def _is_safetensors(path: Path) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON header."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return raw[8 : 8 + 1] == b"{" and json.loads(raw[8 : 8 + length]) is not None


def test_autoencoder_kl_run_folder_round_trip(tmp_path: Path) -> None:
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(32, 32),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=32,
    )
    adapted = latentcam.adapt(vae)
    assert isinstance(adapted, Adapter)
    out = save_adapted(adapted, tmp_path / "run", data="synth")
    assert sorted(p.name for p in out.iterdir()) == [SPEC_FILE, WEIGHTS_FILE]
    assert _is_safetensors(out / WEIGHTS_FILE)
    spec = json.loads((out / SPEC_FILE).read_text())
    assert spec["architecture"]["library"] == "diffusers"
    assert spec["architecture"]["config"]["block_out_channels"] == [32, 32]
    assert spec["image_size"] == 32 and spec["latent_shape"] == [4, 16, 16]
    assert spec["explain_layer"] == "module.encoder.down_blocks.1" and spec["data"] == "synth"

    torch.manual_seed(1)  # the rebuilt model starts from other random weights
    run = load_run(out)
    assert isinstance(run.model, Adapter) and run.run_dir == out
    assert run.config.model.kind == "vae" and run.config.model.image_size == 32
    assert run.config.model.latent_dim == 1024 and run.config.data.path == "synth"
    assert not run.model.training
    _assert_same_model(adapted, run.model, _images(size=32))
    with pytest.raises(CheckpointError, match=r"without a segmentation output"):
        load_run(out, needs="segmentation")
    with pytest.raises(InputError, match=r"already holds a run; choose a new folder"):
        save_adapted(adapted, out)


def test_pythae_run_folder_round_trip(tmp_path: Path) -> None:
    models = pytest.importorskip("pythae.models")
    torch.manual_seed(0)
    vae = models.BetaTCVAE(models.BetaTCVAEConfig(input_dim=(3, 16, 16), latent_dim=3))
    adapted = latentcam.adapt(vae)
    assert isinstance(adapted, Adapter)
    out = save_adapted(adapted, tmp_path / "run")
    arch = json.loads((out / SPEC_FILE).read_text())["architecture"]
    assert (arch["library"], arch["model"], arch["config_class"]) == (
        "pythae",
        "BetaTCVAE",
        "BetaTCVAEConfig",
    )
    loaded = load_adapted(out)
    assert type(loaded.module) is type(vae) and loaded.module.model_config.beta == 1.0
    _assert_same_model(adapted, loaded, _images(size=16))


def test_wrapped_code_run_folder_round_trip(tmp_path: Path, factory_module: str) -> None:
    import importlib

    module = importlib.import_module(factory_module)
    torch.manual_seed(0)
    wrapped = latentcam.wrap(module.build(latent=4), image_size=16)
    out = save_adapted(
        wrapped, tmp_path / "run", factory=f"{factory_module}:build", kwargs={"latent": 4}
    )
    arch = json.loads((out / SPEC_FILE).read_text())["architecture"]
    assert arch["wrap"]["layers"] == ["encoder.0"] and arch["wrap"]["encode"] == "encode"
    loaded = load_run(out).model
    assert isinstance(loaded, Adapter)
    _assert_same_model(wrapped, loaded, _images(size=16))


def _edit_spec(out: Path, edit: Any) -> None:
    spec = json.loads((out / SPEC_FILE).read_text())
    edit(spec)
    (out / SPEC_FILE).write_text(json.dumps(spec))


def test_bad_run_folders_get_one_line(tmp_path: Path, factory_module: str) -> None:
    import importlib

    module = importlib.import_module(factory_module)
    wrapped = latentcam.wrap(module.build(latent=4), image_size=16)
    factory = f"{factory_module}:build"

    def saved(name: str) -> Path:
        return save_adapted(wrapped, tmp_path / name, factory=factory, kwargs={"latent": 4})

    raising = saved("raising")
    _edit_spec(raising, lambda s: s["architecture"].update(factory=f"{factory_module}:broken"))
    other_shape = saved("other_shape")
    _edit_spec(other_shape, lambda s: s["architecture"].update(kwargs={"latent": 6}))
    other_weights = saved("other_weights")  # spec and code agree, the weights do not

    def six_units(spec: dict[str, Any]) -> None:
        spec["architecture"].update(kwargs={"latent": 6})
        spec["latent_shape"] = [6]

    _edit_spec(other_weights, six_units)
    corrupt = saved("corrupt")
    (corrupt / WEIGHTS_FILE).write_bytes(b"\x00" * 5)
    missing = saved("missing")
    _edit_spec(missing, lambda s: s["architecture"].update(factory="no_such_module_xyz:build"))
    unknown = saved("unknown")
    _edit_spec(unknown, lambda s: s["architecture"].update(library="keras"))

    cases = [
        (
            raising,
            f"the factory '{factory_module}:broken' raised ValueError: no weights for latent=4",
        ),
        (other_shape, "has latent shape (6,), the spec records (4,)"),
        (
            other_weights,
            "do not fit the model its spec describes (size mismatch for module.fc_mu.weight: "
            "copying a param with shape torch.Size([4, 512]) from checkpoint, the shape in "
            "current model is torch.Size([6, 512]).; size mismatch for module.fc_mu.bias",
        ),
        (corrupt, f"cannot read the weights in {corrupt / WEIGHTS_FILE}: the file is truncated"),
        (missing, "cannot find the factory 'no_such_module_xyz:build' (ModuleNotFoundError"),
        (unknown, "names library 'keras'; a spec names its architecture"),
    ]
    for path, expected in cases:
        with pytest.raises(CheckpointError) as err:
            load_run(path)
        message = str(err.value)
        assert "\n" not in message and expected in message, (path.name, message)


def test_models_a_spec_cannot_describe(tmp_path: Path) -> None:
    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3, stride=2, padding=1)

        def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.conv(x).flatten(1)
            return h, h

        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(z[:, :3, None, None]).expand(-1, -1, 16, 16)

    plain = Plain()
    with pytest.raises(InputError, match=r"a WrappedVAE is rebuilt from code: give factory="):
        adapter_spec(latentcam.wrap(plain, image_size=16))
    with pytest.raises(InputError, match=r"given encode/decode as callables"):
        adapter_spec(latentcam.wrap(plain, encode=plain.encode, image_size=16), factory="m:f")
    with pytest.raises(InputError, match=r"must be 'package.module:function'"):
        adapter_spec(latentcam.wrap(plain, image_size=16), factory="build")
    with pytest.raises(InputError, match=r"only adapted models"):
        save_adapted(nn.Linear(2, 2), tmp_path / "run")  # type: ignore[arg-type]
