"""Building blocks shared by every model: conv blocks, encoder, latent heads, decoder.

The encoder follows the paper's Keras code (Panday et al., "Interpretation of Activation
Maps in Generative Models"): ``L`` blocks of conv + norm + activation, each halving the
spatial side until ``min_feature_size`` is reached, channels doubling per block (capped),
then a flatten and one dense layer each for ``mu`` and ``logvar``. The decoder mirrors it
(a dense layer back to the smallest map, then one up-block per encoder block).

Names are part of the contract: the explained activation maps are the OUTPUTS of
``encoder.blocks.{i}`` (always a conv activation, never a pooled map), and with
``head="linear"`` the path from the last block to ``mu`` is ``flatten -> nn.Linear``: affine,
which the CAM engine exploits.

Downsampling (``ModelConfig.downsample``):

- ``"stride"`` (default, the paper's segmentation/VAE code): block i is a 3x3 conv with
  stride 2, so block i's output is already at the halved size.
- ``"pool"`` (the paper's Keras CVAE): block i is a 3x3 conv with stride 1, and the 2x2
  max-pool that halves it is a separate module, ``encoder.pools.{i}``, applied AFTER the
  block. Hence the block output (what Grad-CAM explains) is the pre-pool conv activation,
  at twice the side of the stride variant, and the path from the last block to ``mu``
  contains a max-pool (not affine: the CAM engine then takes its general path).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import nn

from latentcam.errors import ConfigError

NORMS = ("batch", "group", "instance", "none")
ACTIVATIONS = ("leaky_relu", "relu", "elu", "silu")
DECODERS = ("plain", "residual")


class LayerShape(NamedTuple):
    """Shape of one encoder block's output activation map for a single image.

    Attributes:
        name: dotted module name, e.g. ``"encoder.blocks.3"``.
        channels: C.
        size: the map's side h == w in pixels.
    """

    name: str
    channels: int
    size: int


def group_count(channels: int) -> int:
    """Groups for GroupNorm: the largest of 32, 16, ..., 1 that divides C with >= 2 channels each."""
    for groups in (32, 16, 8, 4, 2):
        if channels % groups == 0 and channels // groups >= 2:
            return groups
    return 1


def make_norm(kind: str, channels: int) -> nn.Module:
    """Normalisation layer for (B, C, h, w) maps: batch | group | instance | none (Identity)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(group_count(channels), channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"config key 'model.norm' is '{kind}'; choose one of: {', '.join(NORMS)}")


def make_activation(kind: str) -> nn.Module:
    """Activation: leaky_relu (slope 0.3, Keras's default, as in the paper) | relu | elu | silu."""
    if kind == "leaky_relu":
        return nn.LeakyReLU(0.3)
    if kind == "relu":
        return nn.ReLU()
    if kind == "elu":
        return nn.ELU()
    if kind == "silu":
        return nn.SiLU()
    raise ConfigError(
        f"config key 'model.activation' is '{kind}'; choose one of: {', '.join(ACTIVATIONS)}"
    )


class ConvBlock(nn.Sequential):
    """conv (3x3, stride 1 or 2) -> norm -> activation; children named conv, norm, act.

    Input (B, C_in, h, w) -> output (B, C_out, h / stride, w / stride), the activation map
    that Grad-CAM explains.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, activation: str) -> None:
        layers = OrderedDict(
            conv=nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=norm == "none"),
            norm=make_norm(norm, c_out),
            act=make_activation(activation),
        )
        super().__init__(layers)


class ResidualBlock(nn.Module):
    """Basic residual block (He et al., CVPR 2016): act(x + norm(conv(act(norm(conv(x)))))).

    (B, C, h, w) -> (B, C, h, w).
    """

    def __init__(self, channels: int, norm: str, activation: str) -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
        self.norm1 = make_norm(norm, channels)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
        self.norm2 = make_norm(norm, channels)
        self.act2 = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.norm1(self.conv1(x)))
        return self.act2(x + self.norm2(self.conv2(h)))


class AddCoords(nn.Module):
    """Concatenate two coordinate channels (x, y in [-1, 1]) to a map (CoordConv, Liu et al. 2018).

    (B, C, h, w) -> (B, C + 2, h, w). Gives a decoder fed from a vector latent an explicit
    sense of position (where a part should go) at no cost in parameters.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, h, w = x.shape
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)
        grid_y = ys.view(1, 1, h, 1).expand(B, 1, h, w)
        grid_x = xs.view(1, 1, 1, w).expand(B, 1, h, w)
        return torch.cat([x, grid_x, grid_y], dim=1)


