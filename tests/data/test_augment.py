"""Left-right flips: images and labels mirrored by hand, left/right parts swapped."""

from __future__ import annotations

import torch

from latentcam.data.augment import MIRRORED_PART_IDS, flip_lr
from latentcam.data.classes import PART_IDS, PART_NAMES


def test_mirrored_part_ids_swap_exactly_the_three_side_pairs() -> None:
    swapped = {PART_NAMES[i]: PART_NAMES[j] for i, j in enumerate(MIRRORED_PART_IDS) if i != j}
    assert swapped == {
        "l_eye": "r_eye",
        "r_eye": "l_eye",
        "l_brow": "r_brow",
        "r_brow": "l_brow",
        "l_ear": "r_ear",
        "r_ear": "l_ear",
    }  # l_lip (lower lip), u_lip and ear_r (earring) keep their ids


def test_flip_lr_by_hand() -> None:
    images = torch.tensor([[[[1.0, 2.0, 3.0]]], [[[4.0, 5.0, 6.0]]]])  # (2, 1, 1, 3)
    eye_l, eye_r, nose = PART_IDS["l_eye"], PART_IDS["r_eye"], PART_IDS["nose"]
    parts = torch.tensor([[[eye_l, nose, eye_r]], [[eye_l, nose, nose]]])  # (2, 1, 3)
    flags = torch.tensor([True, False])
    out, labels = flip_lr(images, parts, flags, classes=19)
    assert out.tolist() == [[[[3.0, 2.0, 1.0]]], [[[4.0, 5.0, 6.0]]]]
    assert labels is not None
    # mirrored: [r_eye, nose, l_eye] -> sides swapped -> [l_eye, nose, r_eye]
    assert labels.tolist() == [[[eye_l, nose, eye_r]], [[eye_l, nose, nose]]]
    assert parts[1].tolist() == [[eye_l, nose, nose]]  # inputs untouched
    binary = torch.tensor([[[1, 0, 0]], [[1, 1, 0]]])
    _, mask = flip_lr(images, binary, flags, classes=1)  # a binary mask only mirrors
    assert mask is not None and mask.tolist() == [[[0, 0, 1]], [[1, 1, 0]]]
    alone, none = flip_lr(images, None, torch.tensor([False, True]), classes=1)
    assert none is None and alone[1].tolist() == [[[6.0, 5.0, 4.0]]]
