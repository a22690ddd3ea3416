"""Segmentation quality at equal wall-clock time: a U-Net against bottleneck-only SegVAEs.

Issue #3. The paper (Panday et al., section 4.3) compares its segmentation VAE with a
U-Net (Ronneberger et al., MICCAI 2015). A SegVAE's variational bottleneck is its only
path from encoder to decoder, so Seg-Grad-CAM (Vinogradova et al. 2020) at the bottleneck
explains the whole output; a U-Net's skips carry detail around it. This script measures
what that costs. Every variant trains once, on the same data in the same batch order, for
the same wall-clock time (``--minutes``), then is scored on the whole validation split:

- ``unet``: ``UNet(in_ch=3, out_ch=P, base=32, depth=4)``, the peer;
- ``segvae_paper``: the paper's shape, recipe ``segvae64`` (vector latent K = 5, 5 conv
  blocks to 4x4, linear head);
- ``segvae_spatial``: our bottleneck-only SegVAE, recipe ``segvae64_spatial`` (a spatial
  latent of 8 channels at 16x16, 4 conv blocks of at most 128 channels, plain decoder,
  logvar layer starting at -6, ReLU).

Targets (``--target``): ``binary``, the paper's mask (every part but background and skin;
P = 1 logit, loss ``bce_jaccard``, KL weight 0 as in the paper's code); ``parts``, the 19
CelebAMask-HQ classes (P = 19, loss ``ce_dice``, KL weight ``--beta-parts``, default 0 as for
the mask; a positive weight multiplies the KL summed over latent units and averaged over the
batch, which grows with the number of units: 5 for the paper's shape, 2048 for the spatial
one). Scores: ``iou`` = IoU of the binary mask, pooled over all validation pixels (for
``parts`` derived from the argmax: class >= 2); ``miou`` = mean IoU over the 19 classes
(``parts`` only; classes absent from both prediction and target are left out, as in
training's ``val/miou``); gaps are variant minus U-Net, in IoU points x 100.

Training: Adam (lr 1e-3, constant or, with ``--schedule cosine``, annealed to 0 over the
variant's budget), batch 32, seeded (the same model init seed and the same batch
order for every variant; with ``--hflip`` the same images mirrored, labels with them),
``torch.set_num_threads(--threads)``, fp32 on the CPU (``--channels-last``: every variant
in the channels-last memory format); the clock counts the training steps (batch slicing
included, and with ``--ema DECAY`` the update of each variant's moving average of its
weights, which is then scored beside the last weights), not building the model or scoring.
Output: a Markdown table (stdout, and ``--out FILE.md``); the last line printed is a JSON
object with the numbers.

    python benchmarks/seg_vs_unet.py                       # both targets, 3 minutes per variant
    python benchmarks/seg_vs_unet.py --target binary --minutes 10 --out seg_vs_unet.md
    python benchmarks/seg_vs_unet.py --quick               # seconds: 32 px, 64 faces, 2 steps
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from latentcam.config import load_config
from latentcam.data.augment import flip_lr
from latentcam.data.classes import BINARY_MASK_IDS, NUM_CLASSES
from latentcam.data.dataset import SYNTH, FaceData, FaceDataset, load_face_data
from latentcam.errors import DataError, InputError, TrainingDivergedError
from latentcam.explain.metrics import seg_iou
from latentcam.io import atomic_write
from latentcam.models import UNet, build_model
from latentcam.models.segvae import predicted_labels
from latentcam.training.losses import kl_divergence, seg_loss

#: First class id of the paper's binary mask (0 background and 1 skin are left out).
FIRST_MASK_ID = BINARY_MASK_IDS[0]


@dataclass(frozen=True)
class Variant:
    """One segmenter: the U-Net peer (``recipe`` None) or a SegVAE (a packaged recipe +
    config overrides; image size and classes are set by the run)."""

    name: str
    description: str
    recipe: str | None
    overrides: tuple[str, ...] = ()


VARIANTS: tuple[Variant, ...] = (
    Variant("unet", "U-Net, 4 levels, base 32 (peer)", None),
    Variant("segvae_paper", "SegVAE, paper shape: vector K=5, 5 blocks", "segvae64"),
    Variant("segvae_spatial", "SegVAE, spatial 8x16x16, 4 blocks", "segvae64_spatial"),
)


@dataclass(frozen=True)
class Target:
    """What the segmenters predict: ``classes`` logit channels, trained with ``loss``."""

    name: str  # binary | parts
    classes: int  # P: 1 (sigmoid) or 19 (softmax)
    loss: str  # a latentcam.training.losses.seg_loss name
    beta: float  # KL weight (SegVAEs only)


@dataclass
class Result:
    """One trained variant, scored on the validation split.

    ``iou``: binary-mask IoU in [0, 1]; ``miou``: 19-class mean IoU (None for ``binary``);
    with ``ema`` > 0 both score the moving average of the weights, and ``iou_raw`` /
    ``miou_raw`` the last weights (without it the two pairs are equal); ``gap_iou`` /
    ``gap_miou``: variant minus U-Net (of ``iou`` / ``miou``), in points (x 100), None
    without a U-Net row; ``final_loss``: mean training loss (with the weighted KL) of the
    last (up to) 10 steps; ``final_kl``: mean KL of those steps, nats per image (0 for the
    U-Net).
    """

    target: str
    variant: str
    description: str
    params: int
    steps: int
    train_s: float
    images_per_s: float
    final_loss: float
    final_kl: float
    iou: float
    miou: float | None
    iou_raw: float
    miou_raw: float | None
    ema: float = 0.0
    gap_iou: float | None = None
    gap_miou: float | None = None


def make_targets(names: Sequence[str], beta_parts: float) -> list[Target]:
    """The Target of each name (``binary`` | ``parts``), in the order given."""
    table = {
        "binary": Target("binary", 1, "bce_jaccard", 0.0),
        "parts": Target("parts", NUM_CLASSES, "ce_dice", beta_parts),
    }
    return [table[name] for name in names]


def build_segmenter(variant: Variant, target: Target, size: int) -> nn.Module:
    """A fresh model of ``variant`` for ``target`` at ``size`` px (seed torch first)."""
    if variant.recipe is None:
        return UNet(in_ch=3, out_ch=target.classes, base=32, depth=4)
    overrides = [
        *variant.overrides,
        f"model.image_size={size}",
        f"model.seg_classes={target.classes}",
    ]
    return build_model(load_config([variant.recipe], overrides).model)


def forward_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, P, H, W) and the KL term (scalar; 0 for the U-Net) of images x (B, 3, H, W)."""
    if isinstance(model, UNet):
        return model(x), x.new_zeros(())
    out = model(x)
    assert out.seg_logits is not None, "a SegVAE returns seg_logits"
    return out.seg_logits, kl_divergence(out.mu, out.logvar, reduction="sum")


