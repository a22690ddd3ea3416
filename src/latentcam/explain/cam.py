"""One Grad-CAM engine for every latent unit (and any other target) at once.

Liu et al., CVPR 2020 ("Towards Visually Explaining Variational Autoencoders"): for latent
unit k and an encoder conv layer A (B, C, h, w),

    alpha_c^k = 1/(hw) sum_pq d mu_k / d A_c^pq,      M^k = ReLU(sum_c alpha_c^k A_c),

and the overall map is the mean of the M^k over k. Vinogradova et al. 2020 (Seg-Grad-CAM)
use the same recipe with a segmentation score (see :mod:`latentcam.explain.targets`).

Every method is a channel/pixel weighting of the SAME gradients G = dY/dA:

=============  ============================================================  ==================
method         map (before the post-op)                                      source
=============  ============================================================  ==================
gradcam        sum_c w_c A_c,  w_c = mean_hw G_c                             Selvaraju 2017
gradcam++      sum_c w_c A_c,  w_c = sum_hw a ReLU(G_c),                     Chattopadhyay 2018
               a = G^2 / (2 G^2 + sum_hw(A_c) G^3 + 1e-6), 0 where G = 0     (pytorch-grad-cam)
xgradcam       sum_c w_c A_c,  w_c = sum_hw(G_c A_c) / (sum_hw A_c + 1e-7)   Fu 2020
hirescam       sum_c G_c * A_c (elementwise, no averaging)                   Draelos 2020
layercam       sum_c ReLU(G_c) * A_c                                         Jiang 2021
=============  ============================================================  ==================

The post-op is ``relu`` (the papers), ``abs`` (Liu et al.'s released code) or ``none``.

How it is computed:

1. One forward pass, with a hook capturing A (removed on exit, also on error). Everything
   below A runs without autograd; the graph is recorded only from A upwards.
2. General path: the gradients of all T targets with respect to A in one vectorised
   backward (``torch.autograd.grad(..., is_grads_batched=True)``, i.e. vmap over one-hot
   cotangents), chunked over targets so that memory stays bounded.
3. Exact shortcut: when every target is linear in mu and the path from A to mu is affine
   (flatten / view / linear / add ... only, with weights that are parameters), d mu_k / dA
   is the reshaped weight row J_k, the same for every image. J is obtained once (one small
   backward on a single image, checked numerically) and cached per (model, layer,
   parameter versions); all maps are then one einsum after one forward, with no backward.

Maps come back unnormalised (B, T, h, w) float32 on the model's device; :func:`upsample`
and :func:`normalise` are separate, explicit steps.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from latentcam.errors import InputError
from latentcam.explain.hooks import capture_activation, capture_activations, eval_mode
from latentcam.explain.targets import (
    LatentUnit,
    Target,
    TargetLike,
    as_target,
    latent_targets,
    mu_coefficients,
    target_scores,
)
from latentcam.models.base import GenerativeModel, VAEOutput, resolve_layer

log = logging.getLogger(__name__)

METHODS = ("gradcam", "gradcam++", "xgradcam", "hirescam", "layercam")
POST_OPS = ("relu", "abs", "none")
NORMALISE_PER = ("map", "unit", "batch")

#: Memory the automatic chunk size aims for (gradients and method temporaries of one chunk).
CHUNK_BUDGET_BYTES = 1 << 30


class CamResult(NamedTuple):
    """What the engine returns.

    Attributes:
        maps: (B, T, h, w) float32, unnormalised, on the model's device, at the explained
            layer's resolution.
        output: the forward pass output (recon, mu, logvar, z, seg_logits), detached.
        layer: the explained layer's dotted name.
        target_names: T readable names (figure titles), e.g. ``mu[3]``.
        units: (T,) int64 latent unit indices (on the CPU) when every target is a latent
            unit, else None.
    """

    maps: torch.Tensor
    output: VAEOutput
    layer: str
    target_names: list[str]
    units: torch.Tensor | None


# ----------------------------------------------------------------------------- forward


def _as_output(raw: Any) -> VAEOutput:
    """A model's forward result as a VAEOutput; a plain (B, K) tensor is taken as mu."""
    if isinstance(raw, VAEOutput):
        return raw
    if isinstance(raw, torch.Tensor) and raw.dim() == 2:
        return VAEOutput(recon=None, mu=raw, logvar=torch.zeros_like(raw), z=raw)
    shape = tuple(raw.shape) if isinstance(raw, torch.Tensor) else type(raw).__name__
    raise InputError(
        f"the model returned {shape}; the CAM engine needs a VAEOutput or a (B, K) tensor"
    )


