"""Left-right flips of training batches, with the labels mirrored to match.

A face mirrored left to right is still a face, and its part map is the mirrored map with
the left and right classes swapped (``l_eye`` <-> ``r_eye``, ``l_brow`` <-> ``r_brow``,
``l_ear`` <-> ``r_ear``); the paper's binary mask just mirrors. The flags come from the
caller, so that a seeded run flips the same images at the same step every time (and after
a resume).
"""

from __future__ import annotations

import torch

from latentcam.data.classes import NUM_CLASSES, PART_IDS, PART_NAMES

#: The left/right part pairs of CelebAMask-HQ ("l_lip" is the lower lip: not a side).
MIRROR_PAIRS: tuple[tuple[str, str], ...] = (
    ("l_eye", "r_eye"),
    ("l_brow", "r_brow"),
    ("l_ear", "r_ear"),
)
_SWAP = {a: b for pair in MIRROR_PAIRS for a, b in (pair, pair[::-1])}

#: Class id of each of the 19 parts after a left-right flip.
MIRRORED_PART_IDS: tuple[int, ...] = tuple(PART_IDS[_SWAP.get(n, n)] for n in PART_NAMES)


def flip_lr(
    images: torch.Tensor, labels: torch.Tensor | None, flags: torch.Tensor, classes: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mirror the images (and labels) of a batch where ``flags`` is True.

    Args:
        images: (B, C, H, W).
        labels: (B, H, W) class ids, or None. ``classes`` 19: part ids, whose left and right
            classes swap; 1 or 2: a binary mask, which only mirrors.
        flags: (B,) bool, the images to mirror.
        classes: 19 for part ids, else a binary mask.

    Returns:
        New tensors; the inputs are not changed.
    """
    flags = flags.to(images.device)
    images = torch.where(flags[:, None, None, None], images.flip(-1), images)
    if labels is None:
        return images, None
    mirrored = labels.flip(-1)
    if classes == NUM_CLASSES:
        lookup = torch.tensor(MIRRORED_PART_IDS, dtype=labels.dtype, device=labels.device)
        mirrored = lookup[mirrored.long()].to(labels.dtype)
    return images, torch.where(flags[:, None, None], mirrored, labels)
