"""latentcam.report.trust: the undertraining floors and the at-a-glance box, on real numbers."""

from __future__ import annotations

import numpy as np
import pytest

from latentcam.report.trust import (
    MIN_STEPS,
    PSNR_FLOOR_DB,
    RunFacts,
    ema_warmup_steps,
    glance,
    longer_command,
    mean_image_psnr,
    prior_mask_iou,
    psnr,
    undertrained,
)
from latentcam.training.callbacks import ema_warmup_decay


def test_ema_warmup_steps_is_where_the_warmup_reaches_the_decay() -> None:
    assert ema_warmup_steps(0.0) == 0
    steps = ema_warmup_steps(0.99)
    assert steps == 890
    # the training callback's rule: min(decay, (1 + t) / (10 + t))
    assert ema_warmup_decay(0.99, steps) == pytest.approx(0.99)
    assert ema_warmup_decay(0.99, steps - 2) < 0.99


def test_floors_by_hand() -> None:
    assert psnr(0.01) == pytest.approx(20.0)
    images = np.zeros((2, 3, 4, 4))
    images[1] = 0.2  # mean 0.1, every pixel off by 0.1: MSE 0.01
    assert mean_image_psnr(images) == pytest.approx(20.0)
    masks = np.zeros((3, 2, 2), dtype=bool)
    masks[:, 0, 0] = True  # every face has pixel (0, 0)
    masks[0, 1, 1] = True  # one face also has (1, 1): the prior leaves it out
    # prior = {(0, 0)}: intersection 3, union 4
    assert prior_mask_iou(masks) == pytest.approx(3 / 4)


def test_an_undertrained_run_gets_every_warning() -> None:
    # the demo's undertrained VAE at load 7: 44 steps, PSNR 17.2, averaged weights
    facts = RunFacts(kind="vae", steps=44, ema_decay=0.99, psnr=17.2, mean_psnr=14.9)
    lines = undertrained(facts)
    assert len(lines) == 3
    assert lines[0].startswith(f"Only 44 training steps (fewer than {MIN_STEPS})")
    assert f"17.2 dB is below the floor of {PSNR_FLOOR_DB:.0f} dB" in lines[1]
    assert "after 890 steps" in lines[2]
    # no better than the mean image
    flat = undertrained(RunFacts(kind="vae", steps=5000, psnr=14.0, mean_psnr=14.9))
    assert flat == [
        "Validation PSNR 14.0 dB is no better than the mean image's 14.9 dB: every face "
        "decodes to the average face."
    ]
    # a SegVAE whose IoU does not beat the per-pixel prior
    seg = undertrained(RunFacts(kind="segvae", steps=5000, iou=0.448, prior_iou=0.52))
    assert seg and "Binary IoU 0.448 does not beat the per-pixel prior's 0.520 by 0.1" in seg[0]
    # the demo's undertrained SegVAE: 0.615 against a prior of 0.607 is no better
    assert undertrained(RunFacts(kind="segvae", steps=5000, iou=0.615, prior_iou=0.607))


def test_a_trained_run_gets_no_warning() -> None:
    facts = RunFacts(kind="vae", steps=3000, ema_decay=0.99, psnr=24.1, mean_psnr=14.9)
    assert undertrained(facts) == []
    assert undertrained(RunFacts(kind="segvae", steps=3000, iou=0.92, prior_iou=0.52)) == []


def test_glance_sorts_the_scores_into_trust_and_doubt() -> None:
    metrics = {
        "localisation": {
            "comparison": [
                {"layer": "b2", "method": "gradcam", "pointing_game": 0.05, "chance": 0.11,
                 "spearman_cam_effect": -0.48},
                {"layer": "b3", "method": "gradcam", "pointing_game": 0.341, "chance": 0.11,
                 "spearman_cam_effect": 0.5},
            ]
        },
        "sanity": {"curve": [{"layer": "b3", "spearman": -0.3}], "passes": True},
        "ranking": {"attribute_auroc": {"Smiling": 0.255, "Eyeglasses": 0.9}},
    }  # fmt: skip
    cmd = longer_command("runs/vae/config.yaml", "runs/vae-longer", 20)
    assert (
        cmd
        == "latentcam train --config runs/vae/config.yaml --max-steps 2000 --out runs/vae-longer"
    )
    facts = RunFacts(kind="vae", steps=20, psnr=15.0, mean_psnr=14.0, command=cmd)
    box = glance(facts, metrics, "b2", "gradcam")
    assert "heatmaps at b2 (pointing game vs chance): below chance" in box.doubt
    assert (
        "heatmap vs where the unit acts (Spearman): anti-correlated: high where the unit does not act"
        in box.doubt
    )
    assert "held-out AUROC below 0.5 (the sign is flipped) for Smiling" in box.doubt
    assert any(d.startswith("reconstructions: validation PSNR 15.0 dB") for d in box.doubt)
    assert any(t.startswith("sanity check") for t in box.trust)
    assert box.command == cmd and box.advice == "train longer"
    good = glance(facts, metrics, "b3", "gradcam")
    assert "heatmaps at b3 (pointing game vs chance): 3.1× chance" in good.trust


def test_a_short_run_that_reached_its_floors_is_not_called_undertrained() -> None:
    # the demo's CVAE: 400 onecycle steps, PSNR 21.5 dB against the mean image's 14.7
    assert undertrained(RunFacts(kind="cvae", steps=400, psnr=21.5, mean_psnr=14.7)) == []
    # the demo's SegVAE: 300 steps, IoU 0.905 against its prior's 0.626
    assert undertrained(RunFacts(kind="segvae", steps=300, iou=0.905, prior_iou=0.626)) == []


def test_the_glance_reads_iou_against_the_prior_as_the_banner_does() -> None:
    from latentcam.report.trust import glance

    # the demo's SegVAE: IoU 0.905 against its prior's 0.626 (ratio 1.45, offset 0.28)
    facts = RunFacts(kind="segvae", steps=300, iou=0.905, prior_iou=0.626)
    box = glance(facts, {}, "encoder.blocks.1", "gradcam")
    assert any(line.startswith("segmentation (binary IoU") for line in box.trust), box
    assert not any("segmentation" in line for line in box.doubt), box
