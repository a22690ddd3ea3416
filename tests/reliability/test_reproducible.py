"""Reproducibility (issue #7.5) beyond tests/training/test_train.py::test_same_seed_same_metrics
(same seed and config, same metrics on CPU) and tests/data/test_synthetic.py (same seed,
byte-identical faces): the same seed gives bit-identical weights, and a run that is stopped
and resumed ends exactly where an uninterrupted run ends.

Resuming is exact because the checkpoint carries the state of the generator that draws z's
noise (``LatentcamModule.on_save_checkpoint``) and the data loaders draw from their own
generators; test_kill.py checks the same after real SIGKILLs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from latentcam.checkpoint import model_state, read_checkpoint
from latentcam.config import RunConfig, load_config
from latentcam.training.module import RNG_KEY
from latentcam.training.train import TrainResult, train

KINDS = {
    "vae": [],
    "cvae": ["model.kind=cvae"],
    "segvae": ["model.kind=segvae", "model.seg_classes=19", "data.target=parts"],
}
STEPS = 7  # 96 faces: 4 steps per epoch; a cut at step 5 falls inside the second epoch
METRICS = ("val/loss", "val/kl", "kl_per_unit", "best_val_loss")


def tiny(cache: Path, *overrides: str) -> RunConfig:
    return load_config(
        ["tiny"],
        [f"data.cache_dir={cache}", "data.synth_n=96", "train.epochs=-1", *overrides],
    )


def weights(result: TrainResult) -> dict[str, torch.Tensor]:
    assert result.last_ckpt is not None
    return model_state(read_checkpoint(result.last_ckpt))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("kind", list(KINDS))
def test_resumed_run_ends_where_an_uninterrupted_one_ends(
    kind: str, tmp_path: Path, _session_cache: Path
) -> None:
    overrides = KINDS[kind]
    straight = train(
        tiny(_session_cache, *overrides, f"train.max_steps={STEPS}"), tmp_path / "a", progress=False
    )
    train(tiny(_session_cache, *overrides, "train.max_steps=5"), tmp_path / "b", progress=False)
    resumed = train(
        tiny(_session_cache, *overrides, f"train.max_steps={STEPS}"),
        tmp_path / "b",
        resume="last",
        progress=False,
    )
    assert resumed.metrics["start_step"] == 5 and resumed.metrics["global_step"] == STEPS
    assert_same_weights(weights(straight), weights(resumed))
    for key in METRICS:
        assert resumed.metrics[key] == straight.metrics[key], key


def test_same_seed_same_weights_other_seed_other_weights(
    tmp_path: Path, _session_cache: Path
) -> None:
    first = train(tiny(_session_cache, "train.max_steps=5"), tmp_path / "a", progress=False)
    again = train(tiny(_session_cache, "train.max_steps=5"), tmp_path / "b", progress=False)
    assert_same_weights(weights(first), weights(again))
    other = train(
        tiny(_session_cache, "train.max_steps=5", "train.seed=1"), tmp_path / "c", progress=False
    )
    assert not torch.equal(
        weights(first)["encoder.blocks.0.conv.weight"],
        weights(other)["encoder.blocks.0.conv.weight"],
    )


def test_checkpoint_without_generator_state_still_resumes(
    tmp_path: Path, _session_cache: Path
) -> None:
    """Checkpoints written before the generator state was saved resume from the seed."""
    run = tmp_path / "old"
    first = train(tiny(_session_cache, "train.max_steps=4"), run, progress=False)
    assert first.last_ckpt is not None
    checkpoint = torch.load(first.last_ckpt, weights_only=True)
    assert checkpoint[RNG_KEY]["cpu"].dtype == torch.uint8
    del checkpoint[RNG_KEY]
    torch.save(checkpoint, first.last_ckpt)
    resumed = train(tiny(_session_cache, "train.max_steps=6"), run, resume="last", progress=False)
    assert resumed.metrics["start_step"] == 4 and resumed.metrics["global_step"] == 6
    assert all(torch.isfinite(v).all() for v in weights(resumed).values())