@dataclass(frozen=True)
class MaskScores:
    """``iou``: pooled IoU of the binary mask (class >= 2 for part labels); ``miou``: the
    19-class mean IoU, or None when the labels are binary."""

    iou: float
    miou: float | None


def score_labels(pred: torch.Tensor, target: torch.Tensor, classes: int) -> MaskScores:
    """Scores of predicted against true labels, both int (N, H, W).

    ``classes`` = 1: both hold the binary mask {0, 1}. ``classes`` = 19: both hold part ids
    0..18; the binary mask of each is ``label >= 2``. IoUs pool all pixels of all images
    (:func:`latentcam.explain.metrics.seg_iou`).
    """
    if classes == 1:
        return MaskScores(iou=float(seg_iou(pred, target, 2).per_class[1]), miou=None)
    binary = seg_iou((pred >= FIRST_MASK_ID).long(), (target >= FIRST_MASK_ID).long(), 2)
    return MaskScores(iou=float(binary.per_class[1]), miou=seg_iou(pred, target, NUM_CLASSES).miou)


def split_tensors(data: FaceData, split: str, binary: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 (N, 3, S, S) in 0..255 and labels uint8 (N, S, S) of one whole split.

    Kept as uint8 (a quarter and an eighth of float32 / int64); :func:`as_inputs` converts
    each batch. Labels are the binary mask {0, 1} when ``binary``, else part ids 0..18.
    """
    dataset = FaceDataset(data, split, binary_mask=binary)
    if len(dataset) == 0:
        raise DataError(f"the '{split}' split of {data.root} is empty; use more images")
    batch = dataset.batch(np.arange(len(dataset)), uint8=True)
    return batch["image"], batch["parts"].to(torch.uint8)


def as_inputs(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images and labels -> float32 (B, 3, S, S) in [0, 1] and int64 (B, S, S)."""
    return images.float().div_(255.0), labels.long()


def train_and_score(
    variant: Variant,
    target: Target,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    *,
    seconds: float,
    max_steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    schedule: str = "constant",
    hflip: bool = False,
    ema: float = 0.0,
    channels_last: bool = False,
) -> Result:
    """Train one variant for ``seconds`` of wall clock (or ``max_steps`` steps, if > 0),
    then score it on the whole validation split. ``hflip``: mirror each training image
    (and its labels) with probability 1/2, the same images for every variant. ``ema`` > 0:
    also keep an exponential moving average of the weights (and BatchNorm statistics) with
    that decay, updated after every step (on the clock), and score it too: ``iou`` /
    ``miou`` are then the average's, ``iou_raw`` / ``miou_raw`` the last weights'.
    ``channels_last``: model and batches in the channels-last memory format."""
    images, labels = train
    size = images.shape[-1]
    torch.manual_seed(seed)
    model = build_segmenter(variant, target, size)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    averaged = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema), use_buffers=True)
        if ema > 0
        else None
    )
    order = np.random.default_rng(seed)  # the same batch order for every variant
    flips = np.random.default_rng([seed, 1])  # and the same flips
    beta = 0.0 if isinstance(model, UNet) else target.beta
    losses: list[float] = []
    kls: list[float] = []
    queue = np.empty(0, dtype=np.int64)
    model.train()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds and (max_steps <= 0 or len(losses) < max_steps):
        if len(queue) < batch_size:
            queue = np.concatenate([queue, order.permutation(len(images))])
        pos, queue = torch.from_numpy(queue[:batch_size]), queue[batch_size:]
        if schedule == "cosine":
            for group in optimiser.param_groups:
                group["lr"] = cosine_lr(lr, time.perf_counter() - start, seconds)
        x, y = as_inputs(images[pos], labels[pos])
        x = x.contiguous(memory_format=memory_format)
        if hflip:
            flags = torch.from_numpy(flips.random(len(pos)) < 0.5)
            x, mirrored = flip_lr(x, y, flags, target.classes)
            assert mirrored is not None
            y = mirrored
        logits, kl = forward_logits(model, x)
        loss = seg_loss(target.loss, logits, y) + beta * kl
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if averaged is not None:
            averaged.update_parameters(model)
        losses.append(float(loss.detach()))
        kls.append(float(kl.detach()))
        if not math.isfinite(losses[-1]):
            raise TrainingDivergedError(
                f"{variant.name} ({target.name}) diverged at step {len(losses)}: loss "
                f"{losses[-1]}; lower --lr (now {lr:g})"
            )
    train_s = time.perf_counter() - start
    raw = score_model(model, val, target.classes)
    scores = raw if averaged is None else score_model(averaged.module, val, target.classes)
    return Result(
        target=target.name,
        variant=variant.name,
        description=variant.description,
        params=sum(p.numel() for p in model.parameters()),
        steps=len(losses),
        train_s=train_s,
        images_per_s=len(losses) * batch_size / train_s if train_s > 0 else 0.0,
        final_loss=float(np.mean(losses[-10:])) if losses else math.nan,
        final_kl=float(np.mean(kls[-10:])) if kls else math.nan,
        iou=scores.iou,
        miou=scores.miou,
        iou_raw=raw.iou,
        miou_raw=raw.miou,
        ema=ema,
    )


