"""Self-describing checkpoints: load_model / load_run with nothing else, clear errors for
every bad file, atomic saves that never leave a truncated .ckpt or save NaN weights."""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

import latentcam
from latentcam.checkpoint import (
    CHECKPOINT_KEY,
    check_image_size,
    load_model,
    load_run,
    resolve_checkpoint,
)
from latentcam.config import load_config
from latentcam.errors import CheckpointError, InputError, OutputError
from latentcam.models.registry import build_model
from latentcam.training.callbacks import AtomicCheckpointIO, TrainingDivergedError
from latentcam.training.train import TrainResult, train

TINY = Path(__file__).resolve().parents[1] / "src" / "latentcam" / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, _session_cache: Path) -> TrainResult:
    base = tmp_path_factory.mktemp("ckpt")
    cfg = load_config([TINY], [f"data.cache_dir={_session_cache}", "train.max_steps=3"])
    return train(cfg, base / "run", progress=False)


def test_package_level_load_model(run: TrainResult) -> None:
    model = latentcam.load_model(run.run_dir)
    assert type(model).__name__ == "VAE" and not model.training
    # a run folder means best.ckpt; the file itself works too
    assert resolve_checkpoint(run.run_dir) == run.run_dir / "checkpoints" / "best.ckpt"
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(model(x).mu, load_model(run.best_ckpt)(x).mu)


def test_falls_back_to_last_without_best(run: TrainResult, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run.run_dir, copy)
    (copy / "checkpoints" / "best.ckpt").unlink()
    loaded = load_run(copy)
    assert loaded.checkpoint_path == copy / "checkpoints" / "last.ckpt" and loaded.run_dir == copy


def test_missing_file_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_model(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        load_model(tmp_path)


def test_a_missing_capability_is_refused(run: TrainResult) -> None:
    assert load_model(run.run_dir, needs="image") is not None
    with pytest.raises(CheckpointError, match="holds a model without a segmentation output"):
        load_model(run.run_dir, needs="segmentation")
    with pytest.raises(CheckpointError, match="without a condition"):
        load_model(run.run_dir, needs="condition")
    with pytest.raises(InputError, match="needs must be one of image, segmentation, condition"):
        load_model(run.run_dir, needs="segvae")


def test_wrong_image_size(run: TrainResult) -> None:
    cfg = load_run(run.run_dir).config.model
    check_image_size(cfg, 32)
    check_image_size(cfg, (32, 32))
    with pytest.raises(InputError, match=r"built for 32x32 images, but the data is 64x64"):
        check_image_size(cfg, 64)
    with pytest.raises(InputError, match=r"data is 32x48"):
        check_image_size(cfg, (32, 48))


@pytest.mark.parametrize("keep", [0, 100, 0.5])
def test_truncated_or_garbage_file(run: TrainResult, tmp_path: Path, keep: float) -> None:
    data = run.last_ckpt.read_bytes() if run.last_ckpt else b""
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(data[: int(len(data) * keep)] if isinstance(keep, float) else data[:keep])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(bad)
    bad.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(bad)


def test_foreign_checkpoint(tmp_path: Path) -> None:
    foreign = tmp_path / "other.ckpt"
    torch.save({"state_dict": build_model(load_config([TINY]).model).state_dict()}, foreign)
    with pytest.raises(CheckpointError, match="not a latentcam checkpoint"):
        load_model(foreign)
    torch.save([1, 2, 3], foreign)
    with pytest.raises(CheckpointError, match="not a latentcam checkpoint"):
        load_model(foreign)


def test_state_dict_mismatch(run: TrainResult, tmp_path: Path) -> None:
    assert run.last_ckpt is not None
    checkpoint = torch.load(run.last_ckpt, weights_only=True)
    # the config says K = 8; pretend it said K = 9: the weights no longer fit
    checkpoint[CHECKPOINT_KEY]["config"]["model"]["latent_dim"] = 9
    edited = tmp_path / "edited.ckpt"
    torch.save(checkpoint, edited)
    with pytest.raises(
        CheckpointError, match=r"wrong shape: \S+ \(8, \d+\) in the file vs \(9, \d+\) in the model"
    ):
        load_model(edited)
    # a renamed parameter is listed as missing/unexpected
    checkpoint = torch.load(run.last_ckpt, weights_only=True)
    name = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"]["model.renamed"] = checkpoint["state_dict"].pop(name)
    torch.save(checkpoint, edited)
    with pytest.raises(
        CheckpointError, match=f"missing: {name.removeprefix('model.')}.*unexpected: renamed"
    ):
        load_model(edited)


def test_future_format_is_refused(run: TrainResult, tmp_path: Path) -> None:
    assert run.last_ckpt is not None
    checkpoint = torch.load(run.last_ckpt, weights_only=True)
    checkpoint[CHECKPOINT_KEY]["format"] = 99
    path = tmp_path / "future.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="format 99"):
        load_model(path)


def test_atomic_save_keeps_the_old_file_when_interrupted(
    run: TrainResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run.last_ckpt is not None
    target = tmp_path / "last.ckpt"
    shutil.copy(run.last_ckpt, target)
    before = target.read_bytes()
    checkpoint = torch.load(run.last_ckpt, weights_only=True)

    def dies_half_way(obj: object, fh: object, *args: object, **kwargs: object) -> None:
        fh.write(b"PK\x03\x04 half a checkpoint")  # type: ignore[attr-defined]
        raise KeyboardInterrupt  # what a kill looks like to the writer

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint(checkpoint, target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left behind
    assert load_model(target) is not None

    AtomicCheckpointIO().save_checkpoint(checkpoint, tmp_path / "new.ckpt")
    assert load_run(tmp_path / "new.ckpt").global_step == checkpoint["global_step"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT])
def test_a_save_on_a_full_disk_is_one_line_and_leaves_no_temp(
    run: TrainResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    assert run.last_ckpt is not None
    target = tmp_path / "last.ckpt"
    shutil.copy(run.last_ckpt, target)
    before = target.read_bytes()
    checkpoint = torch.load(run.last_ckpt, weights_only=True)

    def disk_full(obj: object, fh: object, *args: object, **kwargs: object) -> None:
        fh.write(b"PK\x03\x04 half a checkpoint")  # type: ignore[attr-defined]
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OutputError, match=f"cannot write {re.escape(str(target))}: ") as caught:
        AtomicCheckpointIO().save_checkpoint(checkpoint, target)
    assert "\n" not in str(caught.value)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_nan_weights_are_never_saved(run: TrainResult, tmp_path: Path) -> None:
    assert run.last_ckpt is not None
    checkpoint = torch.load(run.last_ckpt, weights_only=True)
    name = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][name] = checkpoint["state_dict"][name] * float("nan")
    with pytest.raises(TrainingDivergedError, match=f"refusing to save.*{name}"):
        AtomicCheckpointIO().save_checkpoint(checkpoint, tmp_path / "nan.ckpt")
    assert not list(tmp_path.iterdir())