def _forward(
    model: nn.Module,
    x: torch.Tensor,
    cond: torch.Tensor | None,
    layer: tuple[str, nn.Module],
    record: bool,
    replace: torch.Tensor | None = None,
) -> tuple[VAEOutput, torch.Tensor]:
    """One forward pass; returns (output, A). Autograd records only from A up, if ``record``."""
    name, module = layer
    with (
        capture_activation(module, name, grad_from_layer=record, replace=replace) as capture,
        torch.no_grad(),
    ):
        raw = model(x) if cond is None else model(x, cond)
    return _as_output(raw), capture.activation()


def _detached(output: VAEOutput) -> VAEOutput:
    return VAEOutput._make(t.detach() if isinstance(t, torch.Tensor) else t for t in output)


# ----------------------------------------------------------------------------- methods


def _weighted_sum(weights: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """sum_c w_c A_c: weights (T, B|1, C), acts (B, C, h, w) -> (B, T, h, w), as matmuls."""
    batch, _, height, width = acts.shape
    flat = acts.flatten(2)  # (B, C, hw)
    if weights.shape[1] == 1:
        maps = torch.matmul(weights[:, 0], flat)  # (T, C) @ (B, C, hw) -> (B, T, hw)
    else:
        maps = torch.bmm(weights.transpose(0, 1), flat)  # (B, T, C) @ (B, C, hw)
    return maps.view(batch, -1, height, width)


def _pixel_sum(grads: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """sum_c G_c * A_c: grads (T, B|1, C, h, w) -> (B, T, h, w)."""
    if grads.shape[1] == 1:
        return torch.einsum("tchw,bchw->bthw", grads[:, 0], acts)
    return torch.einsum("tbchw,bchw->bthw", grads, acts)


def _channel_dot(grads: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """sum_hw G_c * A_c: grads (T, B|1, C, h, w) -> (T, B, C)."""
    if grads.shape[1] == 1:
        return torch.einsum("tchw,bchw->tbc", grads[:, 0], acts)
    return torch.einsum("tbchw,bchw->tbc", grads, acts)


def cam_from_grads(
    grads: torch.Tensor, acts: torch.Tensor, method: str = "gradcam", post: str = "relu"
) -> torch.Tensor:
    """The maps of one method from gradients and activations.

    Args:
        grads: G = dY_t/dA, (T, B, C, h, w), or (T, 1, C, h, w) when the gradients are
            the same for every image (the affine shortcut). For ``gradcam`` only the
            spatial mean of G matters, so (T, B|1, C, 1, 1) (G already averaged) works too.
        acts: A, (B, C, h, w).
        method: one of :data:`METHODS` (definitions in the module docstring).
        post: ``relu`` | ``abs`` | ``none``, applied to the summed map.

    Returns:
        (B, T, h, w) maps, unnormalised, in the dtype of ``acts``.
    """
    if method == "gradcam":
        maps = _weighted_sum(grads.mean(dim=(-2, -1)), acts)
    elif method == "gradcam++":
        sum_acts = acts.sum(dim=(-2, -1))[None, :, :, None, None]  # (1, B, C, 1, 1)
        grads2 = grads * grads
        alpha = grads2 / (2 * grads2 + sum_acts * grads2 * grads + 1e-6)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        maps = _weighted_sum((alpha * grads.relu()).sum(dim=(-2, -1)), acts)
    elif method == "xgradcam":
        weights = _channel_dot(grads, acts) / (acts.sum(dim=(-2, -1))[None] + 1e-7)
        maps = _weighted_sum(weights, acts)
    elif method == "hirescam":
        maps = _pixel_sum(grads, acts)
    elif method == "layercam":
        maps = _pixel_sum(grads.relu(), acts)
    else:
        raise InputError(f"unknown CAM method '{method}'; choose one of: {', '.join(METHODS)}")
    if post == "relu":
        return maps.relu()
    if post == "abs":
        return maps.abs()
    if post == "none":
        return maps
    raise InputError(f"unknown post-op '{post}'; choose one of: {', '.join(POST_OPS)}")


# ----------------------------------------------------------------------------- gradients


def _batched_grads(
    scores: torch.Tensor, inputs: Sequence[torch.Tensor], columns: range, retain_graph: bool
) -> list[torch.Tensor]:
    """d scores[:, t] / dA for t in ``columns`` (a contiguous range) and every A of
    ``inputs``, in one vectorised backward: one (Tc, B, C, h, w) per input.

    Images are independent in eval mode, so the gradient of a column summed over the batch
    gives every image's own gradient.
    """
    batch, num_targets = scores.shape
    cotangents = scores.new_zeros(len(columns), batch, num_targets)
    rows = torch.arange(len(columns), device=scores.device)
    cotangents[rows, :, rows + columns.start] = 1.0
    grads = torch.autograd.grad(
        scores,
        list(inputs),
        grad_outputs=cotangents,
        retain_graph=retain_graph,
        is_grads_batched=True,
        allow_unused=True,
        materialize_grads=True,
    )
    return list(grads)


def _looped_grads(
    scores: torch.Tensor, inputs: Sequence[torch.Tensor], columns: range, retain_graph: bool
) -> list[torch.Tensor]:
    """:func:`_batched_grads` with one backward per target, for models with an op that has
    no batching rule (e.g. diffusers' attention on the CPU): one (Tc, B, C, h, w) per input."""
    grads: list[list[torch.Tensor]] = [[] for _ in inputs]
    for t in columns:
        per_input = torch.autograd.grad(
            scores[:, t].sum(),
            list(inputs),
            retain_graph=retain_graph or t != columns[-1],
            allow_unused=True,
            materialize_grads=True,
        )
        for i, grad in enumerate(per_input):
            grads[i].append(grad)
    return [torch.stack(g) for g in grads]


def _auto_chunk(num_targets: int, per_target_bytes: int) -> int:
    return max(1, min(num_targets, CHUNK_BUDGET_BYTES // max(per_target_bytes, 1)))


# ----------------------------------------------------------------------------- affine shortcut

#: Backward nodes of ops that are linear in every input (so any input may depend on A).
_LINEAR_NODES = frozenset(
    {
        "ViewBackward0",
        "UnsafeViewBackward0",
        "ReshapeAliasBackward0",
        "AliasBackward0",
        "AsStridedBackward0",
        "TBackward0",
        "TransposeBackward0",
        "TransposeBackward1",
        "PermuteBackward0",
        "ExpandBackward0",
        "SqueezeBackward0",
        "SqueezeBackward1",
        "SqueezeBackward2",
        "SqueezeBackward3",
        "UnsqueezeBackward0",
        "CloneBackward0",
        "ToCopyBackward0",
        "AddBackward0",
        "AddBackward1",
        "SubBackward0",
        "SubBackward1",
        "RsubBackward0",
        "RsubBackward1",
        "NegBackward0",
        "MulBackward1",  # times a Python scalar
        "DivBackward1",  # divided by a Python scalar
        "SplitBackward0",
        "SplitWithSizesBackward0",
        "UnbindBackward0",
        "SliceBackward0",
        "SelectBackward0",
        "CatBackward0",
        "StackBackward0",
        "SumBackward0",
        "SumBackward1",
        "MeanBackward0",
        "MeanBackward1",
        "AvgPool2DBackward0",
        "AdaptiveAvgPool2DBackward0",
    }
)

#: Backward nodes of products: positions of the multiplied operands in ``next_functions``.
#: At most one may depend on A; the others must be computed from parameters only.
_PRODUCT_NODES: dict[str, tuple[int, ...]] = {
    "MmBackward0": (0, 1),
    "BmmBackward0": (0, 1),
    "MvBackward0": (0, 1),
    "DotBackward0": (0, 1),
    "MulBackward0": (0, 1),
    "LinearBackward0": (0, 1),
    "ConvolutionBackward0": (0, 1),
    "AddmmBackward0": (1, 2),
    "AddmvBackward0": (1, 2),
    "BaddbmmBackward0": (1, 2),
    "DivBackward0": (0, 1),  # and the divisor (position 1) must not depend on A
}


def is_affine_path(root: torch.Tensor, acts: torch.Tensor, params: set[int]) -> bool:
    """True if ``root`` is an affine function of the leaf ``acts`` with input-free weights.

    Walks ``root.grad_fn`` back to ``acts``; every node on a path to ``acts`` must be a
    linear op (:data:`_LINEAR_NODES`), or a product (:data:`_PRODUCT_NODES`) whose other
    operands come from model parameters alone (ids in ``params``) — not from a tensor
    computed without autograd, which could depend on the input. Unknown nodes: False.
    """
    reaches: dict[Any, bool] = {}
    parametric: dict[Any, bool] = {}

    def reaches_acts(node: Any) -> bool:
        if node is None:
            return False
        if node not in reaches:
            if type(node).__name__ == "AccumulateGrad":
                reaches[node] = node.variable is acts
            else:
                reaches[node] = any(reaches_acts(child) for child, _ in node.next_functions)
        return reaches[node]

    def from_params(node: Any) -> bool:
        if node is None:
            return False
        if node not in parametric:
            if type(node).__name__ == "AccumulateGrad":
                parametric[node] = id(node.variable) in params
            else:
                parametric[node] = all(from_params(child) for child, _ in node.next_functions)
        return parametric[node]

    def affine(node: Any, seen: set[int]) -> bool:
        if id(node) in seen or type(node).__name__ == "AccumulateGrad":
            return True
        seen.add(id(node))
        kind = type(node).__name__
        children = [child for child, _ in node.next_functions]
        if kind in _PRODUCT_NODES:
            factors = _PRODUCT_NODES[kind]
            dependent = [i for i in factors if reaches_acts(children[i])]
            if len(dependent) > 1 or (kind == "DivBackward0" and 1 in dependent):
                return False
            if dependent and not all(
                from_params(children[i]) for i in factors if i not in dependent
            ):
                return False
        elif kind not in _LINEAR_NODES:
            return False
        return all(affine(child, seen) for child in children if reaches_acts(child))

    return root.grad_fn is not None and reaches_acts(root.grad_fn) and affine(root.grad_fn, set())


@dataclass(frozen=True)
class _AffineEntry:
    key: tuple[Any, ...]
    jacobian: torch.Tensor | None  # (K, C, h, w), or None: the path is not affine


_AFFINE_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[str, _AffineEntry]] = (
    weakref.WeakKeyDictionary()
)


def _cache_key(
    model: nn.Module, layer: str, x: torch.Tensor, cond: torch.Tensor | None
) -> tuple[Any, ...]:
    params = tuple((p.data_ptr(), p._version) for p in model.parameters())
    cond_shape = None if cond is None else tuple(cond.shape[1:])
    return (layer, tuple(x.shape[1:]), x.dtype, x.device, cond_shape, params)


def _probe_jacobian(
    model: nn.Module,
    x: torch.Tensor,
    cond: torch.Tensor | None,
    layer: tuple[str, nn.Module],
) -> torch.Tensor | None:
    """d mu / dA (K, C, h, w) if the path from A to mu is affine, from one image; else None.

    Two checks must pass: the autograd graph from A to mu holds affine ops only
    (:func:`is_affine_path`), and mu moves exactly as J predicts when A is perturbed at
    random (mu(A') - mu(A) = J (A' - A), up to float rounding).
    """
    x1 = x[:1]
    cond1 = None if cond is None else cond[:1]
    output, acts = _forward(model, x1, cond1, layer, record=True)
    params = {id(p) for p in model.parameters()}
    if not is_affine_path(output.mu, acts, params):
        return None
    num_units = output.mu.shape[1]
    chunk = _auto_chunk(num_units, 4 * acts.numel() * acts.element_size())
    jacobian = torch.cat(
        [
            _batched_grads(
                output.mu, [acts], range(s, min(s + chunk, num_units)), retain_graph=True
            )[0]
            for s in range(0, num_units, chunk)
        ]
    )[:, 0]  # (K, C, h, w)
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(tuple(acts.shape), generator=generator).to(acts)
    shifted = acts.detach() + noise * (acts.detach().abs().mean() + 1e-3)
    moved, _ = _forward(model, x1, cond1, layer, record=False, replace=shifted)
    delta = (shifted - acts.detach()).flatten(1)  # (1, D)
    jac = jacobian.flatten(1)  # (K, D)
    predicted = delta @ jac.T
    error = (moved.mu - output.mu.detach() - predicted).abs()
    scale = delta.abs() @ jac.abs().T + output.mu.detach().abs() + moved.mu.abs()
    if not bool((error <= 1e-3 * scale + 1e-6).all()):
        log.debug("layer %s -> mu looked affine but failed the numeric check", layer[0])
        return None
    return jacobian.detach()


def _affine_jacobian(
    model: nn.Module,
    x: torch.Tensor,
    cond: torch.Tensor | None,
    layer: tuple[str, nn.Module],
) -> torch.Tensor | None:
    """Cached :func:`_probe_jacobian` (the model must already be in eval mode)."""
    key = _cache_key(model, layer[0], x, cond)
    per_layer = _AFFINE_CACHE.setdefault(model, {})
    entry = per_layer.get(layer[0])
    if entry is None or entry.key != key:
        entry = _AffineEntry(key, _probe_jacobian(model, x, cond, layer))
        per_layer[layer[0]] = entry
    return entry.jacobian


def affine_jacobian(
    model: nn.Module,
    x: torch.Tensor,
    cond: torch.Tensor | None = None,
    layer: str | nn.Module | None = None,
) -> torch.Tensor | None:
    """d mu / dA (K, C, h, w) when the path from the layer to mu is affine, else None.

    With an affine head (the paper's flatten + Linear), this is the reshaped weight matrix
    of mu: it does not depend on the image, so neither do the Grad-CAM channel weights
    alpha^k = mean_hw J_k (the maps are class activation maps with fixed weights). Only the
    first image of ``x`` (and ``cond``) is used. Cached per (model, layer, parameters).
    """
    named = resolve_layer(model, layer)
    with eval_mode(model):
        return _affine_jacobian(model, x, cond, named)


# ----------------------------------------------------------------------------- engine


def _check_images(x: torch.Tensor) -> None:
    """latentcam models read float images in [0, 1]; anything else is a caller's mistake."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return  # the model's own input check names the dtype problem
    if not bool(torch.isfinite(x).all()):
        raise InputError("images contain NaN or Inf; explain finite images in [0, 1]")
    low, high = float(x.min()), float(x.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise InputError(
            f"images must be float in [0, 1], got values in [{low:.3g}, {high:.3g}]; "
            "divide 0..255 pixels by 255"
        )


def _explain_methods(
    model: nn.Module,
    x: torch.Tensor,
    cond: torch.Tensor | None,
    targets: Sequence[Target] | None,
    of: str,
    seed: int,
    layer: str | nn.Module | None,
    methods: Sequence[str],
    post: str,
    chunk_size: int | None,
) -> dict[str, CamResult]:
    """The engine at one layer: method -> CamResult (see :func:`_explain_layers`)."""
    name = resolve_layer(model, layer)[0]
    results = _explain_layers(model, x, cond, targets, of, seed, [name], methods, post, chunk_size)
    return results[name]


def _check_request(methods: Sequence[str], post: str, chunk_size: int | None) -> None:
    if not methods:
        raise InputError(f"no CAM method given; choose from: {', '.join(METHODS)}")
    for method in methods:
        if method not in METHODS:
            raise InputError(f"unknown CAM method '{method}'; choose one of: {', '.join(METHODS)}")
    if post not in POST_OPS:
        raise InputError(f"unknown post-op '{post}'; choose one of: {', '.join(POST_OPS)}")
    if chunk_size is not None and chunk_size < 1:
        raise InputError(f"chunk_size must be a positive number of targets, got {chunk_size}")


def _explain_layers(
    model: nn.Module,
    x: torch.Tensor,
    cond: torch.Tensor | None,
    targets: Sequence[Target] | None,
    of: str,
    seed: int,
    layers: Sequence[str],
    methods: Sequence[str],
    post: str,
    chunk_size: int | None,
) -> dict[str, dict[str, CamResult]]:
    """The engine: one forward and one set of gradients for every layer, every method's
    weighting of them.

    The layers are captured in one forward pass (:func:`capture_activations`); those whose
    path to mu is affine take the exact shortcut, the others share ONE batched backward
    from the shallowest of them (the gradients at a deeper layer are the ones the same
    backward passes through on its way down). ``targets=None`` means every latent unit of
    ``of``; returns layer -> method -> CamResult.
    """
    _check_request(methods, post, chunk_size)
    if isinstance(model, GenerativeModel):
        _check_images(x)
    named = [resolve_layer(model, layer) for layer in dict.fromkeys(layers)]
    linear_in_mu = of == "mu" if targets is None else all(t.linear_in_mu for t in targets)
    with eval_mode(model):
        jacobians = {
            n: (_affine_jacobian(model, x, cond, (n, m)) if linear_in_mu else None)
            for n, m in named
        }
        backward = {n for n, _ in named if jacobians[n] is None}
        with capture_activations(named, backward) as captures, torch.no_grad():
            raw = model(x) if cond is None else model(x, cond)
        output = _as_output(raw)
        acts = {n: captures[n].activation() for n, _ in named}
    detached_acts = {n: a.detach() for n, a in acts.items()}
    apart = [n for n in backward if not acts[n].requires_grad]  # not below the first leaf
    graph = [n for n, _ in named if n in backward and n not in apart]
    if targets is None:
        targets = latent_targets(range(output.mu.shape[1]), of=of, seed=seed)
    num_targets = len(targets)
    batch = x.shape[0]

    chunks: dict[str, dict[str, list[torch.Tensor]]] = {
        n: {m: [] for m in methods} for n, _ in named
    }
    shortcut = [n for n, _ in named if jacobians[n] is not None]
    coefficients = None
    if shortcut:
        for target in targets:
            target.check(output)
        coefficients = mu_coefficients(targets, output.mu.shape[1])
    for name in shortcut:
        jacobian = jacobians[name]
        assert jacobian is not None and coefficients is not None
        log.debug("layer %s: exact affine shortcut for %d targets", name, num_targets)
        rows_all = coefficients.to(jacobian)
        # Grad-CAM needs only mean_hw of the gradients: average J first
        mean_jacobian = jacobian.mean(dim=(-2, -1), keepdim=True)  # (K, C, 1, 1)
        per_image = acts[name][0].numel() * acts[name].element_size()
        size = chunk_size or _auto_chunk(num_targets, 4 * batch * per_image)
        for start in range(0, num_targets, size):
            rows = rows_all[start : start + size]  # (Tc, K)
            for method in methods:
                J = mean_jacobian if method == "gradcam" else jacobian
                grads = torch.einsum("tk,kchw->tchw", rows, J)[:, None]  # (Tc, 1, C, h, w)
                chunks[name][method].append(
                    cam_from_grads(grads, detached_acts[name], method, post)
                )
    if graph:
        scores = target_scores(targets, output)  # (B, T)
        if scores.grad_fn is None:
            raise InputError(
                f"the targets ({', '.join(t.name for t in targets[:3])}...) do not depend on "
                f"layer '{graph[0]}'; explain a layer below them"
            )
        inputs = [acts[n] for n in graph]
        graph_bytes = sum(
            t[0].numel() * t.element_size()
            for t in output
            if isinstance(t, torch.Tensor) and t.requires_grad
        )
        per_image = sum(a[0].numel() * a.element_size() for a in inputs)
        size = chunk_size or _auto_chunk(num_targets, batch * (4 * per_image + 2 * graph_bytes))
        log.debug(
            "layers %s: one batched backward, %d targets in chunks of %d",
            ", ".join(graph),
            num_targets,
            size,
        )
        batched = True
        for start in range(0, num_targets, size):
            stop = min(start + size, num_targets)
            columns, keep = range(start, stop), stop < num_targets
            if batched:
                try:  # the first call keeps the graph, so that the fallback can use it
                    grads_by_layer = _batched_grads(
                        scores, inputs, columns, retain_graph=keep or start == 0
                    )
                except RuntimeError as err:
                    if start != 0:
                        raise
                    log.info(
                        "layer %s: a batched backward is not supported above it (%s); one "
                        "backward per target instead (same gradients, slower)",
                        graph[0],
                        str(err).splitlines()[0] if str(err) else type(err).__name__,
                    )
                    batched = False
            if not batched:
                grads_by_layer = _looped_grads(scores, inputs, columns, retain_graph=keep)
            for name, grads in zip(graph, grads_by_layer, strict=True):
                for method in methods:
                    chunks[name][method].append(
                        cam_from_grads(grads, detached_acts[name], method, post)
                    )
    separate = {
        n: _explain_layers(model, x, cond, targets, of, seed, [n], methods, post, chunk_size)[n]
        for n in apart  # a layer on another branch than the first: its own pass
    }

    units = None
    if all(isinstance(t, LatentUnit) for t in targets):
        units = torch.tensor(
            [t.unit for t in targets if isinstance(t, LatentUnit)], dtype=torch.long
        )
    detached = _detached(output)
    names = [t.name for t in targets]
    return {
        n: separate[n]
        if n in separate
        else {
            method: CamResult(
                maps=torch.cat(chunks[n][method], dim=1).float(),  # (B, T, h, w)
                output=detached,
                layer=n,
                target_names=names,
                units=units,
            )
            for method in methods
        }
        for n, _ in named
    }


def latent_cams(
    model: nn.Module,
    x: torch.Tensor,
    cond: torch.Tensor | None = None,
    units: Sequence[int] | torch.Tensor | None = None,
    layer: str | nn.Module | None = None,
    method: str = "gradcam",
    of: str = "mu",
    post: str = "relu",
    seed: int = 0,
    chunk_size: int | None = None,
) -> CamResult:
    """Grad-CAM maps of every latent unit (or the given ones) for a batch, in one pass.

    Liu et al. (CVPR 2020): M^k = ReLU(sum_c alpha_c^k A_c) with alpha_c^k the spatial
    mean of d mu_k / d A_c; the overall map is ``mean_map(result)``.

    Args:
        model: any module whose forward(x[, cond]) returns a VAEOutput (or a (B, K) mu).
            Explained in eval mode; its previous mode is restored.
        x: images (B, 3, H, W) float in [0, 1], on the model's device.
        cond: CVAE condition (B, cond_dim), passed to the forward, or None.
        units: latent unit indices (T,), default all K units.
        layer: layer name or module; default ``model.explain_layer``.
        method: gradcam | gradcam++ | xgradcam | hirescam | layercam.
        of: "mu" (deterministic, default) or "z" (the sampled z = mu + sigma * eps,
            eps from ``torch.Generator().manual_seed(seed)``; the paper's code variant).
        post: relu (default) | abs (Liu et al.'s code) | none.
        seed: seed of eps when ``of="z"``.
        chunk_size: targets per vectorised backward (default: automatic, memory-bounded).

    Returns:
        CamResult with maps (B, T, h, w) float32, unnormalised.

    Raises:
        InputError: unknown layer/method/post-op, unit index out of range.
    """
    results = latent_cams_by_method(
        model, x, cond, units, layer, (method,), of=of, post=post, seed=seed, chunk_size=chunk_size
    )
    return results[method]


def latent_cams_by_method(
    model: nn.Module,
    x: torch.Tensor,
    cond: torch.Tensor | None = None,
    units: Sequence[int] | torch.Tensor | None = None,
    layer: str | nn.Module | None = None,
    methods: Sequence[str] = ("gradcam",),
    of: str = "mu",
    post: str = "relu",
    seed: int = 0,
    chunk_size: int | None = None,
) -> dict[str, CamResult]:
    """:func:`latent_cams` for several CAM methods at once: one forward and one set of
    gradients (or the affine shortcut), each method's channel weighting applied to them.

    Returns:
        method name -> CamResult (maps (B, T, h, w) float32), in the order of ``methods``.
    """
    targets: list[Target] | None = None  # None: every latent unit of ``of``
    if units is not None:
        indices = [int(k) for k in (units.tolist() if isinstance(units, torch.Tensor) else units)]
        if not indices:
            raise InputError(
                "units is empty; give at least one latent unit index (or None for all)"
            )
        targets = latent_targets(indices, of=of, seed=seed)
    return _explain_methods(
        model, x, cond, targets, of, seed, layer, tuple(methods), post, chunk_size
    )


def compute_cams(
    model: nn.Module,
    x: torch.Tensor,
    targets: Sequence[TargetLike],
    cond: torch.Tensor | None = None,
    layer: str | nn.Module | None = None,
    method: str = "gradcam",
    post: str = "relu",
    chunk_size: int | None = None,
) -> CamResult:
    """Grad-CAM maps for general targets (latent units, sums, Seg-Grad-CAM classes, callables).

    Args:
        model, x, cond, layer, method, post, chunk_size: as in :func:`latent_cams`.
        targets: T targets, each a :class:`~latentcam.explain.targets.Target` or a callable
            ``VAEOutput -> (B,)`` score (wrapped as a ``CustomTarget``).

    Returns:
        CamResult with maps (B, T, h, w) float32, unnormalised, in the order of ``targets``.
    """
    results = compute_cams_by_method(
        model, x, targets, cond, layer, (method,), post=post, chunk_size=chunk_size
    )
    return results[method]


def compute_cams_by_method(
    model: nn.Module,
    x: torch.Tensor,
    targets: Sequence[TargetLike],
    cond: torch.Tensor | None = None,
    layer: str | nn.Module | None = None,
    methods: Sequence[str] = ("gradcam",),
    post: str = "relu",
    chunk_size: int | None = None,
) -> dict[str, CamResult]:
    """:func:`compute_cams` for several CAM methods from one forward and one set of gradients.

    Targets linear in mu (latent units, directions ``mu . w``) at a layer whose path to mu
    is affine take the exact shortcut: no backward at all, so T directions cost one forward
    and one einsum.

    Returns:
        method name -> CamResult (maps (B, T, h, w) float32), in the order of ``methods``.
    """
    resolved = [as_target(t) for t in targets]
    if not resolved:
        raise InputError("targets is empty; give at least one target")
    return _explain_methods(
        model, x, cond, resolved, "mu", 0, layer, tuple(methods), post, chunk_size
    )


def cams_by_layer(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[str | nn.Module],
    methods: Sequence[str] = ("gradcam",),
    cond: torch.Tensor | None = None,
    targets: Sequence[TargetLike] | None = None,
    post: str = "relu",
    chunk_size: int | None = None,
) -> dict[str, dict[str, CamResult]]:
    """The maps of several layers and methods from ONE forward and ONE backward.

    The layers are captured in the same forward pass; those whose path to mu is affine (and
    targets linear in mu) take the exact shortcut, the others share one batched backward
    from the shallowest of them, which passes through every deeper one on its way down. The
    maps are those of :func:`latent_cams` / :func:`compute_cams` at each layer.

    Args:
        model, x, cond, methods, post, chunk_size: as :func:`compute_cams_by_method`.
        layers: the layers (names or modules), any order.
        targets: T targets, or None for every latent unit (T = K, column k = mu_k).

    Returns:
        layer name -> method -> CamResult (maps (B, T, h, w) float32), layers in the order
        given.
    """
    resolved = None if targets is None else [as_target(t) for t in targets]
    if resolved is not None and not resolved:
        raise InputError("targets is empty; give at least one target")
    names = [resolve_layer(model, layer)[0] for layer in layers]
    if not names:
        raise InputError("no layer given; name at least one layer to explain")
    return _explain_layers(
        model, x, cond, resolved, "mu", 0, names, tuple(methods), post, chunk_size
    )


# ----------------------------------------------------------------------------- post-processing


def mean_map(result: CamResult | torch.Tensor) -> torch.Tensor:
    """Liu et al.'s overall map: the mean over targets, (B, T, h, w) -> (B, h, w)."""
    maps = result.maps if isinstance(result, CamResult) else result
    return maps.mean(dim=1)


def upsample(
    maps: torch.Tensor, size: int | tuple[int, int], mode: str = "bilinear"
) -> torch.Tensor:
    """Resize maps (..., h, w) to (..., H, W) (``size`` = H or (H, W)).

    Costs more than computing the maps at layer resolution: upsample only what is shown.
    """
    height, width = (size, size) if isinstance(size, int) else size
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:])  # (N, 1, h, w)
    corners = False if mode in ("bilinear", "bicubic") else None
    resized = F.interpolate(flat, size=(height, width), mode=mode, align_corners=corners)
    return resized.reshape(*lead, height, width)


def normalise(maps: torch.Tensor, per: str = "map", eps: float = 1e-8) -> torch.Tensor:
    """Min-max scale maps to [0, 1]; a constant group becomes 0.

    Args:
        maps: (..., h, w), typically (B, T, h, w).
        per: ``map`` (each h x w map alone), ``unit`` (each index of dim -3, i.e. each
            target, over all images: keeps images comparable), ``batch`` (one scale).
        eps: smallest range divided by.
    """
    if per == "map":
        dims: tuple[int, ...] = (-2, -1)
    elif per == "unit":
        if maps.dim() < 3:
            raise InputError("normalise(per='unit') needs maps (..., T, h, w)")
        dims = tuple(d for d in range(maps.dim()) if d != maps.dim() - 3)
    elif per == "batch":
        dims = tuple(range(maps.dim()))
    else:
        raise InputError(
            f"normalise per='{per}' is unknown; choose one of: {', '.join(NORMALISE_PER)}"
        )
    low = maps.amin(dim=dims, keepdim=True)
    high = maps.amax(dim=dims, keepdim=True)
    return (maps - low) / (high - low).clamp_min(eps)


__all__ = [
    "METHODS",
    "POST_OPS",
    "CamResult",
    "affine_jacobian",
    "cam_from_grads",
    "cams_by_layer",
    "compute_cams",
    "compute_cams_by_method",
    "is_affine_path",
    "latent_cams",
    "mean_map",
    "normalise",
    "upsample",
]