def score_model(
    model: nn.Module, val: tuple[torch.Tensor, torch.Tensor], classes: int
) -> MaskScores:
    """Scores of ``model`` (in eval mode) on the validation images and labels (uint8)."""
    model.eval()
    images, labels = val
    with torch.no_grad():
        pred = torch.cat(
            [
                predicted_labels(forward_logits(model, images[i : i + 128].float() / 255.0)[0])
                for i in range(0, len(images), 128)
            ]
        )
    return score_labels(pred, labels.long(), classes)


def cosine_lr(lr: float, elapsed: float, seconds: float) -> float:
    """Learning rate annealed over the wall-clock budget: lr (1 + cos(pi t / T)) / 2,
    t = ``elapsed``, T = ``seconds`` (Loshchilov & Hutter, SGDR, without restarts)."""
    return 0.5 * lr * (1.0 + math.cos(math.pi * min(1.0, elapsed / seconds)))


def add_gaps(results: list[Result]) -> None:
    """Fill ``gap_iou`` / ``gap_miou`` (points, variant minus the same target's U-Net)."""
    peers = {r.target: r for r in results if r.variant == "unet"}
    for r in results:
        peer = peers.get(r.target)
        if peer is None:
            continue
        r.gap_iou = 100.0 * (r.iou - peer.iou)
        if r.miou is not None and peer.miou is not None:
            r.gap_miou = 100.0 * (r.miou - peer.miou)


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None or math.isnan(value) else format(value, spec)


