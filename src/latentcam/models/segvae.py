"""Segmentation VAE: a VAE-shaped encoder-decoder that predicts face-part masks.

Panday et al., "Interpretation of Activation Maps in Generative Models", section 4.3 and
their ``SegGradCAM.py``: the VAE of :mod:`latentcam.models.vae` whose decoder outputs the
binary mask (every part but skin and background; ``seg_classes=1``, one logit channel)
instead of the image, trained with BCE + Jaccard. Here it can also predict the 19
CelebAMask-HQ classes (``seg_classes=19``) and, with ``seg_recon_image=True``, the image
from the same decoder trunk. Explained with Seg-Grad-CAM (Vinogradova et al. 2020).

The variational bottleneck is the ONLY path from encoder to decoder (no skip
connections), so a Seg-Grad-CAM map at the bottleneck accounts for the whole output.

Closing the gap to a U-Net without skips (ModelConfig options; defaults keep the paper's
shape). The lever is the bottleneck's resolution; recipe ``segvae64_spatial`` is the
measured choice (``benchmarks/seg_vs_unet.py``, numbers in the README):

- ``bottleneck="spatial"``: a 1x1 conv to K = ``latent_dim`` channels at the smallest
  map instead of a vector; its side is set by ``min_feature_size`` (16 at 64 px in the
  recipe: 8 channels x 16 x 16 = 2048 units, each coding a 4x4-pixel patch). mu is then
  (B, K * s * s), channel-major.
- ``logvar_init=-6``: with KL weight 0 the sampling noise only slows training; starting
  the logvar bias at -6 makes it small (SD e^-3) from step 0.
- ``activation="relu"``: the paper's LeakyReLU keeps 0.3 of the negative part (Keras's
  default slope), a nearly linear unit; ReLU learned about 1.5x faster per step (below).
- Cost per step is what decides an equal-time race on a CPU: 4 blocks of at most 128
  channels and the plain decoder (234 ms per batch of 32 on 2 threads, against 2093 ms for
  5 blocks of 256 channels with ``downsample="pool"``, ``decoder="residual"`` and
  ``coord_channels=True``, and 940 ms for the U-Net; one run, medians of 4 steps).

Measured while choosing (binary mask, synthetic faces, batch 32, one thread, one seed,
IoU on 384 validation images): every 16x16 variant with LeakyReLU learned at nearly the
same rate per step (about 0.81-0.86 IoU after 100 steps, 0.89-0.91 after 337, 0.91-0.92
after 505, 0.93 after 823); ``downsample="pool"`` led early (0.855 vs 0.807 at 100 steps)
but was even by 337 steps at 1.25x the cost; 256 channels, 64 base channels, K = 16, a
pixel-shuffle decoder with residual blocks at 16x16, Adam lr 2e-3 and the Lovasz loss
gained nothing per step. A 32x32 x 4 latent behind 3 blocks learned slower (0.910 after
587 steps); behind 4 blocks (pool, 64 channels) it learned more per step (0.902 vs 0.881
after 225) but cost 1.4x per step and was level in equal time.

The activation was the one change that helped per step (same setting, logvar bias -8,
two runs at a time on one thread each): ReLU reached 0.857 / 0.902 / 0.913 / 0.930 IoU
after 100 / 225 / 337 / 505 steps, against 0.807 / 0.881 / 0.904 / 0.921 with LeakyReLU(0.3)
(0.930 only after 757); SiLU 0.849 / 0.899 / 0.915 / 0.929 at a higher cost per step. No
gain per step from: two more conv blocks at 64 px before the output (0.905 after 337), a
second conv in every encoder and decoder level (0.895 after 304), auxiliary losses on the
downsampled mask at every decoder level (0.886 after 337), BatchNorm after the decoder's
stem (0.900 after 337); a narrower net (16 base, at most 64 channels) cost 2.5x less per
step but learned slower per step (0.880 after 337), so in equal time it ended only a little
ahead (0.931 after 300 s; the recipe with LeakyReLU: 0.921 after 262 s, 0.930 after 387 s);
a 32x32 x 2 latent behind strided blocks of at most 64 channels learned slower (0.870 after
337) at about the recipe's cost per step; with ReLU, Adam lr 2e-3 and 3e-3 gained nothing
(0.921 and 0.915 after 337, 0.894 after 486 and 0.926 after 482).

Most of what was left of the gap at 5 minutes was over-fitting, not learning speed: with
ReLU, after 1087 / 1337 steps (11 / 13 passes over the 3200 training faces) the IoU on 384
training faces was 0.958 / 0.960 against 0.944 / 0.945 on validation faces, while the U-Net
stops after about 3 passes. Mirroring training images left-right (``data.hflip``, in the
recipe) halved that spread and raised validation IoU: 0.947 / 0.948 (training faces 0.955 /
0.955). With flips the 5-minute gap was 0.2 and 0.3 points (two seeds); at 10 minutes the
U-Net pulled ahead again (0.966 against 0.956).

Two things that help both networks, measured at 10 minutes with flips: scoring an
exponential moving average of the weights (decay 0.99; ``train.ema_decay``, in the recipe)
instead of the last weights, +0.4 and +0.5 IoU points for the SegVAE and +0.4 and +0.3 for
the U-Net (seeds 0 and 1); and the channels-last memory format (3499 against 2711 SegVAE
steps in 10 minutes, 746 against 631 U-Net steps; separate runs, seed 0). With both the gap
was 0.9 and 0.8 points. Per step (one thread, the recipe): left-right flips plus random
shifts of up to 4 pixels learned slower (0.939 against 0.947 after 1000 steps); 256 instead
of 128 channels in the last block learned no faster (0.946 after 1000 steps) at about 1.3x
the cost per step.
"""

