"""What a reader may trust in a run: the undertraining floors, the banner and "at a glance".

The floors live here, in one place; the report and the demo index read them.

- :data:`PSNR_FLOOR_DB`: a reconstruction below it is a blur (the demo aims at 23 dB), and
  a run at or below the PSNR of the mean image (every face replaced by the average face)
  has learnt nothing about the individual face.
- :data:`MIN_STEPS`: fewer optimiser steps than this is a smoke run, whatever its scores.
  It only catches smoke runs: a short run with a schedule that spans its steps (the demo's
  300-450 onecycle steps) can be trained, and the quality floors below judge it.
- The per-pixel prior (SegVAE): the mask that marks a pixel as foreground where most
  faces have foreground there. A segmentation whose IoU does not beat the prior's by
  :data:`latentcam.verdicts.OFFSET_MARGIN` draws about one template mask for every
  face.
- Weight averaging (``train.ema_decay`` = d): the warm-up decay min(d, (1 + t) / (10 + t))
  reaches d after :func:`ema_warmup_steps` (d) steps; a run that stops earlier holds an
  average of a few, early weights.

:func:`undertrained` turns these into the banner's lines; :func:`glance` writes the box
that opens each report: what to trust, what not, and the one command that would improve it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latentcam.errors import InputError
from latentcam.io import write_json
from latentcam.verdicts import OFFSET_MARGIN, Verdict, correlation_verdict, verdict

#: Reconstructions below this validation PSNR (dB) are blurs.
PSNR_FLOOR_DB = 20.0
#: Runs of fewer optimiser steps are smoke runs (longer ones are judged by their scores).
MIN_STEPS = 100
#: The step budget the improving command asks for, at least (and at least 4x the run's).
LONGER_STEPS = 2000


def ema_warmup_steps(decay: float) -> int:
    """Steps until the warm-up decay min(d, (1 + t) / (10 + t)) reaches ``decay`` = d
    (0 for no averaging): t = (10 d - 1) / (1 - d); 890 for d = 0.99."""
    if decay <= 0:
        return 0
    return max(0, math.ceil(round((10.0 * decay - 1.0) / (1.0 - decay), 6)))


def psnr(mse: float) -> float:
    """PSNR (dB) of images in [0, 1] from their mean squared error."""
    return float("inf") if mse <= 0 else float(-10.0 * math.log10(mse))


def mean_image_psnr(images: np.ndarray) -> float:
    """PSNR (dB) of predicting every image (N, 3, H, W) in [0, 1] by their mean image: the
    floor any reconstruction must beat."""
    x = np.asarray(images, dtype=np.float64)
    return psnr(float(((x - x.mean(0, keepdims=True)) ** 2).mean()))


def prior_mask_iou(masks: np.ndarray) -> float:
    """IoU of the per-pixel prior mask against bool masks (N, H, W): the prior marks the
    pixels where at least half the masks are set, the same for every face."""
    m = np.asarray(masks, dtype=bool)
    prior = np.broadcast_to(m.mean(0) >= 0.5, m.shape)
    union = float((prior | m).sum())
    return 1.0 if union == 0 else float((prior & m).sum()) / union


@dataclass
class RunFacts:
    """What the floors are read against (None where the run does not have it).

    Attributes:
        kind: vae | cvae | segvae.
        steps: optimiser steps trained.
        ema_decay: ``train.ema_decay`` (0 = no averaging).
        psnr: validation PSNR (dB) of the reconstructions.
        mean_psnr: PSNR of the mean image on the same images (:func:`mean_image_psnr`).
        iou: binary-mask IoU of the segmentation.
        prior_iou: IoU of the per-pixel prior mask (:func:`prior_mask_iou`).
        command: the command that trains the run further (the glance's advice).
    """

    kind: str
    steps: int
    ema_decay: float = 0.0
    psnr: float | None = None
    mean_psnr: float | None = None
    iou: float | None = None
    prior_iou: float | None = None
    command: str = ""


def undertrained(facts: RunFacts) -> list[str]:
    """The banner's lines: one per floor the run falls below (empty for a trained run)."""
    lines = []
    if facts.steps < MIN_STEPS:
        lines.append(
            f"Only {facts.steps} training steps (fewer than {MIN_STEPS}): a smoke run; its "
            "heatmaps and scores describe an untrained model."
        )
    if facts.psnr is not None and math.isfinite(facts.psnr):
        if facts.mean_psnr is not None and facts.psnr <= facts.mean_psnr:
            lines.append(
                f"Validation PSNR {facts.psnr:.1f} dB is no better than the mean image's "
                f"{facts.mean_psnr:.1f} dB: every face decodes to the average face."
            )
        elif facts.psnr < PSNR_FLOOR_DB:
            lines.append(
                f"Validation PSNR {facts.psnr:.1f} dB is below the floor of {PSNR_FLOOR_DB:.0f} "
                "dB: reconstructions are blurs"
                + (
                    f" (the mean image scores {facts.mean_psnr:.1f} dB)."
                    if facts.mean_psnr
                    else "."
                )
            )
    if facts.iou is not None and facts.prior_iou is not None:
        if not verdict(facts.iou, facts.prior_iou, "offset").trusted:  # within OFFSET_MARGIN
            lines.append(
                f"Binary IoU {facts.iou:.3f} does not beat the per-pixel prior's "
                f"{facts.prior_iou:.3f} by {OFFSET_MARGIN} (the prior draws the same template "
                "mask for every face): the segmentation barely looks at the face."
            )
    warmup = ema_warmup_steps(facts.ema_decay)
    if warmup and facts.steps < warmup:
        lines.append(
            f"The weights are an average (EMA decay {facts.ema_decay:g}) whose warm-up reaches "
            f"its decay after {warmup} steps; at {facts.steps} steps it still averages a few "
            "early weights."
        )
    return lines


#: File beside a report's index.html that holds its :class:`Glance` (the demo index reads it).
GLANCE_FILE = "glance.json"


@dataclass
class Glance:
    """The "at a glance" box: what to trust, what not, and the one command to improve it.

    Attributes:
        trust, doubt: one line per score that beats its chance level / does not.
        command: the one command that would improve the run (train longer).
        advice: the command in words.
        banner: the undertraining warnings (:func:`undertrained`).
    """

    trust: list[str] = field(default_factory=list)
    doubt: list[str] = field(default_factory=list)
    command: str = ""
    advice: str = ""
    banner: list[str] = field(default_factory=list)

    @property
    def headline(self) -> str:
        """One cell for a table of runs: "undertrained (N warnings)", "N scores at or below
        chance" or "every score beats chance"."""
        if self.banner:
            n = len(self.banner)
            return f"undertrained ({n} warning{'' if n == 1 else 's'})"
        if self.doubt:
            return f"{len(self.doubt)} scores at or below chance"
        return "every score beats chance"


def write_glance(box: Glance, folder: Path) -> Path:
    """Write ``box`` to ``folder/glance.json`` (:data:`GLANCE_FILE`)."""
    path = folder / GLANCE_FILE
    write_json(path, asdict(box))
    return path


def read_glance(folder: Path) -> Glance:
    """The :class:`Glance` a report wrote into ``folder`` (a report folder)."""
    import json

    path = folder / GLANCE_FILE
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(
            f"cannot read the report's glance {path}: {err}; rebuild the report"
        ) from err
    keys = ("trust", "doubt", "command", "advice", "banner")
    return Glance(**{k: fields[k] for k in keys if k in fields})


def merge_glances(boxes: Mapping[str, Glance]) -> Glance:
    """One box for several runs (the demo's index): each line prefixed with its run's name;
    the command of the first run that has warnings (else of the first with doubts)."""
    merged = Glance()
    for name, box in boxes.items():
        merged.trust += [f"{name}: {t}" for t in box.trust]
        merged.doubt += [f"{name}: {d}" for d in box.doubt]
        merged.banner += [f"{name}: {b}" for b in box.banner]
    worst = [n for n, b in boxes.items() if b.banner] or [n for n, b in boxes.items() if b.doubt]
    if worst and boxes[worst[0]].command:
        merged.command = boxes[worst[0]].command
        merged.advice = f"{worst[0]}: {boxes[worst[0]].advice}"
    return merged


def _judged(items: Sequence[tuple[str, Verdict]], glance: Glance) -> None:
    for what, judged in items:
        if judged.level == "none":
            continue
        (glance.trust if judged.trusted else glance.doubt).append(f"{what}: {judged.text}")


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(float(value)) else None


def glance(facts: RunFacts, metrics: Mapping[str, Any], layer: str, method: str) -> Glance:
    """The box for one report, from the run's facts and ``metrics`` (evaluate's dict).

    Args:
        facts: the run (:class:`RunFacts`).
        metrics: :func:`latentcam.evaluate.evaluate`'s dict.
        layer, method: the layer and CAM method the report shows.
    """
    box = Glance()
    warnings = undertrained(facts)
    if facts.psnr is not None:
        box_list = (
            box.doubt
            if (facts.psnr < PSNR_FLOOR_DB or any("PSNR" in w for w in warnings))
            else box.trust
        )
        box_list.append(f"reconstructions: validation PSNR {facts.psnr:.1f} dB")
    if facts.iou is not None and facts.prior_iou is not None:
        _judged(
            [
                (
                    "segmentation (binary IoU vs the per-pixel prior)",
                    verdict(
                        facts.iou,
                        facts.prior_iou,
                        "offset",  # as the banner and the segmentation table read it
                        at_chance="one template mask for every face",
                    ),
                )
            ],
            box,
        )
    row = _comparison_row(metrics, layer, method)
    if row is not None:
        _judged(
            [
                (
                    f"heatmaps at {layer} (pointing game vs chance)",
                    verdict(_num(row.get("pointing_game")), _num(row.get("chance"))),
                ),
                (
                    "heatmap vs where the unit acts (Spearman)",
                    correlation_verdict(_num(row.get("spearman_cam_effect"))),
                ),
            ],
            box,
        )
    sanity = metrics.get("sanity", {})
    if sanity.get("curve"):
        (box.trust if sanity.get("passes") else box.doubt).append(
            "sanity check (randomised encoder changes the maps): "
            + ("passes" if sanity.get("passes") else "fails: the maps do not depend on the weights")
        )
    auroc = metrics.get("ranking", {}).get("attribute_auroc", {})
    flipped = [a for a, v in auroc.items() if verdict(_num(v), 0.5, "sign").level == "flipped"]
    if flipped:
        box.doubt.append(
            "held-out AUROC below 0.5 (the sign is flipped) for " + ", ".join(sorted(flipped))
        )
    control = metrics.get("attribute_control", {}).get("per_attribute", {})
    edits = {
        name: verdict(_num(v.get("flip_rate")), _num(v.get("unedited_rate")), "offset")
        for name, v in control.items()
    }
    shown = [n for n, v in edits.items() if v.trusted]
    if edits:
        (box.trust if len(shown) * 2 >= len(edits) else box.doubt).append(
            f"CVAE attribute edits: {len(shown)} of {len(edits)} flips show (flip rate above "
            "the unedited reconstruction's)" + (f": {', '.join(shown[:6])}" if shown else "")
        )
    for name, cam in metrics.get("segmentation", {}).get("seg_grad_cam", {}).items():
        _judged(
            [
                (
                    f"Seg-Grad-CAM of {name} (energy in the class vs its area)",
                    verdict(_num(cam.get("energy_in_class")), _num(cam.get("chance"))),
                )
            ],
            box,
        )
    factors = [
        f for f in metrics.get("disentanglement", {}).get("factors", []) if "pointing_game" in f
    ]
    if factors:
        landed = [
            f["factor"]
            for f in factors
            if verdict(_num(f.get("pointing_game")), _num(f.get("chance"))).trusted
        ]
        (box.trust if len(landed) * 2 >= len(factors) else box.doubt).append(
            f"known factors: {len(landed)} of {len(factors)} best units' maps land on their part"
        )
    box.command = facts.command
    box.advice = "train longer" if warnings else "train longer or on real faces to sharpen the maps"
    box.banner = warnings
    return box


def _comparison_row(
    metrics: Mapping[str, Any], layer: str, method: str
) -> Mapping[str, Any] | None:
    for row in metrics.get("localisation", {}).get("comparison", []):
        if row.get("layer") == layer and row.get("method") == method:
            return row
    return None


def longer_command(config_path: str, out: str, steps: int) -> str:
    """The command that trains the same recipe for longer into ``out``."""
    budget = max(LONGER_STEPS, 4 * steps)
    return f"latentcam train --config {config_path} --max-steps {budget} --out {out}"


__all__ = [
    "LONGER_STEPS",
    "MIN_STEPS",
    "PSNR_FLOOR_DB",
    "GLANCE_FILE",
    "Glance",
    "merge_glances",
    "read_glance",
    "write_glance",
    "RunFacts",
    "ema_warmup_steps",
    "glance",
    "longer_command",
    "mean_image_psnr",
    "prior_mask_iou",
    "psnr",
    "undertrained",
]
