"""latentcam.verdicts: each reading on the numbers that issue 19 found in real reports."""

from __future__ import annotations

import math

import pytest

from latentcam.verdicts import (
    HEATMAP_AT_CHANCE,
    RATIO_ABOVE,
    RATIO_BELOW,
    correlation_verdict,
    verdict,
    verdict_cell,
)


def test_ratio_scores_against_their_chance_level() -> None:
    # the SegVAE's paper-layer pointing game: 0.05 against a chance of 0.11
    below = verdict(0.05, 0.11)
    assert below.level == "below" and below.text == "below chance"
    assert below.ratio == pytest.approx(0.05 / 0.11)
    # Seg-Grad-CAM energy in class 0.200 against its chance 0.246: ratio 0.81 < 0.9
    assert verdict(0.200, 0.246).text == "below chance"
    # a pointing game just above its chance is still chance
    at = verdict(0.13, 0.11)
    assert at.level == "at" and at.text == f"at chance: {HEATMAP_AT_CHANCE}"
    assert at.text == "at chance: this heatmap does not show where the unit acts"
    assert at.short == "at chance" and not at.trusted
    # 0.341 against 0.11 is 3.1x chance
    above = verdict(0.341, 0.11)
    assert above.level == "above" and above.text == "3.1× chance" and above.trusted
    assert above.short == "3.1× chance"


def test_ratio_thresholds_are_the_documented_ones() -> None:
    chance = 0.2
    assert verdict(RATIO_BELOW * chance - 1e-9, chance).level == "below"
    assert verdict(RATIO_BELOW * chance, chance).level == "at"
    assert verdict(RATIO_ABOVE * chance - 1e-9, chance).level == "at"
    assert verdict(RATIO_ABOVE * chance, chance).text == "1.5× chance"


def test_sign_scores_flip_below_half() -> None:
    # the "held-out AUROC" values of 0.255 and 0.312 that the report showed without comment
    for auroc in (0.255, 0.312):
        flipped = verdict(auroc, 0.5, "sign")
        assert flipped.level == "flipped"
        assert flipped.text == "AUROC below 0.5: the sign is flipped"
    assert verdict(0.53, 0.5, "sign", at_chance="").text == "at chance"
    assert verdict(0.81, 0.5, "sign").text == "above chance (0.81 vs 0.5)"


def test_offset_scores_and_correlations() -> None:
    # DCI informativeness -0.307 (worse than predicting the factors' mean)
    assert verdict(-0.307, 0.0, "offset").text == "below chance"
    assert verdict(0.42, 0.0, "offset").text == "+0.42 over chance"
    assert verdict(0.05, 0.0, "offset", at_chance="no agreement").text == "at chance: no agreement"
    # a unit whose map anti-correlates with its effect: rho -0.48
    anti = correlation_verdict(-0.48)
    assert anti.level == "below" and anti.short == "anti-correlated"
    assert correlation_verdict(0.62).text == "+0.62 over chance"


def test_missing_scores_are_not_scored() -> None:
    assert verdict(None, 0.1).text == "not scored"
    assert verdict(math.nan, 0.1).level == "none"
    assert verdict(0.3, None).text == "not scored"
    assert verdict(0.3, 0.0).text == "no chance level"
    assert verdict_cell(0.3, 0.1) == "3.0× chance"
    with pytest.raises(ValueError, match="unknown verdict kind"):
        verdict(0.3, 0.1, kind="bogus")