from __future__ import annotations

import torch
from torch import nn

from latentcam.config import ModelConfig, SegVAEConfig
from latentcam.errors import ConfigError
from latentcam.models.base import IMAGE, SEGMENTATION, Decoded
from latentcam.models.vae import VAE


def predicted_labels(seg_logits: torch.Tensor) -> torch.Tensor:
    """Class ids (B, H, W) int64 from logits (B, P, H, W): ``logit > 0`` for P = 1 (the
    binary mask), argmax over classes otherwise."""
    if seg_logits.shape[1] == 1:
        return (seg_logits[:, 0] > 0).long()
    return seg_logits.argmax(dim=1)


class SegVAE(VAE):
    """``forward(x) -> VAEOutput(recon or None, mu, logvar, z, seg_logits (B, P, H, W))``.

    P = ``config.seg_classes`` (1: the paper's binary mask, logits for a sigmoid;
    19: CelebAMask-HQ parts, logits for a softmax). ``recon`` (B, 3, H, W) in [0, 1] only
    with ``seg_recon_image``.
    """

    kind = "segvae"

    def __init__(self, cfg: SegVAEConfig) -> None:
        if not isinstance(cfg, SegVAEConfig):
            raise ConfigError(
                f"a SegVAE is built from a SegVAEConfig (model.kind=segvae), got a "
                f"{type(cfg).__name__}"
            )
        super().__init__(cfg)

    def _build_output_heads(self, cfg: ModelConfig, channels: int) -> None:
        assert isinstance(cfg, SegVAEConfig)  # checked by __init__
        self.seg_classes = cfg.seg_classes
        self.seg_head = nn.Conv2d(channels, cfg.seg_classes, 3, padding=1)
        self.image_head: nn.Module | None = (
            nn.Conv2d(channels, 3, 3, padding=1) if cfg.seg_recon_image else None
        )

    @property
    def outputs(self) -> frozenset[str]:
        """``{"seg"}``, plus ``"image"`` with ``seg_recon_image``."""
        return frozenset({SEGMENTATION} if self.image_head is None else {SEGMENTATION, IMAGE})

    def _outputs(self, features: torch.Tensor) -> Decoded:
        seg_logits = self.seg_head(features)  # (B, P, H, W)
        recon = None if self.image_head is None else torch.sigmoid(self.image_head(features))
        return Decoded(recon=recon, seg_logits=seg_logits)
