"""A plain U-Net (Ronneberger et al., MICCAI 2015): the segmentation peer baseline.

Not a generative model and not explained by latentcam: it is the yardstick the SegVAE is
measured against (the paper compares its segmentation VAE with a U-Net). Its skip
connections carry high-resolution detail around the bottleneck, which a SegVAE must not
have (the bottleneck is its only path).
"""

from __future__ import annotations

import torch
from torch import nn


class DoubleConv(nn.Sequential):
    """(conv 3x3 -> BatchNorm -> ReLU) x 2: (B, C_in, h, w) -> (B, C_out, h, w)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net with ``depth`` 2x2 max-pool levels: x (B, in_ch, H, W) -> logits (B, out_ch, H, W).

    Channels base, 2 base, ..., 2**depth base at the bottom (4 levels, base 32: 32..512);
    upsampling by 2x2 transposed convs, skips concatenated; a 1x1 conv to ``out_ch``
    logits (a sigmoid for out_ch = 1, a softmax over classes otherwise). H and W must be
    divisible by 2**depth.
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 1, base: int = 32, depth: int = 4) -> None:
        super().__init__()
        widths = [base * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.down = nn.ModuleList(
            [DoubleConv(in_ch, widths[0])]
            + [DoubleConv(widths[i], widths[i + 1]) for i in range(depth)]
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(
            [
                nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                for i in reversed(range(depth))
            ]
        )
        self.merge = nn.ModuleList(
            [DoubleConv(2 * widths[i], widths[i]) for i in reversed(range(depth))]
        )
        self.out = nn.Conv2d(widths[0], out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = self.down[0](x)
        for level in range(1, self.depth + 1):
            skips.append(h)  # (B, base * 2**(level-1), H / 2**(level-1), ...)
            h = self.down[level](self.pool(h))
        for up, merge in zip(self.up, self.merge, strict=True):
            h = merge(torch.cat([up(h), skips.pop()], dim=1))
        return self.out(h)  # (B, out_ch, H, W)
