"""Face-part classes and CelebA attributes, in the official orders.

The 19 part classes follow CelebAMask-HQ (Lee et al., CVPR 2020, "MaskGAN"); when parts
overlap, the later id wins. The 40 attributes follow CelebA (Liu et al., ICCV 2015,
``list_attr_celeba.txt``).
"""

from __future__ import annotations

import numpy as np

#: CelebAMask-HQ part names; the index is the class id (0 = background).
PART_NAMES: tuple[str, ...] = (
    "background",
    "skin",
    "nose",
    "eye_g",
    "l_eye",
    "r_eye",
    "l_brow",
    "r_brow",
    "l_ear",
    "r_ear",
    "mouth",
    "u_lip",
    "l_lip",
    "hair",
    "hat",
    "ear_r",
    "neck_l",
    "neck",
    "cloth",
)
NUM_CLASSES = len(PART_NAMES)  # 19
PART_IDS: dict[str, int] = {name: i for i, name in enumerate(PART_NAMES)}

#: The paper's binary segmentation target: every part except background and skin.
BINARY_MASK_IDS: tuple[int, ...] = tuple(range(2, NUM_CLASSES))

#: CelebA's 40 attribute names, in file order.
ATTRIBUTE_NAMES: tuple[str, ...] = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)
NUM_ATTRIBUTES = len(ATTRIBUTE_NAMES)  # 40
ATTRIBUTE_IDS: dict[str, int] = {name: i for i, name in enumerate(ATTRIBUTE_NAMES)}

#: Face regions used by the localisation metrics: a region is a set of part ids.
#: Left/right parts are merged because a latent unit rarely cares about one side only.
REGIONS: dict[str, tuple[int, ...]] = {
    "skin": (1,),
    "nose": (2,),
    "eyes": (4, 5),
    "glasses": (3,),
    "brows": (6, 7),
    "ears": (8, 9),
    "mouth": (10, 11, 12),
    "hair": (13,),
    "hat": (14,),
    "earrings": (15,),
    "neck": (16, 17),
    "cloth": (18,),
    "background": (0,),
}


def binary_mask(parts: np.ndarray) -> np.ndarray:
    """The paper's binary mask of a label map.

    Args:
        parts: integer label map (..., H, W) with values in 0..18.

    Returns:
        uint8 array of the same shape, 1 where the part is neither background nor skin.
    """
    return (np.asarray(parts) >= 2).astype(np.uint8)


def region_masks(parts: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks (..., H, W) of every region in :data:`REGIONS` for a label map."""
    parts = np.asarray(parts)
    return {name: np.isin(parts, ids) for name, ids in REGIONS.items()}