class UpBlock(nn.Module):
    """One decoder level: (B, C_in, h, w) -> (B, C_out, s*h, s*w) with s = 2 or 1.

    ``plain`` (the paper's decoder): a 4x4 stride-2 transposed conv (3x3 conv when the
    level keeps its size) -> norm -> act. ``residual``: nearest 2x upsampling -> 3x3 conv
    -> norm -> act -> a residual block (upsample + conv avoids the checkerboard artefacts
    of transposed convs; Odena et al., Distill 2016). ``coords`` prepends two coordinate
    channels to the input (CoordConv).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        upsample: bool,
        norm: str,
        activation: str,
        style: str,
        coords: bool,
    ) -> None:
        super().__init__()
        if style not in DECODERS:
            raise ConfigError(
                f"config key 'model.decoder' is '{style}'; choose one of: {', '.join(DECODERS)}"
            )
        self.coords = AddCoords() if coords else nn.Identity()
        c_in = c_in + 2 if coords else c_in
        bias = norm == "none"
        self.conv: nn.Module
        if style == "residual":
            self.up = nn.Upsample(scale_factor=2, mode="nearest") if upsample else nn.Identity()
            self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)
        else:
            self.up = nn.Identity()
            if upsample:
                self.conv = nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=bias)
            else:
                self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)
        self.norm = make_norm(norm, c_out)
        self.act = make_activation(activation)
        self.refine = (
            ResidualBlock(c_out, norm, activation) if style == "residual" else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(self.coords(x))
        return self.refine(self.act(self.norm(self.conv(x))))


def feature_sizes(image_size: int, num_layers: int, min_feature_size: int) -> list[int]:
    """Side of the map after each encoder level (block + pool): halve while >= min_feature_size.

    >>> feature_sizes(64, 6, 4)
    [32, 16, 8, 4, 4, 4]
    """
    sizes = []
    size = image_size
    for _ in range(num_layers):
        if size % 2 == 0 and size // 2 >= min_feature_size:
            size //= 2
        sizes.append(size)
    return sizes


def channel_widths(num_layers: int, base_channels: int, max_channels: int) -> list[int]:
    """Channels of encoder block i: base * 2**i, capped at max_channels."""
    return [min(base_channels * 2**i, max_channels) for i in range(num_layers)]


class Encoder(nn.Module):
    """The convolutional encoder: x (B, C_in, H, W) -> features (B, C_L, s, s).

    ``blocks.{i}`` are the explainable conv blocks (shallow to deep); ``pools.{i}`` exist
    only with ``downsample="pool"`` (MaxPool2d(2) where the level halves, else Identity),
    applied after block i so that the block output is the pre-pool conv activation.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_layers: int,
        base_channels: int,
        max_channels: int,
        min_feature_size: int,
        downsample: str,
        norm: str,
        activation: str,
    ) -> None:
        super().__init__()
        if downsample not in ("stride", "pool"):
            raise ConfigError(
                f"config key 'model.downsample' is '{downsample}'; choose one of: stride, pool"
            )
        self.downsample = downsample
        self.out_sizes = feature_sizes(image_size, num_layers, min_feature_size)
        self.widths = channel_widths(num_layers, base_channels, max_channels)
        in_sizes = [image_size, *self.out_sizes[:-1]]
        blocks = []
        pools: list[nn.Module] = []
        c_in = in_channels
        for c_out, s_in, s_out in zip(self.widths, in_sizes, self.out_sizes, strict=True):
            halves = s_out < s_in
            stride = 2 if (halves and downsample == "stride") else 1
            blocks.append(ConvBlock(c_in, c_out, stride, norm, activation))
            pools.append(nn.MaxPool2d(2) if halves else nn.Identity())
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.pools = nn.ModuleList(pools) if downsample == "pool" else None
        # Side of each block's OUTPUT map (pre-pool in pool mode).
        self.block_sizes = self.out_sizes if downsample == "stride" else in_sizes

    def layer_shapes(self, prefix: str = "encoder.blocks") -> list[LayerShape]:
        """Each block's output shape, shallow to deep (sides never increase)."""
        return [
            LayerShape(f"{prefix}.{i}", c, s)
            for i, (c, s) in enumerate(zip(self.widths, self.block_sizes, strict=True))
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pools is None:
            for block in self.blocks:
                x = block(x)
            return x
        for block, pool in zip(self.blocks, self.pools, strict=True):
            x = pool(block(x))
        return x


class LatentHead(nn.Module):
    """Features (B, C, s, s) -> (mu, logvar), each (B, K').

    - ``vector`` + ``linear`` (the paper): flatten -> one nn.Linear each for mu and logvar;
      K' = K. The path from the last encoder block to mu is affine.
    - ``vector`` + ``mlp``: flatten -> Linear(hidden) -> act -> one Linear each; K' = K.
    - ``spatial``: a 1x1 conv each for mu and logvar to K channels at the s x s map
      (``mlp``: 1x1 conv to ``hidden`` -> act first), flattened channel-major:
      K' = K * s * s and unit index k' = k * s * s + p * s + q for channel k at (p, q).

    ``logvar_init`` (ModelConfig.logvar_init): the bias the logvar layer starts at; 0 keeps
    PyTorch's default initialisation.
    """

    def __init__(
        self,
        channels: int,
        size: int,
        latent_dim: int,
        head: str,
        hidden: int,
        bottleneck: str,
        activation: str,
        logvar_init: float = 0.0,
    ) -> None:
        super().__init__()
        if head not in ("linear", "mlp"):
            raise ConfigError(f"config key 'model.head' is '{head}'; choose one of: linear, mlp")
        if bottleneck not in ("vector", "spatial"):
            raise ConfigError(
                f"config key 'model.bottleneck' is '{bottleneck}'; choose one of: vector, spatial"
            )
        self.spatial = bottleneck == "spatial"
        self.hidden: nn.Module
        self.act: nn.Module
        if self.spatial:
            width = hidden if head == "mlp" else channels
            self.hidden = nn.Conv2d(channels, hidden, 1) if head == "mlp" else nn.Identity()
            self.act = make_activation(activation) if head == "mlp" else nn.Identity()
            self.mu: nn.Linear | nn.Conv2d = nn.Conv2d(width, latent_dim, 1)
            self.logvar: nn.Linear | nn.Conv2d = nn.Conv2d(width, latent_dim, 1)
        else:
            features = channels * size * size
            width = hidden if head == "mlp" else features
            self.hidden = nn.Linear(features, hidden) if head == "mlp" else nn.Identity()
            self.act = make_activation(activation) if head == "mlp" else nn.Identity()
            self.mu = nn.Linear(width, latent_dim)
            self.logvar = nn.Linear(width, latent_dim)
        if logvar_init != 0.0:  # 0 keeps PyTorch's default init of the bias
            assert self.logvar.bias is not None
            nn.init.constant_(self.logvar.bias, logvar_init)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = features if self.spatial else torch.flatten(features, 1)  # (B, C*s*s) for vector
        h = self.act(self.hidden(h))
        mu, logvar = self.mu(h), self.logvar(h)
        if self.spatial:
            mu, logvar = torch.flatten(mu, 1), torch.flatten(logvar, 1)  # (B, K*s*s)
        return mu, logvar


class Decoder(nn.Module):
    """Latent (B, Z) -> features (B, C_0, H, W), mirroring the encoder.

    ``stem`` maps the latent to the smallest map (B, C_L, s, s): nn.Linear for a vector
    latent (Z = K + extra), a 1x1 conv for a spatial one (input channels K + extra, the
    extra channels being a condition broadcast over the map). Then ``blocks.{j}``, one per
    encoder block in reverse order, upsample where the encoder halved and narrow the
    channels back to C_0. Output heads (image, segmentation) live in the models.
    """

    def __init__(
        self,
        latent_dim: int,
        extra_dim: int,
        widths: list[int],
        out_sizes: list[int],
        image_size: int,
        bottleneck: str,
        norm: str,
        activation: str,
        style: str,
        coords: bool,
    ) -> None:
        super().__init__()
        self.spatial = bottleneck == "spatial"
        self.latent_dim = latent_dim
        self.size = out_sizes[-1]
        self.channels = widths[-1]
        if self.spatial:
            self.stem: nn.Module = nn.Conv2d(latent_dim + extra_dim, self.channels, 1)
        else:
            self.stem = nn.Linear(latent_dim + extra_dim, self.channels * self.size**2)
        self.stem_act = make_activation(activation)
        in_sizes = [image_size, *out_sizes[:-1]]
        blocks = []
        n = len(widths)
        for j in range(n):
            i = n - 1 - j  # the encoder block this level mirrors
            c_out = widths[max(i - 1, 0)]
            upsample = out_sizes[i] < in_sizes[i]
            blocks.append(UpBlock(widths[i], c_out, upsample, norm, activation, style, coords))
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = widths[0]

    def forward(self, z: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        B = z.shape[0]
        if self.spatial:
            h = z.reshape(B, self.latent_dim, self.size, self.size)  # (B, K, s, s)
            if extra is not None:
                extra_map = extra[:, :, None, None].expand(-1, -1, self.size, self.size)
                h = torch.cat([h, extra_map], dim=1)  # (B, K + E, s, s)
            h = self.stem(h)
        else:
            h = z if extra is None else torch.cat([z, extra], dim=1)  # (B, K + E)
            h = self.stem(h).view(B, self.channels, self.size, self.size)  # (B, C_L, s, s)
        return self.blocks(self.stem_act(h))
