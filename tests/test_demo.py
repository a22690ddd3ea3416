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
from latentcam.cli import main
from latentcam.demo import DEMO_RUNS, demo_configs, run_demo

#: A small model for the demo's mechanics: its reports take seconds, not minutes.
SMALL = ("model.latent_dim=4", "model.base_channels=4", "model.max_channels=16")

#: What each run of the demo writes: training's metrics and the report's evaluation.
FILES = ("metrics.json", "report/metrics.json")

#: Keys whose values differ between two runs of the same demo: wall-clock times.
_TIMES = ("seconds",)


def _flat(metrics: Any, root: Path, key: str = "") -> dict[str, Any]:
    """``metrics`` as {"a/b[0]/c": value}, without times, with ``root`` cut from paths."""
    if isinstance(metrics, dict):
        items: list[tuple[str, Any]] = list(metrics.items())
    elif isinstance(metrics, list):
        items = [(f"[{i}]", v) for i, v in enumerate(metrics)]
    else:
        return {key: metrics.replace(str(root), "ROOT") if isinstance(metrics, str) else metrics}
    flat: dict[str, Any] = {}
    for k, v in items:
        if not any(t in k for t in _TIMES):
            flat.update(_flat(v, root, f"{key}/{k}"))
    return flat


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
    assert (configs["vae"].train.beta, configs["cvae"].train.beta) == (1.0, 4.0)
    seg = configs["segvae"]
    assert (seg.model.kind, seg.model.seg_classes, seg.data.target) == ("segvae", 1, "binary")
    # a 2-channel map at 4x4: 32 units, as many as the VAE's
    assert (seg.model.bottleneck, seg.model.latent_dim, seg.model.min_feature_size) == (
        "spatial",
        2,
        4,
    )
    assert seg.train.ema_decay == 0.0


def test_max_steps_replaces_the_budgets_and_minutes_is_shared_by_steps() -> None:
    configs = demo_configs(n_images=80, seed=7, max_steps=20, minutes=6.0, overrides=SMALL)
    for cfg in configs.values():
        assert cfg.train.max_steps == 20 and cfg.train.seed == 7 and cfg.data.synth_n == 80
        assert cfg.train.max_minutes == pytest.approx(2.0)
        assert (cfg.model.latent_dim, cfg.model.base_channels) == (4, 4)  # after the demo's
    caps = {name: cfg.train.max_minutes for name, cfg in demo_configs(minutes=11.5).items()}
    # 450 : 400 : 300 steps
    assert caps == pytest.approx({"vae": 4.5, "cvae": 4.0, "segvae": 3.0}, abs=1e-3)


def _metrics(out: Path) -> dict[str, Any]:
    """Every metric the demo wrote: each run's training and evaluation, flattened."""
    files = [f"{name}/{f}" for name in ("vae", "cvae", "segvae") for f in FILES]
    return _flat({f: json.loads((out / f).read_text()) for f in files}, out)


def test_two_tiny_demos_with_the_same_seed_give_the_same_metrics(tmp_path: Path) -> None:
    first = run_demo(tmp_path / "a", n_images=50, max_steps=2, progress=False, overrides=SMALL)
    run_demo(tmp_path / "b", n_images=50, max_steps=2, progress=False, overrides=SMALL)
    assert first == tmp_path / "a" / "index.html" and first.is_file()
    a, b = _metrics(tmp_path / "a"), _metrics(tmp_path / "b")
    for name in ("vae", "cvae", "segvae"):
        assert a[f"/{name}/metrics.json/global_step"] == 2
        assert a[f"/{name}/metrics.json/val/loss"] > 0
    assert a["/vae/metrics.json/val/psnr"] > 5
    assert 0 <= a["/segvae/metrics.json/val/iou_binary"] <= 1
    assert len(a) > 100  # the evaluation's numbers too, not only training's
    differ = {k: (a.get(k), b.get(k)) for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    assert not differ


def test_a_minutes_cap_that_cuts_training_short_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_report(run: Path, out: Path, **kwargs: Any) -> Path:  # the training loop only
        return Path(out) / "index.html"

    monkeypatch.setattr("latentcam.report.build.build_report", no_report)
    with caplog.at_level(logging.WARNING, logger=demo.__name__):
        index = run_demo(
            tmp_path / "d",
            n_images=50,
            max_steps=500,
            minutes=0.003,
            progress=False,
            overrides=SMALL,
        )
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


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--max-steps", "0"], "--max-steps: must be an integer from 1 to 1000000, got 0"),
        (["--seed", "-1"], "--seed: must be an integer from 0 to 4294967295, got -1"),
        (["--minutes", "0"], "--minutes: must be a finite number > 0 and <= 10080"),
    ],
)
def test_cli_refuses_bad_budgets_before_any_work(
    flags: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["demo", "--out", str(tmp_path / "demo"), *flags])
    assert stop.value.code == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()
