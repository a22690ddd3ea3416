"""Every number is checked where it enters (issue #20.4): command-line numbers by their
argparse type (latentcam.cli.numbers), config numbers by the config's validators, unit
ranges before they are expanded, sizes by an estimate before the work, checkpoint weights
when they load. Each bad value exits 2 with one line that gives the allowed range, and
nothing (no config.yaml, no output folder) is written first.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from latentcam.checkpoint import load_run
from latentcam.cli import main
from latentcam.config import load_config
from latentcam.errors import CheckpointError, ConfigError, InputError
from latentcam.runs import parse_unit_ranges, parse_units


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("latentcam ") and ": error: " in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("train.max_minutes=nan", "'train.max_minutes' must be a finite number from 0 to"),
        ("train.max_minutes=inf", "'train.max_minutes' must be a finite number"),
        ("train.max_minutes=-1", "'train.max_minutes' must be from 0 to 10000000"),
        ("train.lr=.nan", "'train.lr' must be a finite number > 0, got nan"),
        ("train.lr=0", "'train.lr' must be > 0"),
        ("train.seed=-5", "'train.seed' must be from 0 to 4294967295, got -5"),
        ("train.beta=-0.5", "'train.beta' must be >= 0, got -0.5"),
        ("train.grad_clip=nan", "'train.grad_clip' must be a finite number >= 0 (0 = off)"),
        ("train.weight_decay=-1", "'train.weight_decay' must be >= 0"),
        ("train.epochs=-3", "'train.epochs' must be >= -1"),
        ("train.val_check_interval=0", "'train.val_check_interval' must be > 0"),
        ("train.ema_decay=nan", "'train.ema_decay' must be a finite number in [0, 1)"),
        ("data.val_fraction=nan", "'data.val_fraction' must be a finite number in [0, 1)"),
        ("data.limit=-1", "'data.limit' must be >= 0 (0 = all)"),
        ("model.logvar_init=-inf", "'model.logvar_init' must be a finite number, got -inf"),
    ],
)
def test_config_numbers(override: str, says: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        load_config(["tiny"], [override])
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_nan_in_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lr: .nan\n")
    with pytest.raises(ConfigError, match=r"'train.lr' must be a finite number > 0, got nan"):
        load_config([path])


@pytest.mark.parametrize(
    "extra",
    [["train.max_minutes=nan"], ["--seed", "-5"], ["--minutes", "inf"], ["--minutes", "nan"]],
)
def test_train_writes_nothing_before_the_numbers_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    run = tmp_path / "run"
    assert run_cli(["train", "--config", "tiny", "--out", str(run), "--no-progress", *extra]) == 2
    assert "must be" in one_line(capsys)
    assert not run.exists()


#: argv, fragment: command-line numbers refused by their type.
CLI_CASES = [
    ("demo --out {out} --minutes inf", "--minutes: must be a finite number > 0 and <= 10080"),
    ("demo --out {out} --minutes nan", "got nan"),
    ("demo --out {out} --n 0", "--n: must be an integer from 50 to 100000"),
    ("sample {vae} --out {out} --n 0", "--n: must be an integer >= 1, got 0"),
    ("sample {vae} --out {out} --seed -5", "--seed: must be an integer from 0 to 4294967295"),
    ("synth --out {out} --seed -1", "--seed: must be an integer from 0 to 4294967295"),
    ("app {vae} --port 70000", "--port: must be a port from 1 to 65535, or 0 to pick a free one"),
    ("app {vae} --port -1", "got -1"),
    ("app {vae} --port http", "got 'http'"),
    ("explain {vae} --out {out} --top -2", "--top: must be an integer >= 1, got -2"),
    ("evaluate {vae} --out {out}.json --max-map-images 0", "--max-map-images: must be an"),
    ("directions {vae} --out {out} --k 0", "--k: must be an integer >= 1"),
    ("directions {vae} --out {out} --max-images 1", "--max-images: must be an integer >= 2"),
    ("data info synth --seed -1", "--seed: must be an integer from 0"),
    ("sweep --out {out} --grid latent=4 --eval-n 0", "--eval-n: must be an integer >= 1"),
]


@pytest.mark.parametrize(("argv", "says"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_command_line_numbers(
    argv: str,
    says: str,
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    words = [w.format(vae=runs["vae"], out=out) for w in argv.split()]
    assert run_cli(words) == 2
    line = one_line(capsys)
    assert says in line, line
    assert not out.exists() and not Path(f"{out}.json").exists()


def test_unit_ranges_are_not_expanded_before_the_check(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ranges = parse_unit_ranges("0-300000000,5")
    assert ranges == [range(0, 300000001), range(5, 6)]  # nothing expanded
    with pytest.raises(InputError, match=r"range 0-300000000 is out of range; .* units 0\.\.7"):
        parse_units("0-300000000", 8)
    with pytest.raises(InputError, match="range '5-2' ends before it starts; write 2-5"):
        parse_units("5-2", 8)
    assert parse_units("1-3,0", 8) == [1, 2, 3, 0]
    out = tmp_path / "out"
    assert run_cli(["explain", str(runs["vae"]), "--out", str(out), "--units", "0-300000000"]) == 2
    assert "range 0-300000000 is out of range" in one_line(capsys)
    assert not out.exists()


def test_sizes_get_an_estimate_and_a_refusal(
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out"
    assert run_cli(["sample", str(runs["vae"]), "--out", str(out), "--n", "100000000"]) == 2
    line = one_line(capsys)
    assert "100000000 samples at 32 px need about 9.8 TB of memory" in line and "lower --n" in line
    assert run_cli(["synth", "--out", str(out), "--n", "100000000"]) == 2
    line = one_line(capsys)
    assert "100000000 faces at 64 px need about 6.3 TB on disk" in line and "only" in line
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=10**12))
    assert run_cli(["synth", "--out", str(out), "--n", "40000"]) == 2
    assert "need about 2.5 GB on disk" in (line := one_line(capsys)) and "add --yes" in line
    assert not out.exists()


@pytest.mark.parametrize("value", ["nan", "2", "-1", "inf"])
def test_set_values_lie_in_0_1(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    out = tmp_path / "out"
    assert (
        run_cli(["sample", str(runs["cvae"]), "--out", str(out), "--set", f"Smiling={value}"]) == 2
    )
    assert "attribute values must lie in [0, 1]" in one_line(capsys)
    assert not out.exists()


def test_latent_vector_must_be_finite_as_float32(runs: dict[str, Path], tmp_path: Path) -> None:
    from latentcam.app.session import read_z_file

    path = tmp_path / "z.json"
    record = {"format": "latentcam-z/1", "model": "vae", "latent_dim": 2, "offsets": [0, 0]}
    path.write_text(json.dumps({**record, "z": [1e39, 0.0]}))
    with pytest.raises(InputError, match=r"finite numbers within \+-50"):
        read_z_file(path)


def test_a_checkpoint_with_nan_weights_is_refused_on_load(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = torch.load(runs["vae"] / "checkpoints" / "last.ckpt", weights_only=True)
    name = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][name] = checkpoint["state_dict"][name] * float("nan")
    bad = tmp_path / "nan.ckpt"
    torch.save(checkpoint, bad)
    with pytest.raises(CheckpointError, match=rf"hold NaN or Inf \({name}"):
        load_run(bad)
    out = tmp_path / "out"
    assert run_cli(["sample", str(bad), "--out", str(out)]) == 2
    assert "hold NaN or Inf" in one_line(capsys)
    assert run_cli(["train", "--out", str(tmp_path / "r"), "--resume", str(bad)]) == 2
    assert "hold NaN or Inf" in one_line(capsys)
    assert not out.exists() and not (tmp_path / "r").exists()
