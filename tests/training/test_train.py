"""train(): run folders, metrics, resume, determinism, refusal to overwrite, divergence.

Every run is the ``configs/tiny.yaml`` recipe (32 px synthetic faces, 64 of them, 3 conv
blocks of 4 -> 16 channels, K = 8, 6 steps): about a second each on one CPU thread.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from latentcam import load_model
from latentcam.checkpoint import load_run
from latentcam.config import RunConfig, load_config
from latentcam.data.augment import flip_lr
from latentcam.data.classes import PART_NAMES
from latentcam.data.dataset import FaceDataset
from latentcam.errors import CheckpointError, ConfigError, InputError
from latentcam.models.base import VAEOutput
from latentcam.training import losses
from latentcam.training.callbacks import TrainingDivergedError, ema_warmup_decay
from latentcam.training.datamodule import (
    GPU_WORKERS,
    FaceDataModule,
    ShardedBatches,
    loader_workers,
)
from latentcam.training.module import ACTIVE_KL_THRESHOLD, LatentcamModule
from latentcam.training.train import TrainResult, resolve_precision, train

TINY = Path(__file__).resolve().parents[2] / "src" / "latentcam" / "configs" / "tiny.yaml"

#: Per kind: the overrides on top of tiny.yaml.
KINDS: dict[str, list[str]] = {
    "vae": ["model.kind=vae"],
    "cvae": ["model.kind=cvae"],
    "segvae_binary": ["model.kind=segvae", "model.seg_classes=1", "data.target=binary"],
    "segvae_parts": ["model.kind=segvae", "model.seg_classes=19", "data.target=parts"],
}


@pytest.fixture(scope="module")
def cache(_session_cache: Path) -> Path:
    """The session's dataset cache (tests/conftest.py): synthetic faces render once."""
    return _session_cache


def tiny(cache: Path, *overrides: str) -> RunConfig:
    return load_config([TINY], [f"data.cache_dir={cache}", *overrides])


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, cache: Path
) -> dict[str, tuple[RunConfig, TrainResult]]:
    """One finished tiny run per model kind (shared by the tests of this module)."""
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for name, overrides in KINDS.items():
        cfg = tiny(cache, *overrides)
        out[name] = (cfg, train(cfg, base / name, progress=False))
    return out


@pytest.mark.parametrize("name", list(KINDS))
def test_run_folder_metrics_and_checkpoints(name: str, runs: dict) -> None:
    cfg, result = runs[name]
    run = result.run_dir
    for rel in ("config.yaml", "metrics.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (run / rel).is_file(), rel
    assert list((run / "logs").glob("version_0/metrics.csv"))
    assert result.best_ckpt == run / "checkpoints" / "best.ckpt"
    assert result.last_ckpt == run / "checkpoints" / "last.ckpt"

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.metrics))
    assert metrics["global_step"] == 6 and metrics["start_step"] == 0
    model = load_model(run)
    assert metrics["param_count"] == sum(p.numel() for p in model.parameters())
    K = cfg.model.latent_dim
    assert len(metrics["kl_per_unit"]) == K
    active = sum(v > ACTIVE_KL_THRESHOLD for v in metrics["kl_per_unit"])
    assert metrics["val/active_units"] == active
    assert metrics["active_units_threshold_nats"] == ACTIVE_KL_THRESHOLD
    # val/kl is the per-unit KL summed over units (both are means over the same images)
    assert metrics["val/kl"] == pytest.approx(sum(metrics["kl_per_unit"]), rel=1e-5)
    assert metrics["train_seconds"] > 0 and metrics["precision"] == "32-true"
    assert math.isfinite(metrics["val/loss"]) and metrics["best_val_loss"] <= metrics["val/loss"]

    if name in ("vae", "cvae"):
        # PSNR is computed from the pooled per-pixel MSE with data range 1
        assert metrics["val/psnr"] == pytest.approx(-10 * math.log10(metrics["val/mse"]), rel=1e-4)
        assert 0.0 < metrics["val/ssim"] < 1.0
        assert "val/miou" not in metrics
    else:
        assert "val/mse" not in metrics
        per_class = metrics["iou_per_class"]
        names = ("not_mask", "mask") if name == "segvae_binary" else PART_NAMES
        assert list(per_class) == list(names)
        present = [v for v in per_class.values() if v is not None]
        assert metrics["val/miou"] == pytest.approx(sum(present) / len(present), rel=1e-5)
        assert 0.0 <= metrics["val/iou_binary"] <= 1.0
        if name == "segvae_binary":  # the binary IoU is the IoU of the mask class
            assert metrics["val/iou_binary"] == pytest.approx(per_class["mask"], rel=1e-5)


