"""Plain verdicts: a score read against its chance level or baseline, in words.

Every score the report shows sits next to what it would be by chance, and one of these
verdicts says what the pair means. Three readings, one per kind of score:

``ratio`` (pointing game, energy in part, IoU, flip rate: scores that chance makes small)
    ratio = score / chance. Below :data:`RATIO_BELOW` "below chance"; below
    :data:`RATIO_ABOVE` "at chance: <what that means>"; else "3.1× chance".
``sign`` (AUROC of a unit or direction whose sign was chosen on other data)
    chance is 0.5. Within :data:`SIGN_MARGIN` of it "at chance"; below it by more
    "AUROC below 0.5: the sign is flipped"; above "above chance (0.81 vs 0.5)".
``offset`` (correlations, R², DCI informativeness: chance is 0 and a ratio means nothing)
    difference = score - chance. Within :data:`OFFSET_MARGIN` "at chance"; below by more
    "below chance" (a rank correlation below 0 is "anti-correlated"); above "+0.42 over
    chance".

The thresholds are deliberately coarse: a verdict is for a reader deciding whether to look
at a heatmap at all, not a significance test (the scores come from 32-128 images).
"""

from __future__ import annotations

import math
from typing import NamedTuple

#: ``ratio`` scores: below this fraction of chance, "below chance".
RATIO_BELOW = 0.9
#: ``ratio`` scores: from this multiple of chance up, "N× chance"; in between, "at chance".
RATIO_ABOVE = 1.5
#: ``sign`` scores (AUROC): within this of chance (0.5), "at chance".
SIGN_MARGIN = 0.05
#: ``offset`` scores (correlations, R²): within this of chance (0), "at chance".
OFFSET_MARGIN = 0.1
#: What "at chance" means for a heatmap's localisation score.
HEATMAP_AT_CHANCE = "this heatmap does not show where the unit acts"
#: The kinds of score (see the module docstring).
KINDS = ("ratio", "sign", "offset")


class Verdict(NamedTuple):
    """A score judged against its chance level.

    Attributes:
        level: "above" (beats chance), "at", "below", "flipped" (a ``sign`` score below
            chance) or "none" (no score or no chance level).
        text: the whole verdict, e.g. "at chance: this heatmap does not show where the unit
            acts" or "3.1× chance".
        ratio: score / chance for ``ratio`` scores, else None.
    """

    level: str
    text: str
    ratio: float | None = None

    @property
    def short(self) -> str:
        """The verdict's first clause, for a table cell ("at chance")."""
        return self.text.split(":")[0]

    @property
    def trusted(self) -> bool:
        """Whether the score beats its chance level."""
        return self.level == "above"


def _missing(value: float | None) -> bool:
    return value is None or not math.isfinite(float(value))


def verdict(
    score: float | None,
    chance: float | None,
    kind: str = "ratio",
    at_chance: str = HEATMAP_AT_CHANCE,
    name: str = "AUROC",
) -> Verdict:
    """Judge ``score`` against ``chance`` (the rules and thresholds: module docstring).

    Args:
        score: the measured score (None or NaN: "not scored").
        chance: its chance level or baseline (for ``sign`` scores usually 0.5; for
            ``offset`` scores usually 0).
        kind: "ratio", "sign" or "offset".
        at_chance: what an at-chance score means, after "at chance: " ("" for nothing).
        name: the score's name in a ``sign`` verdict ("AUROC below 0.5: ...").

    Returns:
        :class:`Verdict`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown verdict kind '{kind}'; choose one of: {', '.join(KINDS)}")
    if _missing(score) or _missing(chance):
        return Verdict("none", "not scored")
    s, c = float(score), float(chance)  # type: ignore[arg-type]
    at = "at chance" + (f": {at_chance}" if at_chance else "")
    if kind == "ratio":
        if c <= 0:
            return Verdict("none", "no chance level")
        ratio = s / c
        if ratio < RATIO_BELOW:
            return Verdict("below", "below chance", ratio)
        if ratio < RATIO_ABOVE:
            return Verdict("at", at, ratio)
        return Verdict("above", f"{ratio:.1f}× chance", ratio)
    if kind == "sign":
        if s < c - SIGN_MARGIN:
            return Verdict("flipped", f"{name} below {c:g}: the sign is flipped")
        if s <= c + SIGN_MARGIN:
            return Verdict("at", at)
        return Verdict("above", f"above chance ({s:.2f} vs {c:g})")
    difference = s - c
    if difference < -OFFSET_MARGIN:
        return Verdict("below", "below chance")
    if difference <= OFFSET_MARGIN:
        return Verdict("at", at)
    return Verdict("above", f"{difference:+.2f} over chance")


def correlation_verdict(rho: float | None, at_chance: str = "no agreement") -> Verdict:
    """A rank correlation of two maps (chance 0): an ``offset`` verdict whose "below" reads
    "anti-correlated" (the map is high where the other is low)."""
    judged = verdict(rho, 0.0, "offset", at_chance=at_chance)
    if judged.level == "below":
        return Verdict("below", "anti-correlated: high where the unit does not act")
    return judged


def verdict_cell(score: float | None, chance: float | None, kind: str = "ratio") -> str:
    """The short verdict of a table cell, e.g. "3.1× chance" or "at chance"."""
    return verdict(score, chance, kind).short


__all__ = [
    "HEATMAP_AT_CHANCE",
    "KINDS",
    "OFFSET_MARGIN",
    "RATIO_ABOVE",
    "RATIO_BELOW",
    "SIGN_MARGIN",
    "Verdict",
    "correlation_verdict",
    "verdict",
    "verdict_cell",
]
