"""``latentcam import`` of a diffusers AutoencoderKL, a pythae model and a python factory,
then every command on the run folder it writes, end to end on 32 px synthetic faces."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from latentcam.checkpoint import load_run
from latentcam.cli import main
from latentcam.models.saved import SPEC_FILE, WEIGHTS_FILE

SIZE = 32

FACTORY_MODULE = textwrap.dedent(
    '''
    """A user's own VAE code: PyTorch-VAE style returns, wrapped for latentcam."""
    import torch
    from torch import nn

    import latentcam


    class ListVAE(nn.Module):
        def __init__(self, latent=6):
            super().__init__()
            self.encoder = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
            self.fc_mu = nn.Linear(8 * 16 * 16, latent)
            self.fc_var = nn.Linear(8 * 16 * 16, latent)
            self.fc_dec = nn.Linear(latent, 3 * 32 * 32)

        def encode(self, x):
            h = self.encoder(x).flatten(1)
            return [self.fc_mu(h), self.fc_var(h)]

        def decode(self, z):
            return torch.sigmoid(self.fc_dec(z)).view(-1, 3, 32, 32)


    def build():
        return latentcam.wrap(ListVAE(), image_size=32)


    def broken():
        raise ValueError("no such checkpoint")
    '''
)


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 synthetic faces at 32 px (4 in the validation split)."""
    from latentcam.data.synthetic import write_synthetic

    out = tmp_path_factory.mktemp("faces32") / "faces"
    return write_synthetic(out, n=40, size=SIZE, seed=0, progress=False)


@pytest.fixture(scope="module")
def diffusers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny AutoencoderKL (three blocks of 32 channels, 1 latent channel: 1x8x8 at 32 px)
    written by save_pretrained."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 32, 32),
        layers_per_block=1,
        latent_channels=1,
        norm_num_groups=32,
        sample_size=SIZE,
    )
    out = tmp_path_factory.mktemp("diffusers") / "vae"
    vae.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def pythae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pythae beta-TC-VAE with its default (MLP) networks, written by model.save."""
    models = pytest.importorskip("pythae.models")
    torch.manual_seed(0)
    model = models.BetaTCVAE(models.BetaTCVAEConfig(input_dim=(3, SIZE, SIZE), latent_dim=6))
    out = tmp_path_factory.mktemp("pythae") / "vae"
    model.save(str(out))
    return out


def _run(*argv: str | Path) -> None:
    assert main([str(a) for a in argv]) == 0


def _import(tmp_path: Path, *source: str | Path, extra: tuple[str, ...] = ()) -> Path:
    run = tmp_path / "run"
    _run("import", "--from", *source, "--out", run, *extra)
    assert sorted(p.name for p in run.iterdir()) == [SPEC_FILE, WEIGHTS_FILE]
    return run


def _npz(path: Path) -> dict[str, tuple[int, ...]]:
    with np.load(path) as arrays:
        return {k: arrays[k].shape for k in arrays.files}


def _explain_traverse_directions(run: Path, out: Path, K: int, h: int) -> None:
    _run("explain", run, "--out", out / "explain", "--n", 3, "--top", 2)
    shapes = _npz(out / "explain" / "maps.npz")
    assert shapes["maps"] == (3, K, h, h) and shapes["images"] == (3, 3, SIZE, SIZE)
    assert (out / "explain" / "grid.png").is_file()
    steps = ("--units", "0,1", "--deltas", "0.1,0.5,0.9")
    _run("traverse", run, "--out", out / "traverse", "--n", 1, *steps)
    shapes = _npz(out / "traverse" / "additive" / "traversal.npz")
    assert shapes["images"] == (1, 2, 3, 3, SIZE, SIZE) and shapes["heatmaps"] == (1, 2, 3, h, h)
    _run("directions", run, "--out", out / "dirs", "--kind", "pca", "--k", 2)
    shapes = _npz(out / "dirs" / "directions.npz")
    assert shapes["vectors"] == (2, K)


def _evaluate_report(run: Path, out: Path, K: int) -> None:
    metrics = out / "metrics.json"
    _run(
        "evaluate", run, "--out", metrics, "--no-sanity", "--max-map-images", 2,
        "--direction-images", 4, "--n", 8,
    )  # fmt: skip
    values = json.loads(metrics.read_text())
    assert values["latent_dim"] == K and values["image_size"] == SIZE
    _run("report", run, "--out", out / "report", "--n", 4, "--eval-n", 8)
    assert (out / "report" / "index.html").is_file()


def test_import_diffusers_then_every_command(
    tmp_path: Path, diffusers_dir: Path, faces: Path
) -> None:
    run = _import(tmp_path, "diffusers", diffusers_dir, extra=("--data", str(faces)))
    spec = json.loads((run / SPEC_FILE).read_text())
    assert spec["latent_shape"] == [1, 8, 8] and spec["data"] == str(faces.resolve())
    _explain_traverse_directions(run, tmp_path, K=64, h=8)
    _run("sample", run, "--out", tmp_path / "samples", "--n", 2)
    _run("reconstruct", run, "--out", tmp_path / "recon", "--n", 2, "--data", faces)
    assert (tmp_path / "samples" / "samples.png").is_file()


@pytest.mark.slow
def test_import_diffusers_evaluate_and_report(
    tmp_path: Path, diffusers_dir: Path, faces: Path
) -> None:
    run = _import(tmp_path, "diffusers", diffusers_dir, extra=("--data", str(faces)))
    _evaluate_report(run, tmp_path, K=64)


def test_import_pythae_then_every_command(tmp_path: Path, pythae_dir: Path, faces: Path) -> None:
    from latentcam.app.session import ExplorerSession

    run = _import(tmp_path, "pythae", pythae_dir, extra=("--data", str(faces)))
    assert type(load_run(run).model.module).__name__ == "BetaTCVAE"
    # pythae's MLP encoder is explained at the input image: maps are 32x32
    _explain_traverse_directions(run, tmp_path, K=6, h=SIZE)
    _evaluate_report(run, tmp_path, K=6)
    session = ExplorerSession.open(run, n=3, top=2, gallery=2)
    assert session.run.model.latent_dim == 6


def test_import_python_factory_with_weights(
    tmp_path: Path, faces: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import save_file

    name = f"user_vae_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(FACTORY_MODULE)
    monkeypatch.chdir(tmp_path)  # the module is found in the current directory
    monkeypatch.syspath_prepend(str(tmp_path))  # and again when the run is loaded
    torch.manual_seed(5)
    state = {
        "encoder.0.weight": torch.randn(8, 3, 3, 3), "encoder.0.bias": torch.randn(8),
        "fc_mu.weight": torch.randn(6, 2048), "fc_mu.bias": torch.randn(6),
        "fc_var.weight": torch.randn(6, 2048), "fc_var.bias": torch.randn(6),
        "fc_dec.weight": torch.randn(3072, 6), "fc_dec.bias": torch.randn(3072),
    }  # fmt: skip
    save_file(state, str(tmp_path / "w.safetensors"))
    run = _import(
        tmp_path,
        "python",
        f"{name}:build",
        extra=("--weights", "w.safetensors", "--data", str(faces)),
    )
    model = load_run(run).model
    torch.testing.assert_close(model.module.fc_mu.weight, state["fc_mu.weight"], rtol=0, atol=0)
    _explain_traverse_directions(run, tmp_path, K=6, h=16)


def test_import_bad_input_one_line_exit_2(
    tmp_path: Path,
    pythae_dir: Path,
    diffusers_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"user_vae_bad_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(FACTORY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    out = tmp_path / "out"
    cases = {
        ("foo", str(pythae_dir)): "unknown format 'foo'",
        ("pythae", str(tmp_path / "missing")): "model folder not found",
        ("pythae", str(diffusers_dir)): "is not a pythae model folder",
        ("python", f"{name}:broken"): "raised ValueError: no such checkpoint",
        ("python", "no_such_module_xyz:build"): "cannot find the factory",
    }
    for (fmt, where), expected in cases.items():
        assert main(["import", "--from", fmt, where, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
    argv = ["import", "--from", "pythae", str(pythae_dir), "--out", str(out)]
    assert main([*argv, "--weights", str(tmp_path / "other.pt")]) == 2
    assert "do not fit the model (missing: decoder" in capsys.readouterr().err
    assert main([*argv, "--size", "16"]) == 2
    assert "cannot encode 16x16 images" in capsys.readouterr().err
    assert not out.exists()


def test_import_factory_kwargs_recorded_and_bad_json_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    factory = "latentcam.models.pythae_nets:pythae_adapter"
    kwargs = {"objective": "vae", "model": {"image_size": SIZE, "latent_dim": 3, "num_layers": 3}}
    argv = ["import", "--from", "python", factory, "--out", str(tmp_path / "run")]
    assert main([*argv, "--kwargs", json.dumps(kwargs)]) == 0
    spec = json.loads((tmp_path / "run" / SPEC_FILE).read_text())
    assert spec["architecture"]["kwargs"] == kwargs and spec["latent_shape"] == [3]
    assert load_run(tmp_path / "run").model.explain_layer == "module.encoder.body.blocks.2"
    bad = ["import", "--from", "python", factory, "--out", str(tmp_path / "bad")]
    for text, expected in (("{oops", "--kwargs is not valid JSON"), ("[1]", "a JSON object")):
        assert main([*bad, "--kwargs", text]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "bad").exists()
