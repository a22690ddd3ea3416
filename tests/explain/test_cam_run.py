"""``explain_run`` and ``latentcam explain``: the files they write hold the engine's maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from latentcam.checkpoint import CHECKPOINT_KEY, MODEL_PREFIX, checkpoint_payload
from latentcam.cli import main
from latentcam.config import RunConfig, model_config
from latentcam.explain.cam import latent_cams
from latentcam.explain.run import explain_run
from latentcam.models.registry import build_model


def write_run(folder: Path, kind: str, data_root: Path) -> Path:
    """A run folder with an (untrained, seeded) tiny model in a latentcam checkpoint."""
    cfg = RunConfig(
        model=model_config(
            kind=kind,
            image_size=16,
            latent_dim=3,
            num_layers=3,
            base_channels=4,
            max_channels=8,
            head="mlp",
            head_hidden=8,
        )
    )
    cfg.data.path = str(data_root)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    checkpoint = {
        "state_dict": {MODEL_PREFIX + k: v for k, v in model.state_dict().items()},
        CHECKPOINT_KEY: checkpoint_payload(cfg),
        "global_step": 0,
    }
    (folder / "checkpoints").mkdir(parents=True)
    torch.save(checkpoint, folder / "checkpoints" / "best.ckpt")
    return folder


@pytest.fixture
def faces(make_data: Any) -> Path:
    return make_data.celebamask_hq(n=4, size=(20, 20)).root


def test_explain_run_writes_the_engine_maps(tmp_path: Path, faces: Path) -> None:
    run = write_run(tmp_path / "run", "vae", faces)
    out = explain_run(run, faces, tmp_path / "explain", n=4, split="all", top=2)
    saved = np.load(out / "maps.npz")
    images = torch.from_numpy(saved["images"])
    assert images.shape == (4, 3, 16, 16) and 0.0 <= images.min() and images.max() <= 1.0

    from latentcam.checkpoint import load_model

    expected = latent_cams(load_model(run), images)
    np.testing.assert_allclose(saved["maps"], expected.maps.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        saved["mean_map"], expected.maps.mean(1).numpy(), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(saved["mu"], expected.output.mu.numpy(), rtol=1e-5, atol=1e-7)
    assert saved["units"].tolist() == [0, 1, 2]
    mu, logvar = expected.output.mu, expected.output.logvar
    kl = (0.5 * (mu**2 + logvar.exp() - 1 - logvar)).mean(0).numpy()
    np.testing.assert_allclose(saved["kl"], kl, rtol=1e-5, atol=1e-7)
    assert saved["shown_units"].tolist() == np.argsort(-kl)[:2].tolist()  # top by KL
    assert str(saved["layer"]) == "encoder.blocks.2" and str(saved["method"]) == "gradcam"
    shown = sorted(p.name for p in out.glob("unit_*.png"))
    assert shown == sorted(f"unit_{k:03d}.png" for k in saved["shown_units"])
    grid = np.asarray(Image.open(out / "grid.png"))
    assert grid.shape[0] > 200 and grid.shape[1] > grid.shape[0]  # 4 rows x 5 columns + bar


def test_explain_cli_with_units_for_a_cvae(
    tmp_path: Path, faces: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path / "cvae", "cvae", faces)
    out = tmp_path / "explain"
    argv = ["explain", str(run), "--data", str(faces), "--out", str(out), "--split", "all"]
    assert main([*argv, "--units", "2,0", "--method", "layercam", "--n", "3"]) == 0
    saved = np.load(out / "maps.npz")
    assert saved["maps"].shape == (3, 2, 4, 4) and saved["units"].tolist() == [2, 0]
    assert sorted(p.name for p in out.glob("unit_*.png")) == ["unit_000.png", "unit_002.png"]
    assert "maps.npz" in capsys.readouterr().out

    assert main([*argv, "--units", "5"]) == 2
    assert "unit 5 is out of range" in capsys.readouterr().err
    assert main([*argv, "--layer", "encoder.block.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Did you mean: encoder.blocks.1" in err[0]