def markdown_table(results: Sequence[Result], header: str) -> str:
    """The results as a Markdown table under a one-paragraph ``header``."""
    lines = [
        header,
        "",
        "| target | variant | params | steps | img/s | val IoU (binary) | gap (pts) "
        "| val mIoU (parts) | gap (pts) | final loss | final KL |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    averaged = any(r.ema > 0 for r in results)
    if averaged:  # the last weights' scores too, after the averages'
        lines[2] = lines[2].replace(
            " | final loss", " | IoU, last weights | mIoU, last weights | final loss"
        )
        lines[3] += "---:|---:|"
    for r in results:
        raw = f" {_fmt(r.iou_raw, '.3f')} | {_fmt(r.miou_raw, '.3f')} |" if averaged else ""
        lines.append(
            f"| {r.target} | {r.description} | {r.params / 1e6:.2f} M | {r.steps} "
            f"| {r.images_per_s:.1f} | {_fmt(r.iou, '.3f')} | {_fmt(r.gap_iou, '+.1f')} "
            f"| {_fmt(r.miou, '.3f')} | {_fmt(r.gap_miou, '+.1f')} |{raw} {_fmt(r.final_loss, '.3f')} "
            f"| {_fmt(r.final_kl, '.1f')} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="training time per variant")
    parser.add_argument("--target", choices=("binary", "parts", "both"), default="both")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--data", default=SYNTH, help="dataset with masks, or 'synth'")
    parser.add_argument("--synth-n", type=int, default=4000, help="synthetic faces to use")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument(
        "--schedule",
        choices=("constant", "cosine"),
        default="constant",
        help="learning rate: constant, or cosine-annealed to 0 over each variant's --minutes",
    )
    parser.add_argument(
        "--beta-parts", type=float, default=0.0, help="KL weight of the SegVAEs for parts"
    )
    parser.add_argument("--max-steps", type=int, default=0, help="also stop here (0 = no cap)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--hflip",
        action="store_true",
        help="mirror each training image (and its labels) with probability 1/2, for every variant",
    )
    parser.add_argument(
        "--ema",
        type=float,
        default=0.0,
        metavar="DECAY",
        help="score an exponential moving average of each variant's weights with this decay "
        "(e.g. 0.99; the last weights are scored too); 0 = off",
    )
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="train every variant in the channels-last memory format (faster convolutions on CPUs)",
    )
    parser.add_argument(
        "--variants",
        default=",".join(v.name for v in VARIANTS),
        help="comma-separated subset of: " + ", ".join(v.name for v in VARIANTS),
    )
    parser.add_argument(
        "--quick", action="store_true", help="seconds: 32 px, 64 faces, batch 8, 2 steps"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (.md)")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.synth_n, args.batch_size = 32, 64, 8
        args.max_steps, args.minutes = 2, min(args.minutes, 0.5)
    return args


def main(argv: Sequence[str] | None = None) -> list[Result]:
    """Run the comparison (arguments as on the command line); print and return the results."""
    args = parse_args(argv)
    known = {v.name: v for v in VARIANTS}
    chosen = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        raise InputError(
            f"--variants {args.variants!r}: unknown {unknown}; choose from {', '.join(known)}"
        )
    if args.minutes <= 0 or args.batch_size < 1:
        raise InputError("--minutes and --batch-size must be positive")
    if not 0.0 <= args.ema < 1.0:
        raise InputError(f"--ema {args.ema:g}: give a decay in [0, 1), e.g. 0.99 (0 = off)")
    torch.set_num_threads(args.threads)
    targets = make_targets(
        ("binary", "parts") if args.target == "both" else (args.target,), args.beta_parts
    )
    data = load_face_data(args.data, args.size, synth_n=args.synth_n, progress=False)
    if data.parts is None:
        raise DataError(f"{data.root} ({data.layout}) has no part masks; give a dataset with masks")

    results: list[Result] = []
    for target in targets:
        binary = target.classes == 1
        train = split_tensors(data, "train", binary)
        val = split_tensors(data, "val", binary)
        for name in chosen:
            result = train_and_score(
                known[name],
                target,
                train,
                val,
                seconds=60.0 * args.minutes,
                max_steps=args.max_steps,
                batch_size=args.batch_size,
                lr=args.lr,
                schedule=args.schedule,
                seed=args.seed,
                hflip=args.hflip,
                ema=args.ema,
                channels_last=args.channels_last,
            )
            print(
                f"{target.name:6s} {name:15s} {result.steps:5d} steps {result.train_s:6.1f} s "
                f"iou {result.iou:.3f}",
                file=sys.stderr,
                flush=True,
            )
            results.append(result)
    add_gaps(results)

    header = (
        f"Segmentation at equal wall-clock time: {args.minutes:g} min per variant, "
        f"{args.threads} thread(s), Adam lr {args.lr:g} ({args.schedule}), batch {args.batch_size}, seed "
        f"{args.seed}{f', at most {args.max_steps} steps' if args.max_steps > 0 else ''}"
        f"{', left-right flips (p = 1/2)' if args.hflip else ''}"
        f"{', channels-last' if args.channels_last else ''}"
        f"{f', scores of the weights EMA (decay {args.ema:g})' if args.ema > 0 else ''}; "
        f"data {args.data} ({data.layout}, {args.size} px, {len(data.splits['train'])} train / "
        f"{len(data.splits['val'])} val). Binary: bce_jaccard, KL weight 0 (the paper's code). "
        f"Parts: ce_dice, KL weight {args.beta_parts:g} (KL summed over latent units); binary "
        "IoU from class >= 2. Gaps: variant minus U-Net, IoU points."
    )
    table = markdown_table(results, header)
    print(table)
    if args.out is not None:
        with atomic_write(args.out) as fh:
            fh.write(table)
    summary: dict[str, Any] = {
        "minutes": args.minutes,
        "threads": args.threads,
        "size": args.size,
        "beta_parts": args.beta_parts,
        "results": [asdict(r) for r in results],
    }
    print(json.dumps(summary))
    return results


if __name__ == "__main__":
    main()
