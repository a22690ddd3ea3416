"""benchmarks/pythae_objectives.py: a --quick run end to end, the verdict, the step check."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from bench_scripts import load_script  # tests/benchmarks/bench_scripts.py

bench = load_script("pythae_objectives", "pythae_objectives_bench")


def test_quick_run_trains_imports_and_scores_every_model(
    tmp_path: Path, _session_cache: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("LATENTCAM_CACHE", str(_session_cache))
    out = tmp_path / "table.md"
    argv = ["--quick", "--objectives", "betatc", "--work", str(tmp_path / "runs")]
    assert bench.main([*argv, "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 8 and summary["train_faces"] == 128
    rows = summary["rows"]
    assert [(r["model"], r["steps"]) for r in rows] == [("ours", 8), ("pythae-betatc", 8)]
    assert [r["layer"] for r in rows] == ["encoder.blocks.3", "module.encoder.body.blocks.3"]
    for r in rows:
        assert 0 < r["seconds"] and 5 < r["psnr"] < 60
        for key in ("mig", "dci_disentanglement", "dci_completeness"):
            assert 0 <= r[key] <= 1, (key, r[key])
        assert math.isfinite(r["dci_informativeness"])  # a held-out score: may be below 0
        for key in ("pointing_units", "chance_units", "pointing_factors", "chance_factors"):
            assert 0 <= r[key] <= 1, (key, r[key])
        assert 0 <= r["active"] <= r["latent_dim"] == 4 and r["factors_scored"] > 0
    assert (tmp_path / "runs" / "pythae-betatc" / "adapter.json").is_file()
    assert summary["verdict"]["wins"] in ([], ["pythae-betatc"])
    text = out.read_text()
    assert "| ours | latentcam ELBO | 8 |" in text and "| pythae-betatc | betatc | 8 |" in text
    record = json.loads((tmp_path / "runs" / "pythae-betatc-train.json").read_text())
    assert record["steps"] == 8 and record["seconds"] == pytest.approx(rows[1]["seconds"], abs=0.1)


def _row(model: str, objective: str, psnr: float, mig: float, dci: float, pg: float) -> dict:
    return {
        "model": model,
        "objective": objective,
        "psnr": psnr,
        "mig": mig,
        "dci_disentanglement": dci,
        "pointing_factors": pg,
    }


def test_verdict_needs_mig_dci_pointing_and_psnr_within_one_db() -> None:
    rows = [
        _row("ours", "latentcam ELBO", 20.0, 0.02, 0.05, 0.30),
        _row("pythae-vae", "vae", 20.0, 0.50, 0.50, 0.50),  # not a disentangling objective
        _row("pythae-betatc", "betatc", 19.2, 0.10, 0.20, 0.30),  # wins
        _row("pythae-betavae", "betavae", 18.5, 0.10, 0.20, 0.40),  # 1.5 dB lower
    ]
    assert bench.verdict(rows)["wins"] == ["pythae-betatc"]
    rows[2]["pointing_factors"] = 0.29  # points worse
    assert bench.verdict(rows)["wins"] == []


def test_steps_must_be_whole_pythae_epochs(tmp_path: Path) -> None:
    args = bench.parse_args(["--quick"])
    args.steps = 10
    images = torch.zeros(128, 3, 64, 64)  # 8 batches of 16 per epoch
    with pytest.raises(SystemExit, match="give --steps 8"):
        bench.train_pythae("betatc", args, images, tmp_path, tmp_path)
