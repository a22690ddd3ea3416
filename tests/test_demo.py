"""``latentcam demo``: budgets in steps, the ``--minutes`` cap, and the same seed giving the
same metrics.

The real demo's budgets and the metrics they reach are measured in
docs/benchmarks/demo_steps.md; here the demo runs at test size (50 faces, 2 steps per
model), where only its mechanics can be checked.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from latentcam import demo
from latentcam.demo import DEMO_RUNS, demo_configs, run_demo

#: Values that differ between two runs of the same demo: wall-clock times and paths.
_VARYING = ("seconds", "checkpoint", "path", "run_dir", "finished")


def _steady(metrics: Any) -> Any:
    """``metrics`` without the keys that hold times or paths."""
    if isinstance(metrics, dict):
        return {k: _steady(v) for k, v in metrics.items() if not any(w in k for w in _VARYING)}
    if isinstance(metrics, list):
        return [_steady(v) for v in metrics]
    return metrics


def test_each_model_trains_its_step_budget_with_a_onecycle_schedule() -> None:
    configs = demo_configs()
    assert list(configs) == ["vae", "cvae", "segvae"]
    budgets = {r.name: r.steps for r in DEMO_RUNS}
    assert budgets == {"vae": 450, "cvae": 400, "segvae": 300}
    for name, cfg in configs.items():
        assert cfg.train.max_steps == budgets[name]
        assert cfg.train.max_minutes == 0.0  # no wall-clock bound unless asked
        assert cfg.train.lr_schedule == "onecycle" and cfg.train.lr == pytest.approx(3e-3)
        assert cfg.data.synth_n == 3000 and cfg.data.path == "synth"
        assert cfg.train.seed == 0
    assert (configs["vae"].model.kind, configs["vae"].model.latent_dim) == ("vae", 32)
    assert (configs["cvae"].model.kind, configs["cvae"].model.latent_dim) == ("cvae", 16)
    seg = configs["segvae"]
    assert (seg.model.kind, seg.model.seg_classes, seg.data.target) == ("segvae", 1, "binary")


def test_max_steps_replaces_the_budgets_and_minutes_is_shared_by_steps() -> None:
    configs = demo_configs(n_images=80, seed=7, max_steps=20, minutes=6.0)
    for cfg in configs.values():
        assert cfg.train.max_steps == 20 and cfg.train.seed == 7 and cfg.data.synth_n == 80
        assert cfg.train.max_minutes == pytest.approx(2.0)
    caps = {name: cfg.train.max_minutes for name, cfg in demo_configs(minutes=11.5).items()}
    # 450 : 400 : 300 steps
    assert caps == pytest.approx({"vae": 4.5, "cvae": 4.0, "segvae": 3.0}, abs=1e-3)


def _metrics(out: Path) -> dict[str, Any]:
    return {
        name: {
            "train": json.loads((out / name / "metrics.json").read_text()),
            "evaluate": json.loads((out / name / "report" / "metrics.json").read_text()),
        }
        for name in ("vae", "cvae", "segvae")
    }


def test_two_tiny_demos_with_the_same_seed_give_the_same_metrics(tmp_path: Path) -> None:
    first = run_demo(tmp_path / "a", n_images=50, max_steps=2, progress=False)
    run_demo(tmp_path / "b", n_images=50, max_steps=2, progress=False)
    assert first == tmp_path / "a" / "index.html" and first.is_file()
    a, b = _metrics(tmp_path / "a"), _metrics(tmp_path / "b")
    for name in a:
        assert a[name]["train"]["global_step"] == 2
        assert a[name]["train"]["val/loss"] > 0
    assert a["vae"]["train"]["val/psnr"] > 0 and a["segvae"]["train"]["val/iou_binary"] >= 0
    assert _steady(a) == _steady(b)


def test_a_minutes_cap_that_cuts_training_short_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_report(run: Path, out: Path, **kwargs: Any) -> Path:  # the training loop only
        return Path(out) / "index.html"

    monkeypatch.setattr("latentcam.report.build.build_report", no_report)
    with caplog.at_level(logging.WARNING, logger=demo.__name__):
        index = run_demo(tmp_path / "d", n_images=50, max_steps=500, minutes=0.003, progress=False)
    steps = {
        name: json.loads((tmp_path / "d" / name / "metrics.json").read_text())["global_step"]
        for name in ("vae", "cvae", "segvae")
    }
    assert all(1 <= s < 500 for s in steps.values()), steps
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert f"--minutes cut training short at step {steps['vae']} of 500" in warnings[0]
    html = index.read_text()
    assert html.count("WARNING: --minutes cut training short") == 3