@pytest.mark.parametrize("name", list(KINDS))
def test_checkpoint_alone_rebuilds_the_model_and_config(name: str, runs: dict) -> None:
    cfg, result = runs[name]
    assert load_config([result.run_dir / "config.yaml"]) == cfg  # config.yaml round-trips
    loaded = load_run(result.last_ckpt)
    assert loaded.config == cfg and loaded.run_dir == result.run_dir
    assert loaded.global_step == 6 and not loaded.model.training
    state = torch.load(result.last_ckpt, weights_only=True)["state_dict"]
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, state[f"model.{key}"], rtol=0, atol=0)
    if name == "cvae":  # attribute means of the training split travel with the model
        assert loaded.attr_means is not None and loaded.attr_means.shape == (40,)
        assert ((loaded.attr_means >= 0) & (loaded.attr_means <= 1)).all()
    # the model works on images of its size
    out = loaded.model(
        torch.rand(2, 3, 32, 32), torch.zeros(2, 40) if cfg.model.kind == "cvae" else None
    )
    assert isinstance(out, VAEOutput) and out.mu.shape == (2, cfg.model.latent_dim)


def test_same_seed_same_metrics(runs: dict, cache: Path, tmp_path: Path) -> None:
    cfg, first = runs["vae"]
    again = train(cfg, tmp_path / "again", progress=False)
    for key in ("val/loss", "val/mse", "val/kl", "kl_per_unit", "best_val_loss"):
        assert again.metrics[key] == first.metrics[key], key
    other = train(tiny(cache, "train.seed=1"), tmp_path / "other", progress=False)
    assert other.metrics["val/loss"] != first.metrics["val/loss"]


