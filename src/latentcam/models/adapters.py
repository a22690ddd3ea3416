"""Adapters: other libraries' VAEs as latentcam models (:class:`~latentcam.models.protocol.LatentModel`).

- :func:`adapt` recognises diffusers' ``AutoencoderKL`` (Rombach et al., CVPR 2022: the
  latent-diffusion autoencoder), pythae's models (Chadebec et al., NeurIPS 2022: any
  ``pythae.models.BaseAE`` with an encoder and a decoder: VAE, beta-VAE, beta-TC-VAE,
  FactorVAE, DIP-VAE, ...) and latentcam's own models (returned as they are).
- :func:`wrap` covers plain PyTorch code: name (or pass) its ``encode`` and ``decode``;
  PyTorch-VAE's style (``encode`` returns ``[mu, log_var]``, ``decode`` a tensor) works as
  it is.

An adapter is an ``nn.Module`` that holds the wrapped model as its submodule ``module``
(the prefix of ``torch.nn.DataParallel``): the wrapped model's layer ``encoder.conv_out`` is
the adapter's ``module.encoder.conv_out``, so hooks, ``named_modules()`` and the CAM
engine's ``layer=`` names all use the prefixed name, and ``encoder_layers()`` and
``explain_layer`` return prefixed names. Layer names given to :func:`wrap` are the wrapped
model's own (without the prefix). An adapter also has an identity layer ``input`` on the
image in [0, 1]: it is the explanation layer of a model whose encoder has no convolution
(pythae's default MLP networks), where a CAM is a pixel-level gradient map.

Conventions, the same for every adapter:

- Images are float in [0, 1] (B, 3, S, S) on latentcam's side; an adapter maps them to the
  range the wrapped model reads (diffusers: [-1, 1]) and maps decoded images back, clamped
  to [0, 1] (as diffusers' image processor does).
- mu and logvar are flat (B, K): a spatial latent (C, h, w) (diffusers: 4 x H/8 x W/8 for
  Stable Diffusion, 4 x H/4 x W/4 with three blocks) is flattened channel-major, K = C*h*w
  units, as latentcam's own spatial bottleneck does; ``decode`` reshapes z back.
- diffusers' latent is the posterior itself, ``latent_dist.mean`` and ``.logvar``, before
  the ``scaling_factor`` that diffusion pipelines apply.
- pythae's ``log_covariance`` is the log of the diagonal variance (pythae samples with
  ``exp(0.5 * log_covariance)``), so it is logvar as it is. A deterministic autoencoder
  (pythae's AE, WAE, RAE: no ``log_covariance``) reports logvar = 0.
- ``forward`` decodes z = mu in eval mode and a reparameterised sample in training mode.
- One probe forward runs when the adapter is built (two images of the image size, in eval
  mode, without gradients): it finds the latent shape and the encoder's conv layers, and
  turns a model that cannot take the image size, an ``encode`` that returns the wrong
  shapes, or a layer name that does not run into one :class:`~latentcam.errors.InputError`.

diffusers and pythae are optional (``latentcam[diffusers]``, ``latentcam[pythae]``): they
are imported only inside the functions that need them, and only when already loaded (an
object of theirs cannot exist otherwise).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from latentcam.errors import InputError
from latentcam.models.base import Decoded, GenerativeModel, VAEOutput, check_images, eval_mode
from latentcam.models.blocks import LayerShape
from latentcam.models.protocol import IMAGE, OUTPUT_KINDS, SEGMENTATION, LatentModel, check_model

log = logging.getLogger(__name__)

Tensor = torch.Tensor

#: Name of the submodule that holds the wrapped model (the prefix of its layer names).
PREFIX = "module"
#: Name of the identity layer on the input image (explained when the encoder has no conv).
INPUT_LAYER = "input"
#: Images in the probe forward that runs when an adapter is built.
PROBE_BATCH = 2

#: What :func:`adapt` accepts, for its error message.
ACCEPTED = (
    "diffusers.AutoencoderKL, a pythae.models.BaseAE with an encoder and a decoder, or a "
    "latentcam model; wrap other PyTorch modules with latentcam.wrap(module, encode=..., "
    "decode=..., layers=...)"
)


def _describe(obj: Any) -> str:
    """Shape of a tensor, else the type's name (for error messages)."""
    return str(tuple(obj.shape)) if isinstance(obj, Tensor) else type(obj).__name__


