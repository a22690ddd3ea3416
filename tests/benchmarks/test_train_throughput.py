"""benchmarks/train_throughput.py: the window timer by hand, and a --quick run on the CPU."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from bench_scripts import load_script  # tests/benchmarks/bench_scripts.py

bench = load_script("train_throughput")


def test_window_timer_marks_the_end_of_warmup_and_of_every_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timer = bench.WindowTimer(warmup=2, window=3)
    clock = iter(range(100))
    monkeypatch.setattr(bench.time, "perf_counter", lambda: float(next(clock)))
    module = SimpleNamespace(device=torch.device("cpu"))
    for step in range(1, 13):  # Lightning's global_step after each optimiser step
        timer.on_train_batch_end(SimpleNamespace(global_step=step), module, None, None, 0)
    assert timer.marks == [0.0, 1.0, 2.0, 3.0]  # after steps 2, 5, 8 and 11: three windows


def test_quick_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "table.md"
    rows = bench.main(["--quick", "--accelerator", "cpu", "--out", str(out)])
    assert len(rows) == 1
    row = rows[0]
    assert (row.recipe, row.precision, row.image_size, row.batch_size) == (
        "tiny",
        "32-true",
        32,
        16,
    )
    assert row.images_per_s_min <= row.images_per_s <= row.images_per_s_max
    assert row.ms_per_step == pytest.approx(1000 * 16 / row.images_per_s, rel=1e-3)
    assert row.peak_mem_gib is None and row.params > 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["rows"][0]["images_per_s"] == row.images_per_s
    assert "| tiny | 32 | 16 |" in out.read_text()
