"""``latentcam train | sample | reconstruct`` and the generate API behind them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentcam.checkpoint import load_run
from latentcam.cli import build_parser, main
from latentcam.config import load_config
from latentcam.data.classes import ATTRIBUTE_IDS
from latentcam.errors import InputError
from latentcam.generate import attribute_vector, colorize_labels, reconstruct, sample

TINY = Path(__file__).resolve().parents[2] / "src" / "latentcam" / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def cache(_session_cache: Path) -> Path:
    """The session's dataset cache (tests/conftest.py): synthetic faces render once."""
    return _session_cache


def train_cli(out: Path, cache: Path, *extra: str) -> int:
    return main(
        ["train", "--config", str(TINY), "--out", str(out), "--no-progress", "--max-steps", "3",
         f"data.cache_dir={cache}", *extra]
    )  # fmt: skip


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Path:
    run = tmp_path_factory.mktemp("cli") / "cvae"
    assert train_cli(run, cache, "--model", "cvae") == 0
    return run


@pytest.fixture(scope="module")
def segvae_run(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Path:
    run = tmp_path_factory.mktemp("cli") / "segvae"
    assert train_cli(run, cache, "--model", "segvae", "data.target=binary") == 0
    return run


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# -- train -----------------------------------------------------------------------------------


def test_unknown_config_key_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_cli(tmp_path / "run", tmp_path, "model.no_such_key=1") == 2
    line = one_line_error(capsys)
    assert line.startswith("latentcam train: error:") and "model.no_such_key" in line
    assert not (tmp_path / "run").exists()


def test_flags_map_onto_config_keys_and_overrides_win() -> None:
    from latentcam.cli.train import flag_overrides

    args = build_parser().parse_args(
        ["train", "--out", "r", "--config", str(TINY), "--model", "segvae", "--size", "64",
         "--latent", "5", "model.latent_dim=15", "--layers", "4", "--max-steps", "7", "--minutes", "1.5",
         "--devices", "2", "--strategy", "ddp", "--num-nodes", "3", "--seed", "9",
         "--accelerator", "cpu", "--data", "/data/faces", "model.head=mlp"]
    )  # fmt: skip
    cfg = load_config(args.config, [*flag_overrides(args), *args.overrides])
    assert (cfg.model.kind, cfg.model.image_size, cfg.model.num_layers) == ("segvae", 64, 4)
    assert cfg.model.latent_dim == 15  # key=value beats the flag, wherever it stands
    assert args.overrides == ["model.latent_dim=15", "model.head=mlp"]
    assert cfg.model.base_channels == 4  # from tiny.yaml, untouched by flags
    assert (cfg.train.max_steps, cfg.train.epochs, cfg.train.max_minutes) == (7, -1, 1.5)
    assert (cfg.train.devices, cfg.train.strategy, cfg.train.num_nodes) == (2, "ddp", 3)
    assert (cfg.train.seed, cfg.train.accelerator, cfg.data.path) == (9, "cpu", "/data/faces")
    args = build_parser().parse_args(["train", "--out", "r", "--epochs", "3"])
    cfg = load_config([], flag_overrides(args))
    assert (cfg.train.epochs, cfg.train.max_steps) == (3, -1)
    with pytest.raises(SystemExit):  # --epochs and --max-steps exclude each other
        build_parser().parse_args(["train", "--out", "r", "--epochs", "3", "--max-steps", "4"])


def test_train_reports_and_refuses_to_overwrite(
    cvae_run: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (cvae_run / "metrics.json").is_file()
    assert train_cli(cvae_run, cache, "--model", "cvae") == 2
    assert "use --overwrite or --resume" in one_line_error(capsys)


def test_resume_takes_the_config_from_the_checkpoint(
    tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert train_cli(run, cache, "--model", "segvae", "--max-steps", "2", "--latent", "3") == 0
    capsys.readouterr()
    # no --model/--latent: they come from the checkpoint; more steps from the flag
    assert (
        main(["train", "--out", str(run), "--resume", "last", "--max-steps", "4", "--no-progress"])
        == 0
    )
    assert "trained segvae to step 4" in capsys.readouterr().out
    loaded = load_run(run / "checkpoints" / "last.ckpt")
    assert loaded.global_step == 4 and loaded.config.model.latent_dim == 3


def test_threads_are_set_before_training_and_refused_below_1(
    tmp_path: Path,
    cache: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import latentcam.training.train as training

    before = torch.get_num_threads()
    for bad in ("0", "-1"):
        assert train_cli(tmp_path / f"bad{bad}", cache, "--threads", bad) == 2
        line = one_line_error(capsys)
        assert line == f"latentcam train: error: --threads must be at least 1, got {bad}"
        assert torch.get_num_threads() == before and not (tmp_path / f"bad{bad}").exists()
    assert build_parser().parse_args(["train", "--out", "r"]).threads is None  # torch's choice

    wanted = 1 if before == 2 else 2
    seen: list[int] = []
    real_train = training.train

    def spy(*args: object, **kwargs: object) -> training.TrainResult:
        seen.append(torch.get_num_threads())
        return real_train(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(training, "train", spy)
    try:
        assert train_cli(tmp_path / "run", cache, "--threads", str(wanted)) == 0
        assert seen == [wanted] and torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)


# -- sample ----------------------------------------------------------------------------------


def test_sample_grid_is_seeded_and_attribute_controlled(
    cvae_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def grid(name: str, *extra: str) -> np.ndarray:
        out = tmp_path / name
        assert main(["sample", str(cvae_run), "--out", str(out), "--n", "6", *extra]) == 0
        return png(out / "samples.png")

    plain = grid("a", "--seed", "1")
    assert plain.shape == (2 + 34, 2 + 6 * 34, 3)  # one row of 6 tiles of 32 px, 2 px gaps
    np.testing.assert_array_equal(plain, grid("b", "--seed", "1"))
    assert not np.array_equal(plain, grid("c", "--seed", "2"))
    assert not np.array_equal(plain, grid("d", "--seed", "1", "--set", "Smiling=1", "Male=0"))
    assert main(["sample", str(cvae_run), "--out", str(tmp_path / "e"), "--set", "Smilling=1"]) == 2
    assert "did you mean Smiling" in one_line_error(capsys)
    assert main(["sample", str(cvae_run), "--out", str(tmp_path / "e"), "--set", "Smiling"]) == 2
    assert "Name=number" in one_line_error(capsys)


def test_set_needs_a_cvae(
    segvae_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sample", str(segvae_run), "--out", str(tmp_path), "--set", "Smiling=1"]) == 2
    assert "--set needs a cvae run" in one_line_error(capsys)


def test_sample_decodes_a_latent_vector_saved_by_the_app(
    cvae_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from latentcam.app.session import Z_FORMAT
    from latentcam.figures import to_uint8_hwc
    from latentcam.generate import as_pictures

    run = load_run(cvae_run)
    K = run.model.latent_dim
    z = torch.linspace(-1, 1, K)
    cond = torch.zeros(40)
    cond[ATTRIBUTE_IDS["Smiling"]] = 1.0
    record = {
        "format": Z_FORMAT,
        "run": str(cvae_run),
        "model": "cvae",
        "latent_dim": K,
        "z": z.tolist(),
        "cond": cond.tolist(),
        "offsets": [0.0] * K,
    }
    (tmp_path / "z.json").write_text(json.dumps(record))
    out = tmp_path / "decoded"
    assert main(["sample", str(cvae_run), "--z", str(tmp_path / "z.json"), "--out", str(out)]) == 0
    with torch.no_grad():
        expected = as_pictures(run.model.eval().decode(z[None], cond[None]))[0]
    want = (expected.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    got = png(out / "decoded.png")
    assert got.shape[:2] == want.shape[:2]
    assert np.abs(got[..., :3].astype(int) - want.astype(int)).max() <= 1
    record["latent_dim"], record["z"], record["offsets"] = K + 1, [0.0] * (K + 1), [0.0] * (K + 1)
    (tmp_path / "bad.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert (
        main(["sample", str(cvae_run), "--z", str(tmp_path / "bad.json"), "--out", str(out)]) == 2
    )
    assert f"holds {K + 1} latent units" in one_line_error(capsys)
    # no saved condition: the training attribute means (generate.attribute_vector's base)
    assert run.attr_means is not None
    record.update(latent_dim=K, z=z.tolist(), offsets=[0.0] * K, cond=None)
    (tmp_path / "plain.json").write_text(json.dumps(record))
    plain = tmp_path / "plain"
    assert (
        main(["sample", str(cvae_run), "--z", str(tmp_path / "plain.json"), "--out", str(plain)])
        == 0
    )
    with torch.no_grad():
        decode = run.model.decode
        by_means = to_uint8_hwc(as_pictures(decode(z[None], run.attr_means.float()[None])))[0]
        by_zeros = to_uint8_hwc(as_pictures(decode(z[None], torch.zeros(1, 40))))[0]
    got = png(plain / "decoded.png")[..., :3]
    np.testing.assert_array_equal(got, by_means)
    assert not np.array_equal(got, by_zeros)  # the condition changes some pixels
    # a vector saved from another model kind
    record["model"] = "vae"
    (tmp_path / "vae.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert (
        main(["sample", str(cvae_run), "--z", str(tmp_path / "vae.json"), "--out", str(out)]) == 2
    )
    assert f"was saved from a vae model but {cvae_run} is a cvae" in one_line_error(capsys)


def test_sample_api(cvae_run: Path) -> None:
    run = load_run(cvae_run)
    a = sample(run.model, 3, {"Smiling": 1.0}, seed=0, base=run.attr_means)
    assert a.shape == (3, 3, 32, 32) and 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    torch.testing.assert_close(
        a, sample(run.model, 3, {"Smiling": 1.0}, seed=0, base=run.attr_means)
    )
    # the named attribute is the only difference from the base condition
    cond = attribute_vector({"Smiling": 1.0}, run.attr_means)
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, run.model.decode(z, cond.expand(3, -1)).recon)


def test_attribute_vector() -> None:
    base = torch.full((40,), 0.25)
    vector = attribute_vector({"Eyeglasses": 1, "Young": 0.5}, base)
    expected = base.clone()
    expected[ATTRIBUTE_IDS["Eyeglasses"]] = 1.0
    expected[ATTRIBUTE_IDS["Young"]] = 0.5
    torch.testing.assert_close(vector, expected)
    assert float(base[ATTRIBUTE_IDS["Eyeglasses"]]) == 0.25  # the base is not modified
    torch.testing.assert_close(attribute_vector(None), torch.zeros(40))
    with pytest.raises(InputError, match="did you mean Eyeglasses"):
        attribute_vector({"Eyeglass": 1})


def test_sample_refuses_attributes_for_unconditional_models(segvae_run: Path) -> None:
    model = load_run(segvae_run).model
    with pytest.raises(InputError, match="conditional model"):
        sample(model, 2, {"Smiling": 1.0})
    masks = sample(model, 2, None, seed=0)  # a segvae without image head draws its masks
    assert masks.shape == (2, 3, 32, 32)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}  # black/white binary masks


# -- reconstruct -----------------------------------------------------------------------------


def test_reconstruct_grid(cvae_run: Path, tmp_path: Path) -> None:
    assert (
        main(["reconstruct", str(cvae_run), "--data", "synth", "--out", str(tmp_path), "--n", "4"])
        == 0
    )
    grid = png(tmp_path / "reconstruct.png")
    assert grid.shape == (2 + 2 * 34, 2 + 4 * 34, 3)  # inputs row, reconstructions row


def test_reconstruct_segvae_adds_mask_rows(segvae_run: Path, tmp_path: Path) -> None:
    assert (
        main(
            ["reconstruct", str(segvae_run), "--data", "synth", "--out", str(tmp_path), "--n", "3"]
        )
        == 0
    )
    grid = png(tmp_path / "reconstruct.png")
    assert grid.shape == (2 + 3 * 34, 2 + 3 * 34, 3)  # inputs, predicted masks, true masks
    true_masks = grid[2 + 2 * 34 : 2 + 2 * 34 + 32, 2 : 2 + 32]
    assert set(np.unique(true_masks)) <= {0, 255}


def test_reconstruct_api_matches_the_model(cvae_run: Path) -> None:
    run = load_run(cvae_run)
    x, cond = torch.rand(2, 3, 32, 32), torch.ones(2, 40)
    torch.testing.assert_close(reconstruct(run.model, x, cond), run.model(x, cond).recon)


def test_colorize_labels_gives_each_part_its_colour() -> None:
    labels = torch.arange(19).view(1, 1, 19)
    rgb = colorize_labels(labels, 19)
    assert rgb.shape == (1, 3, 1, 19)
    colours = {tuple(rgb[0, :, 0, i].tolist()) for i in range(19)}
    assert len(colours) == 19
    binary = colorize_labels(torch.tensor([[[0, 1]]]), 2)
    assert (
        binary[0, :, 0, 0].tolist() == [0.0, 0.0, 0.0] and binary[0, :, 0, 1].tolist() == [1.0] * 3
    )
