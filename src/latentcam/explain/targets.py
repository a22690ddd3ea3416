"""Explanation targets: callables ``VAEOutput -> (B,)`` score, each with a readable name.

Grad-CAM explains a scalar per image. For a VAE (Liu et al., CVPR 2020, "Towards Visually
Explaining Variational Autoencoders") that scalar is one latent unit; for a segmentation
network (Vinogradova et al. 2020, "Towards Interpretable Semantic Segmentation via
Gradient-weighted Class Activation Mapping", Seg-Grad-CAM) it is the sum of a class's
logits over a pixel set. The variants that the papers' own code uses are named here too:

=====================  ==========================================================
target                 what it scores
=====================  ==========================================================
``LatentUnit(k)``      mu_k, the posterior mean of unit k (default; deterministic)
``LatentUnit(k, -1)``  -mu_k (the other direction of the same unit)
``LatentUnit(k,        z_k = mu_k + sigma_k * eps_k with eps drawn from a seeded
of="z", seed=s)``      generator: the *sampled* latent the paper's Keras code explains
``LatentSum()``        sum_k mu_k (Liu et al.'s released code backpropagates sum(mu))
``LatentSum("z")``     sum_k z_k, sampled (the paper's code variant)
``LatentDirection(w)`` mu . w, a direction in latent space (a concept: an attribute
                       probe, a principal component ...; :mod:`latentcam.explain.directions`)
``SegClass(c, ...)``   Seg-Grad-CAM: sum of class c's logits over a pixel set M: the
                       predicted region of c (default), a given mask, a box or a pixel
``CustomTarget(fn)``   any callable ``VAEOutput -> (B,)``
=====================  ==========================================================

Targets that are linear in mu (``LatentUnit``/``LatentSum``/``LatentDirection`` of mu) say so through
:meth:`Target.mu_coefficients`; the engine then uses its exact no-backward shortcut when the
path from the explained layer to mu is affine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from latentcam.errors import InputError
from latentcam.models.base import VAEOutput

LATENT_SOURCES = ("mu", "z")


def sampled_z(output: VAEOutput, seed: int) -> torch.Tensor:
    """The reparameterised sample z = mu + exp(logvar / 2) * eps, (B, K), with a fixed seed.

    eps ~ N(0, I) is drawn on the CPU from ``torch.Generator().manual_seed(seed)`` (then
    moved to mu's device), so the same seed gives the same z on every device. In eval mode
    a model returns ``output.z == mu``; this is the *sampled* z of Kingma & Welling (2014)
    that the paper's code explains.
    """
    generator = torch.Generator().manual_seed(int(seed))
    eps = torch.randn(tuple(output.mu.shape), generator=generator, dtype=torch.float32)
    eps = eps.to(device=output.mu.device, dtype=output.mu.dtype)
    return output.mu + torch.exp(0.5 * output.logvar) * eps


def _check_source(of: str) -> None:
    if of not in LATENT_SOURCES:
        raise InputError(f"latent target of='{of}' is unknown; choose 'mu' or 'z'")


def latent_values(output: VAEOutput, of: str, seed: int = 0) -> torch.Tensor:
    """The latent vector a target reads: mu, or the seeded sampled z; (B, K) float."""
    _check_source(of)
    return output.mu if of == "mu" else sampled_z(output, seed)


class Target:
    """Base class of explanation targets: ``target(output) -> (B,)`` score.

    Subclasses implement :meth:`__call__` and :attr:`name`; :meth:`check` and
    :meth:`mu_coefficients` when they apply.
    """

    @property
    def name(self) -> str:
        """Readable name, used in figure titles."""
        return type(self).__name__

    def __call__(self, output: VAEOutput) -> torch.Tensor:
        raise NotImplementedError

    @property
    def linear_in_mu(self) -> bool:
        """True if the score is mu @ c (+ a constant) for a fixed c (see mu_coefficients)."""
        return False

    def mu_coefficients(self, num_units: int) -> torch.Tensor | None:
        """c (K,) with score = mu @ c (+ a constant), or None if the score is not linear in mu."""
        return None

    def check(self, output: VAEOutput) -> None:
        """Raise InputError if this target cannot be computed on ``output``."""


@dataclass(frozen=True)
class LatentUnit(Target):
    """Latent unit k: score = sign * mu_k (or sign * z_k sampled with ``seed``).

    Liu et al. (CVPR 2020), eq. for M^i: the gradient of z_i (here mu_i by default, which
    is deterministic) with respect to the explained layer.
    """

    unit: int
    sign: int = 1
    of: str = "mu"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_source(self.of)
        if self.sign not in (1, -1):
            raise InputError(f"latent target sign must be +1 or -1, got {self.sign}")
        if int(self.unit) < 0:
            raise InputError(f"latent unit index must be >= 0, got {self.unit}")

    @property
    def name(self) -> str:
        sign = "-" if self.sign < 0 else ""
        sampled = f" (sampled, seed {self.seed})" if self.of == "z" else ""
        return f"{sign}{self.of}[{self.unit}]{sampled}"

    def check(self, output: VAEOutput) -> None:
        num_units = output.mu.shape[1]
        if self.unit >= num_units:
            raise InputError(
                f"latent unit {self.unit} is out of range: the model has K={num_units} units "
                f"(0..{num_units - 1})"
            )

    def __call__(self, output: VAEOutput) -> torch.Tensor:
        return self.sign * latent_values(output, self.of, self.seed)[:, self.unit]

    @property
    def linear_in_mu(self) -> bool:
        return self.of == "mu"

    def mu_coefficients(self, num_units: int) -> torch.Tensor | None:
        if self.of != "mu":
            return None
        coefficients = torch.zeros(num_units)
        coefficients[self.unit] = float(self.sign)
        return coefficients


@dataclass(frozen=True)
class LatentSum(Target):
    """The sum over all latent units: sum_k mu_k (Liu et al.'s code) or sum_k z_k sampled
    with ``seed`` (the paper's code)."""

    of: str = "mu"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_source(self.of)

    @property
    def name(self) -> str:
        sampled = f" (sampled, seed {self.seed})" if self.of == "z" else ""
        return f"sum({self.of}){sampled}"

    def __call__(self, output: VAEOutput) -> torch.Tensor:
        return latent_values(output, self.of, self.seed).sum(dim=1)

    @property
    def linear_in_mu(self) -> bool:
        return self.of == "mu"

    def mu_coefficients(self, num_units: int) -> torch.Tensor | None:
        return torch.ones(num_units) if self.of == "mu" else None


@dataclass(frozen=True, eq=False)
class LatentDirection(Target):
    """A direction w in mu space: score = mu . w = sum_k w_k mu_k.

    A latent unit is the special case w = e_k. The score is linear in mu, so the engine's
    affine shortcut applies: the gradient with respect to a layer A is sum_k w_k d mu_k / dA,
    and every direction costs no more than one forward once d mu / dA is known.

    Attributes:
        vector: (K,) float, the direction in mu space (any norm; directions found by
            :mod:`latentcam.explain.directions` have norm 1).
        label: readable name (e.g. "Smiling"), used in figure titles.
    """

    vector: torch.Tensor
    label: str = "direction"

    def __post_init__(self) -> None:
        vector = torch.as_tensor(self.vector)
        if vector.dim() != 1 or vector.numel() == 0:
            raise InputError(
                f"direction '{self.label}' must be a vector (K,), got shape {tuple(vector.shape)}"
            )
        if not vector.is_floating_point() or not bool(torch.isfinite(vector).all()):
            raise InputError(f"direction '{self.label}' must hold finite float values")

    @property
    def name(self) -> str:
        return self.label

    def check(self, output: VAEOutput) -> None:
        num_units = output.mu.shape[1]
        if self.vector.numel() != num_units:
            raise InputError(
                f"direction '{self.label}' has {self.vector.numel()} components; this model's "
                f"mu has K={num_units} units: use directions found on this model"
            )

    def __call__(self, output: VAEOutput) -> torch.Tensor:
        self.check(output)
        return output.mu @ self.vector.to(output.mu)

    @property
    def linear_in_mu(self) -> bool:
        return True

    def mu_coefficients(self, num_units: int) -> torch.Tensor | None:
        if self.vector.numel() != num_units:
            raise InputError(
                f"direction '{self.label}' has {self.vector.numel()} components; this model's "
                f"mu has K={num_units} units: use directions found on this model"
            )
        return self.vector.detach().float().cpu()


Box = tuple[int, int, int, int]


@dataclass(frozen=True, eq=False)
class SegClass(Target):
    """Seg-Grad-CAM (Vinogradova et al. 2020): score_c = sum_{(i,j) in M} logits[c, i, j].

    The pixel set M is, by default, the predicted region of class c (argmax over classes
    == c; for a binary model with one logit channel, sigmoid > 0.5, and c must be 0). Give
    at most one of:

    Attributes:
        cls: class index into the P logit channels of ``seg_logits`` (B, P, H, W).
        mask: a ground-truth pixel set, bool/0-1 tensor (B, H, W) or (H, W).
        box: (y0, x0, y1, x1), half-open pixel rectangle.
        pixel: (y, x), one pixel.
        class_name: readable class name for titles (e.g. "mouth"); defaults to "class c".
    """

    cls: int
    mask: torch.Tensor | None = None
    box: Box | None = None
    pixel: tuple[int, int] | None = None
    class_name: str | None = None

    def __post_init__(self) -> None:
        given = [r for r in (self.mask, self.box, self.pixel) if r is not None]
        if len(given) > 1:
            raise InputError("SegClass takes at most one of mask=, box=, pixel= (the pixel set M)")
        if int(self.cls) < 0:
            raise InputError(f"segmentation class index must be >= 0, got {self.cls}")

    @property
    def region(self) -> str:
        if self.mask is not None:
            return "given mask"
        if self.box is not None:
            return "box ({}, {}, {}, {})".format(*self.box)
        if self.pixel is not None:
            return "pixel ({}, {})".format(*self.pixel)
        return "predicted region"

    @property
    def name(self) -> str:
        label = self.class_name or f"class {self.cls}"
        return f"seg {label} over {self.region}"

    def check(self, output: VAEOutput) -> None:
        logits = output.seg_logits
        if logits is None:
            raise InputError(
                f"target '{self.name}' needs segmentation logits, but the model returns "
                "seg_logits=None; Seg-Grad-CAM applies to segvae models"
            )
        num_classes, height, width = logits.shape[1:]
        if self.cls >= num_classes:
            raise InputError(
                f"segmentation class {self.cls} is out of range: the model has "
                f"{num_classes} class channel(s) (0..{num_classes - 1})"
            )
        if self.mask is not None:
            batch = logits.shape[0]
            if self.mask.dim() not in (2, 3) or tuple(self.mask.shape[-2:]) != (height, width):
                raise InputError(
                    f"SegClass mask has shape {tuple(self.mask.shape)}; it must be (H, W) or "
                    f"(B, H, W) with H x W = {height}x{width}, the model's segmentation size"
                )
            if self.mask.dim() == 3 and self.mask.shape[0] not in (1, batch):
                raise InputError(
                    f"SegClass mask holds {self.mask.shape[0]} masks for a batch of {batch} "
                    "images; give one mask per image or one (H, W) mask for all"
                )
        if self.box is not None:
            y0, x0, y1, x1 = self.box
            if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
                raise InputError(
                    f"SegClass box {self.box} (y0, x0, y1, x1) is empty or outside the "
                    f"{height}x{width} segmentation"
                )
        if self.pixel is not None:
            y, x = self.pixel
            if not (0 <= y < height and 0 <= x < width):
                raise InputError(f"SegClass pixel {self.pixel} is outside {height}x{width}")

    def pixel_set(self, seg_logits: torch.Tensor) -> torch.Tensor:
        """The pixel set M as float (B or 1, H, W) in {0, 1}; constant w.r.t. gradients."""
        num_classes, height, width = seg_logits.shape[1:]
        if self.mask is not None:
            mask = self.mask.to(device=seg_logits.device, dtype=seg_logits.dtype)
            return mask if mask.dim() == 3 else mask[None]
        if self.box is not None or self.pixel is not None:
            if self.box is not None:
                y0, x0, y1, x1 = self.box
            else:
                assert self.pixel is not None
                y0, x0 = self.pixel
                y1, x1 = y0 + 1, x0 + 1
            region = torch.zeros(1, height, width, device=seg_logits.device, dtype=seg_logits.dtype)
            region[:, y0:y1, x0:x1] = 1.0
            return region
        logits = seg_logits.detach()
        if num_classes == 1:  # binary: class 0 is the foreground
            predicted = logits[:, 0] > 0.0  # sigmoid(logit) > 0.5
        else:
            predicted = logits.argmax(dim=1) == self.cls
        return predicted.to(seg_logits.dtype)

    def __call__(self, output: VAEOutput) -> torch.Tensor:
        self.check(output)
        assert output.seg_logits is not None
        logits = output.seg_logits[:, self.cls]  # (B, H, W)
        return (logits * self.pixel_set(output.seg_logits)).sum(dim=(1, 2))


@dataclass(frozen=True, eq=False)
class CustomTarget(Target):
    """Any callable ``VAEOutput -> (B,)`` with a name (the callable's ``__name__`` by default)."""

    fn: Callable[[VAEOutput], torch.Tensor]
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or getattr(self.fn, "__name__", "custom target")

    def __call__(self, output: VAEOutput) -> torch.Tensor:
        return self.fn(output)


TargetLike = Target | Callable[[VAEOutput], torch.Tensor]


def as_target(target: TargetLike) -> Target:
    """A :class:`Target` as is; any other callable wrapped in :class:`CustomTarget`."""
    if isinstance(target, Target):
        return target
    if callable(target):
        return CustomTarget(target)
    raise InputError(
        f"a target must be a Target or a callable VAEOutput -> (B,) score, got {type(target).__name__}"
    )


def direction_targets(vectors: torch.Tensor, names: Sequence[str]) -> list[Target]:
    """One :class:`LatentDirection` per row of ``vectors`` (T, K), named by ``names``."""
    vectors = torch.as_tensor(vectors)
    if vectors.dim() != 2 or vectors.shape[0] != len(names):
        raise InputError(
            f"directions must be a (T, K) matrix with one name per row; got "
            f"{tuple(vectors.shape)} and {len(names)} names"
        )
    return [LatentDirection(row, str(name)) for row, name in zip(vectors, names, strict=True)]


def latent_targets(units: Sequence[int], of: str = "mu", seed: int = 0) -> list[Target]:
    """One :class:`LatentUnit` per index, all of ``of`` ('mu' or sampled 'z' with ``seed``)."""
    return [LatentUnit(int(k), of=of, seed=seed) for k in units]


def target_scores(targets: Sequence[Target], output: VAEOutput) -> torch.Tensor:
    """Scores of all targets, (B, T) float; latent units of one source in one gather.

    Raises:
        InputError: a target does not fit the output (unit or class out of range, no
            segmentation logits) or does not return one score per image.
    """
    for target in targets:
        target.check(output)
    units = [t for t in targets if isinstance(t, LatentUnit)]
    if len(units) == len(targets) and len({(t.of, t.seed) for t in units}) == 1:
        values = latent_values(output, units[0].of, units[0].seed)
        index = torch.tensor([t.unit for t in units], device=values.device)
        signs = torch.tensor(
            [float(t.sign) for t in units], device=values.device, dtype=values.dtype
        )
        return values.index_select(1, index) * signs
    if all(t.linear_in_mu for t in targets):  # units, sums and directions of mu: one matmul
        coefficients = mu_coefficients(targets, output.mu.shape[1])
        assert coefficients is not None
        return output.mu @ coefficients.to(output.mu).T
    batch = output.mu.shape[0]
    columns = []
    for target in targets:
        score = target(output)
        if score.shape != (batch,):
            raise InputError(
                f"target '{target.name}' returned a score of shape {tuple(score.shape)}; "
                f"a target must return one score per image, shape ({batch},)"
            )
        columns.append(score)
    return torch.stack(columns, dim=1)


def mu_coefficients(targets: Sequence[Target], num_units: int) -> torch.Tensor | None:
    """C (T, K) with scores = mu @ C.T (+ constants), or None if any target is not linear in mu."""
    rows = []
    for target in targets:
        row = target.mu_coefficients(num_units)
        if row is None:
            return None
        rows.append(row)
    return torch.stack(rows)