@pytest.mark.filterwarnings("ignore:The dirpath has changed")  # the run was copied
def test_resume_continues_from_the_saved_step(runs: dict, cache: Path, tmp_path: Path) -> None:
    _, finished = runs["vae"]
    run = tmp_path / "resumed"
    shutil.copytree(finished.run_dir, run)
    result = train(
        tiny(cache, "train.max_steps=9", "train.epochs=5"), run, resume="last", progress=False
    )
    assert result.metrics["start_step"] == 6 and result.metrics["global_step"] == 9
    assert result.metrics["resumed_from"] == str(run / "checkpoints" / "last.ckpt")
    assert load_run(run).global_step in (6, 9)  # best of the two sessions
    assert load_run(run / "checkpoints" / "last.ckpt").global_step == 9
    # the second session logged only steps 6..8 into its own log version
    rows = (run / "logs" / "version_1" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    steps = {int(r.split(",")[header.index("step")]) for r in rows[1:]}
    assert min(steps) == 6 and max(steps) == 8
    # resuming a run that already reached its bound trains nothing, validates, and reports
    again = train(
        tiny(cache, "train.max_steps=9", "train.epochs=5"), run, resume=run, progress=False
    )
    assert again.metrics["start_step"] == again.metrics["global_step"] == 9
    assert again.metrics["val/loss"] == result.metrics["val/loss"]


def test_resume_mid_epoch_trains_on_the_batches_of_an_uninterrupted_run(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[int]] = []
    batch = FaceDataset.batch

    def recording(self: FaceDataset, positions: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        if self.split == "train":
            seen.append([int(p) for p in positions])
        return batch(self, positions, **kwargs)

    monkeypatch.setattr(FaceDataset, "batch", recording)
    steps = ("train.epochs=10", "train.max_steps=5")
    train(tiny(cache, *steps), tmp_path / "straight", progress=False)
    straight, seen[:] = list(seen), []
    # 3 steps per epoch: stop after step 4, inside the second epoch, then resume to 5
    train(tiny(cache, "train.epochs=10", "train.max_steps=4"), tmp_path / "cut", progress=False)
    train(tiny(cache, *steps), tmp_path / "cut", resume="last", progress=False)
    assert len(straight) == 5 and seen == straight


def test_resume_refuses_another_model(runs: dict, cache: Path, tmp_path: Path) -> None:
    _, finished = runs["vae"]
    with pytest.raises(CheckpointError, match=r"model.latent_dim=8 \(config: 5\)"):
        train(
            tiny(cache, "model.latent_dim=5"),
            tmp_path / "r",
            resume=finished.run_dir,
            progress=False,
        )


def test_refuses_to_overwrite_a_finished_run(runs: dict, cache: Path, tmp_path: Path) -> None:
    cfg, finished = runs["vae"]
    run = tmp_path / "copy"
    shutil.copytree(finished.run_dir, run)
    with pytest.raises(InputError, match="use --overwrite or --resume"):
        train(cfg, run, progress=False)
    result = train(tiny(cache, "train.max_steps=3"), run, overwrite=True, progress=False)
    assert result.metrics["global_step"] == 3 and result.metrics["start_step"] == 0
    assert [p.name for p in (run / "logs").iterdir()] == ["version_0"]  # old logs are gone


def test_injected_nan_stops_and_keeps_the_last_good_checkpoint(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"train": 0}
    recon_mse = losses.recon_mse

    def poisoned(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # a training step
            calls["train"] += 1
            if calls["train"] == 5:  # step index 4; epoch 1 (steps 0-2) was checkpointed
                return recon_mse(recon, x) * float("nan")
        return recon_mse(recon, x)

    monkeypatch.setattr(losses, "recon_mse", poisoned)
    run = tmp_path / "nan"
    with pytest.raises(TrainingDivergedError) as info:
        train(tiny(cache), run, progress=False)
    message = str(info.value)
    assert "diverged at step 4" in message and "learning rate too high" in message
    assert "bad input" in message and str(run / "checkpoints" / "last.ckpt") in message
    loaded = load_run(run / "checkpoints" / "last.ckpt")
    assert loaded.global_step == 3
    assert all(torch.isfinite(p).all() for p in loaded.model.parameters())
    assert not (run / "metrics.json").exists()  # not a finished run: --resume can continue


def test_a_zero_kl_weight_drops_the_term_even_when_the_kl_is_infinite(cache: Path) -> None:
    # the paper's segmentation "VAE" has no KL term: with weight 0 an overflowing KL
    # (logvar > 88 in float32) must not turn the objective into 0 * inf = NaN
    from latentcam.training.module import LatentcamModule

    module = LatentcamModule(tiny(cache, *KINDS["segvae_binary"]))
    image = torch.rand(2, 3, 32, 32)
    batch = {"image": image, "parts": (image[:, 0] > 0.5).long()}
    with torch.no_grad():
        out = module(batch)
    huge = out._replace(logvar=torch.full_like(out.logvar, 200.0))
    with torch.no_grad():
        terms = module.loss_terms(batch, huge, kl_w=0.0)
        assert math.isinf(float(terms.kl)) and float(terms.total) == float(terms.seg)
        assert math.isinf(float(module.loss_terms(batch, huge, kl_w=0.5).total))


def _ckpt(path: Path) -> dict[str, Any]:
    return torch.load(path, weights_only=True)


def test_ema_checkpoints_the_moving_average_and_resumes_exactly(
    cache: Path, tmp_path: Path
) -> None:
    # the live weights after steps 1, 2 and 3 of a plain run (3 steps per epoch here)
    plain_runs = [
        train(tiny(cache, f"train.max_steps={n}"), tmp_path / f"s{n}", progress=False)
        for n in (1, 2, 3)
    ]
    w1, w2, w3 = (_ckpt(run.last_ckpt) for run in plain_runs)
    ema = train(
        tiny(cache, "train.max_steps=3", "train.ema_decay=0.2"), tmp_path / "e", progress=False
    )
    saved = _ckpt(ema.last_ckpt)
    # averaging trains nothing differently: the live weights travel beside the average
    for key, value in w3["state_dict"].items():
        torch.testing.assert_close(saved["current_model_state"][key], value, rtol=0, atol=0)
    # the average starts at step 1's weights, then with t updates in it avg = d avg + (1 - d) w,
    # d = min(0.2, (1 + t) / (10 + t)): 2/11 at t = 1 (the warm-up), 0.2 at t = 2 (3/12 is
    # capped). Floats: weights and BatchNorm statistics. The checkpoint's model and
    # load_model are the average, and it counted its 3 updates
    assert int(saved["averaging_state"]["n_averaged"]) == 3
    model = load_model(ema.run_dir)
    floats = 0
    for key, value in saved["state_dict"].items():
        if not value.is_floating_point():
            continue
        after_2 = 2 / 11 * w1["state_dict"][key] + 9 / 11 * w2["state_dict"][key]
        expected = 0.2 * after_2 + 0.8 * w3["state_dict"][key]
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(model.state_dict()[key.removeprefix("model.")], value)
        floats += 1
    assert floats > 10 and not torch.equal(
        saved["state_dict"]["model.head.mu.weight"], w3["state_dict"]["model.head.mu.weight"]
    )
    # validation scored the average: a plain run at step 3 reports another loss
    plain = json.loads((tmp_path / "s3" / "metrics.json").read_text())
    assert ema.metrics["val/loss"] != plain["val/loss"]

    # stopped at step 4 (inside the second epoch) and resumed to 6: the same average as
    # a straight run to 6. With decay 0.9 every update is in the warm-up (d = 5/14 and 6/15
    # after the resume), so the update count must survive the resume too
    steps = ("train.ema_decay=0.9", "train.epochs=10")
    straight = train(tiny(cache, *steps, "train.max_steps=6"), tmp_path / "a", progress=False)
    train(tiny(cache, *steps, "train.max_steps=4"), tmp_path / "b", progress=False)
    resumed = train(
        tiny(cache, *steps, "train.max_steps=6"), tmp_path / "b", resume="last", progress=False
    )
    assert resumed.metrics["start_step"] == 4
    resumed_ckpt = _ckpt(resumed.last_ckpt)
    assert int(resumed_ckpt["averaging_state"]["n_averaged"]) == 6
    resumed_state = resumed_ckpt["state_dict"]
    for key, value in _ckpt(straight.last_ckpt)["state_dict"].items():
        torch.testing.assert_close(resumed_state[key], value, rtol=0, atol=0)
    assert resumed.metrics["val/loss"] == straight.metrics["val/loss"]
    with pytest.raises(ConfigError, match="train.ema_decay"):
        train(tiny(cache, "train.ema_decay=1.0"), tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


def test_ema_warmup_decay_ramps_up_to_the_configured_decay() -> None:
    # min(decay, (1 + t) / (10 + t)), by hand
    assert ema_warmup_decay(0.99, 0) == pytest.approx(1 / 10)
    assert ema_warmup_decay(0.99, 1) == pytest.approx(2 / 11)
    assert ema_warmup_decay(0.99, 10) == pytest.approx(11 / 20)
    assert ema_warmup_decay(0.99, 1000) == 0.99  # 1001 / 1010 = 0.9911, capped
    assert ema_warmup_decay(0.99, 889) == pytest.approx(890 / 899) and 890 / 899 < 0.99
    assert ema_warmup_decay(0.99, 890) == 0.99  # 891 / 900: the cap is reached here
    assert ema_warmup_decay(0.25, 1) == pytest.approx(2 / 11)
    assert ema_warmup_decay(0.25, 2) == 0.25 and ema_warmup_decay(0.25, 5) == 0.25
    assert ema_warmup_decay(0.0, 3) == 0.0
    ramp = [ema_warmup_decay(0.999, t) for t in range(0, 20000, 7)]
    assert ramp == sorted(ramp) and ramp[-1] == 0.999


@pytest.mark.slow
def test_warmed_up_average_is_never_much_worse_than_the_live_weights(
    cache: Path, tmp_path: Path
) -> None:
    # the binary SegVAE, whose average with a fixed decay 0.99 was dominated by its first
    # weights in short runs (on this recipe a fixed decay fails the margin at 50 and 200
    # steps); averaging changes no live weight, so a plain run gives the live weights' loss
    margin = 1.10
    for steps in (20, 50, 200):
        budget = (*KINDS["segvae_binary"], "train.epochs=-1", f"train.max_steps={steps}")
        live = train(tiny(cache, *budget), tmp_path / f"live{steps}", progress=False)
        ema = train(
            tiny(cache, *budget, "train.ema_decay=0.99"), tmp_path / f"ema{steps}", progress=False
        )
        assert ema.metrics["global_step"] == live.metrics["global_step"] == steps
        assert ema.metrics["val/loss"] <= margin * live.metrics["val/loss"], (
            steps,
            ema.metrics["val/loss"],
            live.metrics["val/loss"],
        )


def test_huge_learning_rate_stops_before_any_save(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingDivergedError, match=r"train.lr=1e\+30.*none yet"):
        train(tiny(cache, "train.lr=1e30"), tmp_path / "lr", progress=False)
    assert not list((tmp_path / "lr").glob("checkpoints/*.ckpt"))


def test_unbounded_run_and_inconsistent_target_are_config_errors(
    cache: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="no end"):
        train(tiny(cache, "train.epochs=-1", "train.max_steps=-1"), tmp_path / "a")
    with pytest.raises(ConfigError, match="data.target"):
        train(
            tiny(cache, "model.kind=segvae", "model.seg_classes=19", "data.target=binary"),
            tmp_path / "b",
        )


def test_precision_auto() -> None:
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("32", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "gpu") == "bf16-mixed"


def test_loader_workers_auto_is_none_on_the_cpu_and_some_per_gpu_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert loader_workers(-1, on_gpu=False) == 0
    assert loader_workers(-1, on_gpu=True) == GPU_WORKERS
    assert loader_workers(-1, on_gpu=True, processes_per_node=8) == 1  # 16 cores / 8 - 1
    assert loader_workers(3, on_gpu=False) == 3 and loader_workers(0, on_gpu=True) == 0
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert loader_workers(-1, on_gpu=True, processes_per_node=2) == 0


def test_uint8_labels_become_int64_on_the_device(cache: Path) -> None:
    dm = FaceDataModule(tiny(cache, *KINDS["segvae_parts"]), progress=False)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "parts"}  # a segvae's loader slices no attrs or factors
    assert batch["image"].dtype == torch.uint8 and batch["parts"].dtype == torch.uint8
    moved = dm.on_after_batch_transfer(dict(batch), 0)
    assert moved["parts"].dtype == torch.int64 and torch.equal(
        moved["parts"], batch["parts"].long()
    )
    assert torch.equal(moved["image"], batch["image"].float() / 255.0)


def test_hflip_mirrors_training_batches_by_seed_and_step_and_leaves_validation_alone(
    cache: Path,
) -> None:
    cfg = tiny(cache, *KINDS["segvae_parts"], "data.hflip=true")
    dm = FaceDataModule(cfg, progress=False)
    dm.setup("fit")
    raw = next(iter(dm.train_dataloader()))
    flags = dm.flips(step=3, rank=0, n=len(raw["image"]))
    assert torch.equal(flags, dm.flips(step=3, rank=0, n=len(flags)))  # same seed and step
    assert not torch.equal(flags, dm.flips(step=4, rank=0, n=len(flags)))
    assert 0 < int(flags.sum()) < len(flags)
    plain = dm.on_after_batch_transfer(dict(raw), 0)  # no trainer: nothing is flipped
    dm.trainer = SimpleNamespace(training=True, global_step=3, global_rank=0)  # type: ignore[assignment]
    flipped = dm.on_after_batch_transfer(dict(raw), 0)
    image, parts = flip_lr(plain["image"], plain["parts"], flags, classes=19)
    assert torch.equal(flipped["image"], image) and torch.equal(flipped["parts"], parts)
    assert not torch.equal(flipped["image"], plain["image"])
    dm.trainer = SimpleNamespace(training=False, global_step=3, global_rank=0)  # type: ignore[assignment]
    assert torch.equal(dm.on_after_batch_transfer(dict(raw), 0)["image"], plain["image"])


def test_sharded_batches_cover_each_epoch_once_and_agree_across_processes() -> None:
    # one process: a seeded permutation per epoch, whole batches, the last one dropped
    one = ShardedBatches(10, 4, shuffle=True, seed=3, drop_last=True)
    epoch0 = [b.tolist() for b in one]
    assert len(epoch0) == len(one) == 2 and all(len(b) == 4 for b in epoch0)
    assert epoch0 == [
        b.tolist() for b in ShardedBatches(10, 4, shuffle=True, seed=3, drop_last=True)
    ]
    one.set_epoch(1)
    assert [b.tolist() for b in one] != epoch0
    # two processes: disjoint shards of the same permutation, padded to equal length
    shards = [ShardedBatches(7, 2, shuffle=True, seed=0, rank=r, world_size=2) for r in (0, 1)]
    seen = [sum((b.tolist() for b in s), []) for s in shards]
    assert len(seen[0]) == len(seen[1]) == 4 and len(shards[0]) == len(shards[1]) == 2
    assert set(seen[0] + seen[1]) == set(range(7))  # 8 draws: one item repeated as padding
    # validation: no padding, no shuffle, every item exactly once
    val = [ShardedBatches(7, 2, shuffle=False, rank=r, world_size=2, pad=False) for r in (0, 1)]
    assert sorted(sum((b.tolist() for s in val for b in s), [])) == list(range(7))


def test_onecycle_warms_up_to_lr_and_ends_annealed_at_the_step_budget(
    cache: Path, tmp_path: Path
) -> None:
    cfg = tiny(
        cache,
        "train.lr_schedule=onecycle",
        "train.lr=0.01",
        "train.warmup_fraction=0.25",
        "train.epochs=-1",
        "train.max_steps=20",
    )
    module = LatentcamModule(cfg)
    module._trainer = SimpleNamespace(estimated_stepping_batches=20)  # type: ignore[assignment]
    setup = module.configure_optimizers()
    optimiser, schedule = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    assert setup["lr_scheduler"]["interval"] == "step"
    used = []  # the lr of each of the 20 optimiser steps
    for _ in range(20):
        used.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        schedule.step()
    # warm-up over a quarter of the steps, lr / 25 -> lr at step 4 (0-based), then a cosine
    # down to lr / 25 / 1e4 at the last step
    assert used[0] == pytest.approx(0.01 / 25)
    assert used[4] == pytest.approx(0.01)
    assert used[19] == pytest.approx(0.01 / 2.5e5)
    assert all(a < b for a, b in itertools.pairwise(used[:5]))
    assert all(a > b for a, b in itertools.pairwise(used[4:]))
    # through train(): the schedule spans the step budget
    result = train(cfg, tmp_path / "onecycle", progress=False)
    assert result.last_ckpt is not None
    saved = torch.load(result.last_ckpt, map_location="cpu", weights_only=False)
    assert saved["global_step"] == 20
    assert saved["lr_schedulers"][0]["total_steps"] == 20
    assert saved["lr_schedulers"][0]["last_epoch"] == 20


def test_onecycle_needs_a_step_bound_and_a_warmup_share(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="onecycle needs a step bound"):
        train(
            tiny(
                cache,
                "train.lr_schedule=onecycle",
                "train.epochs=-1",
                "train.max_steps=-1",
                "train.max_minutes=0.05",
            ),
            tmp_path / "a",
            progress=False,
        )
    with pytest.raises(ConfigError, match=r"train.warmup_fraction' must lie in \(0, 1\)"):
        tiny(cache, "train.warmup_fraction=1.0")
    with pytest.raises(ConfigError, match="choose one of: constant, onecycle"):
        tiny(cache, "train.lr_schedule=cosine")