class Adapter(GenerativeModel):
    """Base of the adapters: the latentcam contract around a wrapped ``nn.Module``.

    Subclasses implement :meth:`_encode_raw` and :meth:`_decode_raw` in the wrapped model's
    own terms (its value range, its latent shape); this class maps ranges and shapes,
    checks inputs, and runs the probe forward.

    Args:
        module: the wrapped model (becomes the submodule :data:`PREFIX`).
        image_size: S, the side of the square images it reads.
        cond_dim: condition features (0: unconditional); passed on as ``cond``.
        outputs: what decoding returns, a subset of {"image", "seg"}.
        layers: the encoder's layers in the wrapped model's names, shallow to deep; None
            finds every ``nn.Conv2d`` that ``encode`` runs, in the order it runs them.
        explain_layer: the default explanation layer (a wrapped-model name); None: the
            last of ``layers``.
        value_range: (low, high), the range of images the wrapped model reads and writes.
        latent_dim: the expected K, checked against the probe; None: taken from it.

    Attributes:
        latent_shape: (K,) or (C, h, w), from the probe.
        latent_dim: K = prod(latent_shape).
        source: what was adapted: "diffusers", "pythae" or "wrap".
    """

    source = ""

    def __init__(
        self,
        module: nn.Module,
        *,
        image_size: int,
        cond_dim: int = 0,
        outputs: Sequence[str] = (IMAGE,),
        layers: Sequence[str] | None = None,
        explain_layer: str | None = None,
        value_range: tuple[float, float] = (0.0, 1.0),
        latent_dim: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise InputError(
                f"latentcam adapts torch.nn.Module objects, got {type(module).__name__}"
            )
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise InputError(f"image_size must be a positive number of pixels, got {image_size!r}")
        if cond_dim < 0:
            raise InputError(f"cond_dim must be >= 0, got {cond_dim}")
        kinds = frozenset(outputs)
        if not kinds or not kinds <= set(OUTPUT_KINDS):
            raise InputError(
                f"outputs {sorted(kinds)} must be a non-empty subset of {', '.join(OUTPUT_KINDS)}"
            )
        low, high = (float(v) for v in value_range)
        if not high > low:
            raise InputError(f"value_range must be (low, high) with high > low, got {value_range}")
        self.module = module
        self.input = nn.Identity()
        self.image_size = image_size
        self.cond_dim = cond_dim
        self._output_kinds = kinds
        self.value_range = (low, high)
        self._layer_shapes: list[LayerShape] = []
        self._probe(layers, explain_layer, latent_dim)
        check_model(self)
        # the adapter starts in the wrapped model's mode (its own flags only: the wrapped
        # model's submodules keep theirs)
        self.training = self.input.training = module.training

    # -- what subclasses implement, in the wrapped model's terms ------------------------

    def _encode_raw(self, x: Tensor, cond: Tensor | None) -> tuple[Any, Any]:
        """Images (B, 3, S, S) in ``value_range`` -> (mu, logvar), (B, K) or (B, C, h, w)."""
        raise NotImplementedError

    def _decode_raw(self, z: Tensor, cond: Tensor | None) -> Decoded:
        """Latents (B, *latent_shape) -> Decoded, the image in ``value_range`` (not clamped)."""
        raise NotImplementedError

    # -- the contract -------------------------------------------------------------------

    @property
    def outputs(self) -> frozenset[str]:
        return self._output_kinds

    def encoder_layers(self) -> list[str]:
        """Prefixed names of the encoder's layers, shallow (high resolution) to deep."""
        return [shape.name for shape in self._layer_shapes]

    def encoder_shapes(self) -> list[LayerShape]:
        """(name, channels, side) of each encoder layer's output map, from the probe."""
        return list(self._layer_shapes)

    def encode(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Posterior parameters of images x (B, 3, S, S) float in [0, 1].

        Returns:
            (mu, logvar), each (B, K) float, a spatial latent flattened channel-major.
        """
        check_images(x, self.image_size, "resize them, or adapt the model with image_size={size}")
        cond = self._check_cond(cond, x.shape[0])
        mu, logvar = self._checked_latents(*self._encode_raw(self._to_model(x), cond), x.shape[0])
        return mu.flatten(1), logvar.flatten(1)  # (B, K), channel-major for (C, h, w)

    def decode(self, z: Tensor, cond: Tensor | None = None) -> Decoded:
        """Decode latents z (B, K) (and the condition (B, cond_dim) when cond_dim > 0).

        Returns:
            Decoded with recon (B, 3, S, S) in [0, 1] and/or seg_logits (B, P, S, S).
        """
        K = self.latent_dim
        if not isinstance(z, Tensor) or z.dim() != 2 or z.shape[1] != K:
            raise InputError(
                f"latents must be a (B, {K}) tensor for this model, got {_describe(z)}"
            )
        cond = self._check_cond(cond, z.shape[0])
        decoded = self._decode_raw(z.reshape(z.shape[0], *self.latent_shape), cond)
        recon = None if decoded.recon is None else self._from_model(decoded.recon)
        return Decoded(recon=recon, seg_logits=decoded.seg_logits)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> VAEOutput:
        """Encode, take z (mu in eval mode, mu + exp(logvar / 2) * eps in training), decode."""
        mu, logvar = self.encode(x, cond)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if self.training else mu
        decoded = self.decode(z, cond)
        return VAEOutput(decoded.recon, mu, logvar, z, decoded.seg_logits)

    # -- internals ----------------------------------------------------------------------

    def _to_model(self, x: Tensor) -> Tensor:
        """Images in [0, 1] -> the wrapped model's range, through the ``input`` layer."""
        x = self.input(x)
        low, high = self.value_range
        return x if (low, high) == (0.0, 1.0) else low + (high - low) * x

    def _from_model(self, image: Tensor) -> Tensor:
        """A decoded image in the wrapped model's range -> [0, 1], clamped."""
        low, high = self.value_range
        if (low, high) != (0.0, 1.0):
            image = (image - low) / (high - low)
        return image.clamp(0.0, 1.0)

    def _check_cond(self, cond: Tensor | None, batch: int) -> Tensor | None:
        if self.cond_dim == 0:
            if cond is not None:
                raise InputError("this model is unconditional and takes no cond; pass cond=None")
            return None
        D = self.cond_dim
        if not isinstance(cond, Tensor) or tuple(cond.shape) != (batch, D):
            raise InputError(
                f"this model needs cond of shape (B, {D}) = ({batch}, {D}), got {_describe(cond)}"
            )
        return cond

    def _checked_latents(self, mu: Any, logvar: Any, batch: int) -> tuple[Tensor, Tensor]:
        """mu and logvar as the wrapped model returned them, checked against each other and,
        after the probe, against ``latent_shape``."""
        name = type(self.module).__name__
        if not isinstance(mu, Tensor) or not isinstance(logvar, Tensor):
            raise InputError(
                f"{name}'s encode must give tensors (mu, logvar); got ({_describe(mu)}, "
                f"{_describe(logvar)})"
            )
        if mu.dim() not in (2, 4) or mu.shape[0] != batch or logvar.shape != mu.shape:
            raise InputError(
                f"{name}'s encode returned mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} "
                f"for {batch} images; latentcam needs both (B, K) or both (B, C, h, w), B={batch}"
            )
        if self.latent_shape and tuple(mu.shape[1:]) != self.latent_shape:
            raise InputError(
                f"{name}'s encode returned mu {tuple(mu.shape)}; it was {self.latent_shape} per "
                "image when the model was adapted"
            )
        return mu, logvar

    def _probe(
        self, layers: Sequence[str] | None, explain_layer: str | None, latent_dim: int | None
    ) -> None:
        """One forward of PROBE_BATCH grey images: latent shape, layer shapes, decode check."""
        S, B = self.image_size, PROBE_BATCH
        name = type(self.module).__name__
        modules = dict(self.module.named_modules())
        if layers is not None:
            layers = list(layers)
            unknown = [layer for layer in layers if layer not in modules or layer == ""]
            if not layers or unknown:
                convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
                raise InputError(
                    f"{name} has no layer named '{unknown[0] if unknown else ''}'; its conv "
                    f"layers are: {', '.join(convs) or '(none)'}"
                )
        param = next(iter(self.module.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None else torch.float32
        x = torch.full((B, 3, S, S), 0.5, device=device, dtype=dtype)
        cond = torch.zeros(B, self.cond_dim, device=device, dtype=dtype) if self.cond_dim else None
        watched: dict[str, nn.Module] = (
            {n: modules[n] for n in layers}
            if layers is not None
            else {n: m for n, m in modules.items() if isinstance(m, nn.Conv2d)}
        )
        seen: dict[str, Any] = {}
        # with autograd on (from the images), so that the layers mu depends on can be found
        x.requires_grad_(True)
        with eval_mode(self), torch.enable_grad(), _recording(watched, seen):
            try:
                raw = self._encode_raw(self._to_model(x), cond)
            except InputError:
                raise
            except (RuntimeError, ValueError, TypeError, IndexError) as err:
                raise InputError(
                    f"{name} cannot encode {S}x{S} images ({type(err).__name__}: {_first_line(err)}); "
                    "give the image size the model was built for (image_size=...)"
                ) from err
        mu, _ = self._checked_latents(*raw, B)
        shape = tuple(int(d) for d in mu.shape[1:])
        if latent_dim is not None and math.prod(shape) != latent_dim:
            raise InputError(
                f"{name}'s encode returned mu {tuple(mu.shape)}: {math.prod(shape)} latent units "
                f"per image, not latent_dim={latent_dim}"
            )
        self.latent_shape = shape
        self.latent_dim = math.prod(shape)
        self._layer_shapes = self._found_layers(layers, seen, _reaching(mu, seen, name))
        self.explain_layer = self._default_layer(explain_layer)
        with eval_mode(self), torch.no_grad():
            try:
                decoded = self.decode(mu.detach().flatten(1), cond)
            except InputError:
                raise
            except (RuntimeError, ValueError, TypeError, IndexError) as err:
                raise InputError(
                    f"{name} cannot decode its own latents {shape} ({type(err).__name__}: "
                    f"{_first_line(err)})"
                ) from err
        self._check_decoded(decoded, B)

    def _found_layers(
        self, layers: list[str] | None, seen: dict[str, Any], reaching: set[str]
    ) -> list[LayerShape]:
        """LayerShapes of the layers to explain (prefixed names, in running order): the given
        ones, checked, or every watched conv whose output mu depends on."""
        name = type(self.module).__name__
        if layers is not None:
            for layer in layers:
                if layer not in seen:
                    raise InputError(f"layer '{layer}' of {name} does not run when it encodes")
                out = seen[layer]
                if not isinstance(out, Tensor) or out.dim() != 4:
                    raise InputError(
                        f"layer '{layer}' of {name} returns {_describe(out)}; Grad-CAM needs a "
                        "conv activation map (B, C, h, w): name conv layers or blocks"
                    )
                if layer not in reaching:
                    raise InputError(
                        f"mu of {name} does not depend on layer '{layer}'; name layers below mu"
                    )
            order = layers
        else:  # e.g. a logvar head runs in encode but does not lead to mu
            order = [n for n, out in seen.items() if n in reaching and out.dim() == 4]
        found = [
            LayerShape(f"{PREFIX}.{n}", int(seen[n].shape[1]), int(seen[n].shape[2])) for n in order
        ]
        if not found:
            log.info(
                "%s's encoder runs no convolution: its explanation layer is the input image "
                "('%s'), where a CAM is a pixel-level gradient map",
                name,
                INPUT_LAYER,
            )
            found = [LayerShape(INPUT_LAYER, 3, self.image_size)]
        return found

    def _default_layer(self, explain_layer: str | None) -> str:
        names = self.encoder_layers()
        if explain_layer is None:
            return names[-1]
        prefixed = f"{PREFIX}.{explain_layer}"
        if prefixed not in names:
            raise InputError(
                f"explain_layer '{explain_layer}' is not one of the encoder layers: "
                f"{', '.join(n.removeprefix(PREFIX + '.') for n in names)}"
            )
        return prefixed

    def _check_decoded(self, decoded: Decoded, batch: int) -> None:
        S, name = self.image_size, type(self.module).__name__
        wanted = {IMAGE: decoded.recon, SEGMENTATION: decoded.seg_logits}
        for kind in sorted(self._output_kinds):
            out = wanted[kind]
            if out is None:
                raise InputError(f"{name} decodes no {kind} output, yet outputs names '{kind}'")
            channels_ok = out.dim() == 4 and (kind == SEGMENTATION or out.shape[1] == 3)
            if not channels_ok or tuple(out.shape[-2:]) != (S, S) or out.shape[0] != batch:
                want = f"({batch}, 3, {S}, {S})" if kind == IMAGE else f"({batch}, P, {S}, {S})"
                raise InputError(
                    f"{name} decodes its {kind} output as {_describe(out)} from {S}x{S} images; "
                    f"latentcam needs {want}: give the image size the model was built for"
                )


def _reaching(mu: Tensor, seen: dict[str, Any], name: str) -> set[str]:
    """Names of the recorded layer outputs that mu depends on (one backward of sum(mu))."""
    if mu.grad_fn is None:
        raise InputError(
            f"{name}'s encode computes mu without gradients (torch.no_grad or .detach() "
            "inside it?); Grad-CAM needs the gradients of mu with respect to its layers"
        )
    candidates = [
        (n, out) for n, out in seen.items() if isinstance(out, Tensor) and out.requires_grad
    ]
    if not candidates:
        return set()
    grads = torch.autograd.grad(
        mu.sum(), [out for _, out in candidates], allow_unused=True, retain_graph=False
    )
    return {n for (n, _), grad in zip(candidates, grads, strict=True) if grad is not None}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "no message"


@contextlib.contextmanager
def _recording(modules: dict[str, nn.Module], seen: dict[str, Any]) -> Iterator[None]:
    """Record each module's first output into ``seen`` (name -> output), in running order."""

    def hook(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
            seen.setdefault(name, output)

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# ----------------------------------------------------------------------------- diffusers


def _is_diffusers_vae(obj: Any) -> bool:
    if "diffusers" not in sys.modules:  # no diffusers object can exist
        return False
    from diffusers import AutoencoderKL

    return isinstance(obj, AutoencoderKL)


class DiffusersVAE(Adapter):
    """diffusers' ``AutoencoderKL`` (Rombach et al., CVPR 2022).

    mu, logvar = ``encode(x).latent_dist.mean`` / ``.logvar`` (C, h, w) flattened;
    ``decode(z).sample`` is the image. Images are [-1, 1] on diffusers' side. Encoder
    layers: ``encoder.down_blocks.{i}``, ``encoder.mid_block``, ``encoder.conv_out``;
    explained by default at the last down block (the highest-level map before the
    attention block; 16x16 at 64 px for three blocks).
    """

    source = "diffusers"

    def __init__(self, vae: Any, image_size: int | None = None) -> None:
        config = vae.config
        blocks = len(config.down_block_types)
        layers = [f"encoder.down_blocks.{i}" for i in range(blocks)]
        layers += ["encoder.mid_block", "encoder.conv_out"]
        super().__init__(
            vae,
            image_size=int(config.sample_size) if image_size is None else image_size,
            layers=layers,
            explain_layer=f"encoder.down_blocks.{blocks - 1}",
            value_range=(-1.0, 1.0),
        )

    def _encode_raw(self, x: Tensor, cond: Tensor | None) -> tuple[Any, Any]:
        vae: Any = self.module
        posterior = vae.encode(x).latent_dist
        return posterior.mean, posterior.logvar  # (B, C, h, w) each

    def _decode_raw(self, z: Tensor, cond: Tensor | None) -> Decoded:
        vae: Any = self.module
        return Decoded(recon=vae.decode(z).sample)  # (B, 3, H, W) in about [-1, 1]


# ----------------------------------------------------------------------------- pythae


def _is_pythae_model(obj: Any) -> bool:
    if "pythae" not in sys.modules:
        return False
    from pythae.models import BaseAE

    return isinstance(obj, BaseAE)


class PythaeVAE(Adapter):
    """A pythae model (``pythae.models.BaseAE``) with an encoder and a decoder.

    mu = ``encoder(x).embedding``, logvar = ``.log_covariance`` (0 when the model has none);
    ``decoder(z).reconstruction`` is the image, in [0, 1] as pythae's default decoders give
    it. Image size from ``model_config.input_dim`` (C, S, S) unless given. Encoder layers:
    ``layers`` (the model's own names, e.g. conv blocks, shallow to deep) or every
    ``nn.Conv2d`` the encoder runs, in order; the last is the default. pythae's default
    networks are MLPs: they are explained at the input image (``input``).
    """

    source = "pythae"

    def __init__(
        self, model: Any, image_size: int | None = None, layers: Sequence[str] | None = None
    ) -> None:
        name = type(model).__name__
        for part in ("encoder", "decoder"):
            if not isinstance(getattr(model, part, None), nn.Module):
                raise InputError(
                    f"pythae model {name} has no {part} network; latentcam explains models with "
                    "an encoder and a decoder"
                )
        input_dim = tuple(getattr(model.model_config, "input_dim", None) or ())
        if image_size is None:
            if len(input_dim) != 3 or input_dim[0] != 3 or input_dim[1] != input_dim[2]:
                raise InputError(
                    f"pythae model {name} has input_dim {input_dim or None}; latentcam explains "
                    "square RGB images (3, S, S): build it so, or give image_size"
                )
            image_size = int(input_dim[1])
        super().__init__(model, image_size=image_size, layers=layers)

    def _encode_raw(self, x: Tensor, cond: Tensor | None) -> tuple[Any, Any]:
        model: Any = self.module
        encoded = model.encoder(x)  # pythae ModelOutput (an OrderedDict)
        mu = encoded["embedding"]
        logvar = encoded["log_covariance"] if "log_covariance" in encoded else None
        return mu, torch.zeros_like(mu) if logvar is None else logvar

    def _decode_raw(self, z: Tensor, cond: Tensor | None) -> Decoded:
        model: Any = self.module
        return Decoded(recon=model.decoder(z)["reconstruction"])


# ----------------------------------------------------------------------------- plain code


class WrappedVAE(Adapter):
    """Plain PyTorch code: ``encode`` and ``decode`` named on the module, or callables.

    ``encode(x)`` (``encode(x, cond)`` when cond_dim > 0) returns ``(mu, logvar)`` as a
    tuple or list (PyTorch-VAE returns ``[mu, log_var]``), each (B, K) or (B, C, h, w).
    ``decode(z)`` returns a tensor (the image for outputs ("image",), the segmentation
    logits for ("seg",)) or a :class:`~latentcam.models.base.Decoded`.
    """

    source = "wrap"

    def __init__(
        self,
        module: nn.Module,
        *,
        encode: str | Callable[..., Any],
        decode: str | Callable[..., Any],
        **options: Any,
    ) -> None:
        for fn, role in ((encode, "encode"), (decode, "decode")):
            _method(module, fn, role)  # fails early with the method's name
        # a tuple: a callable that is itself an nn.Module is not registered a second time
        self._functions = (encode, decode)
        super().__init__(module, **options)

    @property
    def method_names(self) -> tuple[str | None, str | None]:
        """(encode, decode) method names when given by name, else None (a saved adapter
        spec can record names, not callables)."""
        encode, decode = self._functions
        return (
            encode if isinstance(encode, str) else None,
            decode if isinstance(decode, str) else None,
        )

    def _call(self, role: int, value: Tensor, cond: Tensor | None) -> Any:
        """Run encode (role 0) or decode (1), looked up by name on each call (so that a
        copied adapter calls its own copy of the module)."""
        fn = _method(self.module, self._functions[role], ("encode", "decode")[role])
        return fn(value) if cond is None else fn(value, cond)

    def _encode_raw(self, x: Tensor, cond: Tensor | None) -> tuple[Any, Any]:
        encoded = self._call(0, x, cond)
        if isinstance(encoded, Tensor) or not isinstance(encoded, Sequence) or len(encoded) < 2:
            raise InputError(
                f"{type(self.module).__name__}'s encode returned {_describe(encoded)}; wrap "
                "needs it to return (mu, logvar) (a tuple or list of two tensors)"
            )
        return encoded[0], encoded[1]

    def _decode_raw(self, z: Tensor, cond: Tensor | None) -> Decoded:
        decoded = self._call(1, z, cond)
        if isinstance(decoded, Decoded):
            return decoded
        if isinstance(decoded, Tensor) and len(self.outputs) == 1:
            return Decoded(decoded, None) if IMAGE in self.outputs else Decoded(None, decoded)
        raise InputError(
            f"{type(self.module).__name__}'s decode returned {_describe(decoded)}; wrap needs a "
            "tensor (one output) or a latentcam Decoded(recon, seg_logits) (both)"
        )


def _method(module: nn.Module, fn: str | Callable[..., Any], role: str) -> Callable[..., Any]:
    """The callable for ``role`` ('encode' or 'decode'): a method of ``module`` by name."""
    if isinstance(fn, str):
        method = getattr(module, fn, None)
        if not callable(method):
            raise InputError(
                f"{type(module).__name__} has no method '{fn}' to {role} with; pass "
                f"{role}='<method name>' or {role}=<callable>"
            )
        return method
    if not callable(fn):
        raise InputError(f"{role} must be a method name or a callable, got {type(fn).__name__}")
    return fn


# ----------------------------------------------------------------------------- public API


def adapt(obj: Any, image_size: int | None = None) -> LatentModel:
    """Any supported VAE as a latentcam model (see the module docstring).

    Args:
        obj: diffusers' ``AutoencoderKL``, a pythae ``BaseAE`` with an encoder and a
            decoder, or a latentcam model (returned as it is).
        image_size: S, the side of the square images to explain; default the model's own
            (diffusers ``config.sample_size``, pythae ``input_dim``). Checked by one
            probe forward.

    Returns:
        a model satisfying :class:`~latentcam.models.protocol.LatentModel` (an
        :class:`Adapter` for another library's model).

    Raises:
        InputError: an object of another kind (the message says what is accepted), or a
            model that cannot take ``image_size`` images or encodes to the wrong shapes.
    """
    if isinstance(obj, GenerativeModel):  # ours, or already adapted
        if image_size is not None and image_size != obj.image_size:
            raise InputError(
                f"this {type(obj).__name__} was built for {obj.image_size}x{obj.image_size} "
                f"images, not {image_size}x{image_size}"
            )
        return check_model(obj)
    if _is_diffusers_vae(obj):
        return DiffusersVAE(obj, image_size)
    if _is_pythae_model(obj):
        return PythaeVAE(obj, image_size)
    raise InputError(f"latentcam.adapt cannot adapt a {type(obj).__name__}; it accepts {ACCEPTED}")


def wrap(
    module: nn.Module,
    *,
    encode: str | Callable[..., Any] = "encode",
    decode: str | Callable[..., Any] = "decode",
    layers: Sequence[str] | None = None,
    explain_layer: str | None = None,
    image_size: int,
    latent_dim: int | None = None,
    cond_dim: int = 0,
    outputs: Sequence[str] = (IMAGE,),
    value_range: tuple[float, float] = (0.0, 1.0),
) -> WrappedVAE:
    """Plain PyTorch VAE code as a latentcam model.

    Example (PyTorch-VAE, whose ``encode`` returns ``[mu, log_var]``)::

        model = latentcam.wrap(vanilla_vae, layers=["encoder.0", "encoder.4"], image_size=64)
        latent_cams(model, x)  # layer names now read "module.encoder.4"

    Args:
        module: the model (an ``nn.Module``; held as the adapter's submodule ``module``).
        encode: the name of its method, or a callable, ``x -> (mu, logvar)`` (``(x, cond)``
            when cond_dim > 0); mu and logvar (B, K) or (B, C, h, w).
        decode: the name of its method, or a callable, ``z -> image`` (or seg logits, or a
            Decoded); z comes in the shape mu had.
        layers: the encoder's conv layers or blocks to offer for explanation, in the
            module's own names, shallow to deep; default every ``nn.Conv2d`` that encode runs.
        explain_layer: the default explanation layer, a module name; default the last layer.
        image_size: S, the side of the square images the module reads.
        latent_dim: the K you expect (checked); default what encode returns.
        cond_dim: condition features (0: unconditional).
        outputs: ("image",), ("seg",) or both (then decode returns a Decoded).
        value_range: the range of images the module reads and writes (e.g. (-1, 1)).

    Raises:
        InputError: a method that does not exist, a layer that does not run or is not a
            conv map, an encode that returns anything but two matching tensors, an image
            size the module cannot take.
    """
    return WrappedVAE(
        module,
        encode=encode,
        decode=decode,
        image_size=image_size,
        cond_dim=cond_dim,
        outputs=outputs,
        layers=layers,
        explain_layer=explain_layer,
        value_range=value_range,
        latent_dim=latent_dim,
    )
