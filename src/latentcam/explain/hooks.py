"""Context managers that the CAM engine wraps around a model's forward pass.

- :func:`capture_activation` registers a forward hook on one layer, records its output
  A (B, C, h, w) as a fresh autograd leaf, and removes the hook when the block exits,
  also when the forward raises. Everything the model computes *before* the layer may run
  without autograd (``grad_from_layer=True`` under ``torch.no_grad()``): Grad-CAM only needs
  d target / d A, so the backbone below A is never recorded nor differentiated.
- :func:`eval_mode` (defined with the model contract in :mod:`latentcam.models.base`,
  where the adapters' probe uses it too) puts a model in eval mode (BatchNorm uses its
  running statistics and Dropout is off, so that the images of a batch do not mix) and
  restores every submodule's previous mode on exit.

Design follows pytorch-grad-cam's ``with GradCAM(...) as cam:`` (hooks live exactly as long
as the block) without its habit of swallowing errors in ``__exit__``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from latentcam.errors import InputError
from latentcam.models.base import eval_mode as eval_mode  # re-exported: the engine's import


@dataclass
class Capture:
    """What :func:`capture_activation` recorded during the forward pass.

    Attributes:
        name: the hooked layer's dotted name (for messages).
        acts: the layer's output A (B, C, h, w), an autograd leaf that requires grad (the
            tensor gradients are taken with respect to); None before the forward runs.
        calls: how many times the layer ran (the engine needs exactly one).
    """

    name: str
    acts: torch.Tensor | None = None
    calls: int = 0

    def activation(self) -> torch.Tensor:
        """The captured A (B, C, h, w); raises InputError unless the layer ran exactly once."""
        if self.calls != 1 or self.acts is None:
            raise InputError(
                f"layer '{self.name}' ran {self.calls} times in one forward pass; the explained "
                "layer must run exactly once. Choose another layer (e.g. one of encoder.blocks.N)."
            )
        return self.acts


@contextlib.contextmanager
def capture_activation(
    module: nn.Module, name: str, grad_from_layer: bool = True, replace: torch.Tensor | None = None
) -> Iterator[Capture]:
    """Record ``module``'s output during the forward passes run inside the block.

    The hook replaces the layer's output by ``leaf.clone()``, where ``leaf`` is a detached
    copy that requires grad: values are unchanged, gradients with respect to ``leaf`` are
    the Grad-CAM gradients d target / d A, and a later in-place op of the model (e.g.
    ``LeakyReLU(inplace=True)``) modifies the clone, not the captured activations.

    Args:
        module: the layer to hook; its output must be a tensor (B, C, h, w).
        name: its dotted name, used in error messages.
        grad_from_layer: switch autograd on from the layer onwards. The caller runs the
            forward under ``torch.no_grad()``, so nothing below the layer is recorded, and
            the enclosing ``no_grad`` block restores the previous mode when it exits. If
            False, autograd is left as it is.
        replace: if given, a tensor of the layer output's shape that the layer's output is
            replaced with (the captured activations are then these values): used to probe
            the part of the model above the layer at chosen activations.

    Yields:
        a :class:`Capture`, filled in when the forward passes.
    """
    capture = Capture(name=name)

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise InputError(
                f"layer '{name}' returns {got}; Grad-CAM needs a conv activation map "
                "(B, C, h, w). Choose a conv layer or block (e.g. encoder.blocks.N)."
            )
        if replace is not None and replace.shape != output.shape:
            raise InputError(
                f"replacement activations {tuple(replace.shape)} do not match layer '{name}' "
                f"output {tuple(output.shape)}"
            )
        capture.calls += 1
        if grad_from_layer:
            torch.set_grad_enabled(True)  # from A onwards; restored by the caller's no_grad
        leaf = (output if replace is None else replace).detach().requires_grad_(True)
        if capture.acts is None:  # a second call is reported by Capture.activation()
            capture.acts = leaf
        return leaf.clone()

    handle = module.register_forward_hook(hook)
    try:
        yield capture
    finally:
        handle.remove()


@contextlib.contextmanager
def capture_activations(
    layers: list[tuple[str, nn.Module]], grad_layers: set[str]
) -> Iterator[dict[str, Capture]]:
    """:func:`capture_activation` for several layers in ONE forward pass.

    The first layer of ``grad_layers`` to run is captured as :func:`capture_activation`
    does (a fresh leaf that requires grad; autograd switched on from there, so the caller
    runs the forward under ``torch.no_grad()``). Every layer that runs after it is captured
    as the graph node it is (``acts`` is not a leaf: gradients with respect to it come from
    the same backward pass that reaches the first one) and the model goes on with a clone,
    so that a later in-place op does not change the captured values. Layers that run
    before it are captured as plain values (no gradient). Values are those of the model's
    own forward in every case.

    Args:
        layers: (dotted name, module) of each layer to capture, each a tensor (B, C, h, w).
        grad_layers: the names whose gradients will be needed.

    Yields:
        name -> :class:`Capture`, filled in when the forward passes; a layer whose
        ``acts.requires_grad`` is False after it was not downstream of the leaf.
    """
    captures = {name: Capture(name=name) for name, _ in layers}
    recording = [False]

    def make_hook(name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> torch.Tensor:
            if not isinstance(output, torch.Tensor) or output.dim() != 4:
                got = (
                    tuple(output.shape)
                    if isinstance(output, torch.Tensor)
                    else type(output).__name__
                )
                raise InputError(
                    f"layer '{name}' returns {got}; Grad-CAM needs a conv activation map "
                    "(B, C, h, w). Choose a conv layer or block (e.g. encoder.blocks.N)."
                )
            capture = captures[name]
            capture.calls += 1
            if not recording[0] and name in grad_layers:
                recording[0] = True
                torch.set_grad_enabled(True)  # from here on; restored by the caller's no_grad
                kept = output.detach().requires_grad_(True)
            elif recording[0]:
                kept = output  # a node of the graph that starts at the first grad layer
            else:
                kept = output.detach()
            if capture.acts is None:  # a second call is reported by Capture.activation()
                capture.acts = kept
            return kept.clone()

        return hook

    handles = [module.register_forward_hook(make_hook(name)) for name, module in layers]
    try:
        yield captures
    finally:
        for handle in handles:
            handle.remove()
