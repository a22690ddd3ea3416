"""benchmarks/evaluate_speed.py: the speed-up table by hand, and one tiny run's output format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_scripts import load_script  # tests/benchmarks/bench_scripts.py

bench = load_script("evaluate_speed")


def test_speedup_and_table_by_hand() -> None:
    before = {"seconds_total": 10.0, "seconds_by_stage": {"units": 1.0, "comparison": 6.0}}
    after = {"seconds_total": 2.0, "seconds_by_stage": {"units": 0.5, "comparison": 1.0}}
    assert bench.speedup(before, after) == {
        "seconds_total": 5.0,
        "by_stage": {"units": 2.0, "comparison": 6.0},
    }
    lines = bench.table(after, before).splitlines()
    assert lines[2] == "| units | 1.00 | 0.50 | 2.0x |"
    assert lines[-1] == "| total | 10.00 | 2.00 | 5.0x |"


def test_tiny_run_prints_stage_seconds_last(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(runs["vae"]), "--n", "8", "--split", "all", "--max-map-images", "4"]
    summary = bench.main([*argv, "--no-sanity", "--no-directions", "--methods", "gradcam"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == summary
    assert set(last) == {"seconds_total", "seconds_by_stage"}
    stages = last["seconds_by_stage"]
    assert {"units", "effect_maps", "decoder_maps", "comparison", "decoder"} <= set(stages)
    assert "sanity" not in stages and "directions" not in stages
    assert all(v >= 0 for v in stages.values())
    assert sum(stages.values()) <= last["seconds_total"] + 1e-3


def test_median_timings_by_hand() -> None:
    runs = [
        {"seconds_total": 3.0, "seconds_by_stage": {"units": 1.0, "comparison": 2.0}},
        {"seconds_total": 9.0, "seconds_by_stage": {"units": 5.0, "comparison": 4.0}},
        {"seconds_total": 5.0, "seconds_by_stage": {"units": 2.0}},
    ]
    assert bench.median_timings(runs) == {
        "seconds_total": 5.0,
        "seconds_by_stage": {"units": 2.0},  # a stage missing from a run has no median
    }
