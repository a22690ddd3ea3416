"""benchmarks/seg_vs_unet.py: the scores on hand-computed labels, and a --quick smoke run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from bench_scripts import load_script  # tests/benchmarks/bench_scripts.py

from latentcam.config import load_config
from latentcam.models import UNet, build_model

bench = load_script("seg_vs_unet")


def test_score_labels_binary_by_hand() -> None:
    # one 2x3 image: prediction 1 at 3 pixels, target 1 at 2 of them and 1 other -> 2 / 4
    pred = torch.tensor([[[1, 1, 1], [0, 0, 0]]])
    target = torch.tensor([[[0, 1, 1], [1, 0, 0]]])
    scores = bench.score_labels(pred, target, classes=1)
    assert scores.iou == pytest.approx(0.5)
    assert scores.miou is None


def test_score_labels_parts_by_hand() -> None:
    # part ids; binary mask = id >= 2 (0 background and 1 skin are out)
    pred = torch.tensor([[[0, 1, 2, 13]]])
    target = torch.tensor([[[0, 2, 2, 1]]])
    scores = bench.score_labels(pred, target, classes=19)
    # binary: pred {2, 3}, target {1, 2} -> inter 1, union 3
    assert scores.iou == pytest.approx(1 / 3)
    # classes present: 0 (1/1), 1 (0/2), 2 (1/2), 13 (0/1) -> mean 0.375
    assert scores.miou == pytest.approx((1.0 + 0.0 + 0.5 + 0.0) / 4)


def test_cosine_lr_by_hand() -> None:
    assert bench.cosine_lr(1e-3, 0.0, 60.0) == pytest.approx(1e-3)
    assert bench.cosine_lr(1e-3, 30.0, 60.0) == pytest.approx(5e-4)
    assert bench.cosine_lr(1e-3, 15.0, 60.0) == pytest.approx(5e-4 * (1 + math.sqrt(0.5)))
    assert bench.cosine_lr(1e-3, 60.0, 60.0) == pytest.approx(0.0, abs=1e-12)
    assert bench.cosine_lr(1e-3, 90.0, 60.0) == pytest.approx(0.0, abs=1e-12)  # past the budget


def test_predicted_labels() -> None:
    binary = torch.tensor([[[[0.5, -0.1], [0.0, 3.0]]]])  # (1, 1, 2, 2)
    assert bench.predicted_labels(binary).tolist() == [[[1, 0], [0, 1]]]
    parts = torch.zeros(1, 19, 1, 2)
    parts[0, 13, 0, 0] = 1.0
    parts[0, 2, 0, 1] = 1.0
    assert bench.predicted_labels(parts).tolist() == [[[13, 2]]]


def test_quick_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "table.md"
    results = bench.main(["--quick", "--threads", "1", "--target", "both", "--out", str(out)])

    names = [v.name for v in bench.VARIANTS]
    assert [(r.target, r.variant) for r in results] == [
        (t, n) for t in ("binary", "parts") for n in names
    ]
    by_key = {(r.target, r.variant): r for r in results}
    # the peer is exactly UNet(3, P, 32, 4); the SegVAEs differ from it
    for target, classes in (("binary", 1), ("parts", 19)):
        unet = UNet(in_ch=3, out_ch=classes, base=32, depth=4)
        assert by_key[(target, "unet")].params == sum(p.numel() for p in unet.parameters())
        assert by_key[(target, "unet")].gap_iou == 0.0
        assert by_key[(target, "unet")].final_kl == 0.0
    # the parts head has 18 more 3x3 output channels than the binary one (+ their biases)
    paper_b, paper_p = by_key[("binary", "segvae_paper")], by_key[("parts", "segvae_paper")]
    assert paper_p.params - paper_b.params == 18 * (9 * 32 + 1)
    # the spatial variant is the packaged recipe at the run's size and classes
    for target, classes in (("binary", 1), ("parts", 19)):
        cfg = load_config(
            ["segvae64_spatial"], ["model.image_size=32", f"model.seg_classes={classes}"]
        )
        model = build_model(cfg.model)
        assert model.latent_shape == (8, 16, 16)
        expected = sum(p.numel() for p in model.parameters())
        assert by_key[(target, "segvae_spatial")].params == expected
    for r in results:
        peer = by_key[(r.target, "unet")]
        assert r.steps == 2  # --quick caps the steps
        assert r.images_per_s == pytest.approx(2 * 8 / r.train_s)
        assert 0.0 <= r.iou <= 1.0
        assert r.gap_iou == pytest.approx(100.0 * (r.iou - peer.iou))
        if r.target == "binary":
            assert r.miou is None and r.gap_miou is None
        else:
            assert r.miou is not None and 0.0 <= r.miou <= 1.0
            assert r.gap_miou == pytest.approx(100.0 * (r.miou - peer.miou))
        assert math.isfinite(r.final_loss) and r.final_kl >= 0.0

    stdout = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(stdout[-1])  # the last line is the JSON object
    assert [row["iou"] for row in summary["results"]] == [r.iou for r in results]
    assert summary["beta_parts"] == 0.0
    table = out.read_text()
    assert table.count("\n| binary |") == 3 and table.count("\n| parts |") == 3
    assert "KL weight 0 (the paper's code)" in table


def test_unknown_variant_is_an_error() -> None:
    from latentcam.errors import InputError

    with pytest.raises(InputError, match="unknown"):
        bench.main(["--quick", "--variants", "unet,resnet"])


def test_hflip_run_flips_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "flips.md"
    args = ["--quick", "--threads", "1", "--target", "parts", "--variants", "segvae_spatial"]
    results = bench.main([*args, "--hflip", "--out", str(out)])
    assert len(results) == 1 and results[0].steps == 2 and math.isfinite(results[0].final_loss)
    assert "left-right flips (p = 1/2)" in out.read_text()


def test_ema_scores_the_average_beside_the_last_weights(tmp_path: Path) -> None:
    from latentcam.errors import InputError

    out = tmp_path / "ema.md"
    args = ["--quick", "--threads", "1", "--target", "binary", "--variants", "unet,segvae_spatial"]
    plain = bench.main(args)
    # a decay of ~0 makes the average the last weights: both scores agree
    same = bench.main([*args, "--ema", "1e-12"])
    for p, r in zip(plain, same, strict=True):
        assert r.ema == 1e-12 and r.iou == pytest.approx(r.iou_raw, abs=1e-6)
        assert r.iou_raw == pytest.approx(p.iou, abs=1e-6) and p.iou_raw == p.iou
    # channels-last changes the memory layout only: the same losses
    averaged = bench.main([*args, "--ema", "0.5", "--channels-last", "--out", str(out)])
    for p, r in zip(plain, averaged, strict=True):
        assert r.final_loss == pytest.approx(p.final_loss, rel=1e-4)
        assert r.iou_raw == pytest.approx(p.iou, abs=0.02) and 0.0 <= r.iou <= 1.0
    table = out.read_text()
    assert "channels-last, scores of the weights EMA (decay 0.5)" in table
    assert "| IoU, last weights |" in table and table.count("\n| binary |") == 2
    with pytest.raises(InputError, match="--ema 1"):
        bench.main([*args, "--ema", "1"])
