"""Adapted models saved as self-describing run folders (the start of ``latentcam import``).

A folder written by :func:`save_adapted` holds two files and needs nothing else to load:

- ``adapter.json``: the adapter spec: the format number, what was adapted (``library``),
  how to rebuild its architecture with random weights, the image size, the latent shape,
  the condition width, the outputs, the encoder and explanation layers, and the data the
  model expects (when given).
- ``weights.safetensors``: the adapter's state dict (safetensors: tensors only, no pickle).

How the architecture is rebuilt, by ``library``:

- ``diffusers``: ``AutoencoderKL.from_config(config)`` from the JSON config diffusers writes
  itself (``to_json_string``); nothing is fetched from a hub.
- ``pythae``: the model class of ``pythae.models`` named ``model``, built from its config
  (``config_class.from_dict``); only for pythae's default networks (a model with its own
  encoder or decoder needs a factory, below).
- ``python``: ``factory`` (``"package.module:function"``) called with ``kwargs`` returns the
  ``nn.Module``; it is wrapped with the recorded ``wrap`` options (method names, layers,
  value range), or passed to :func:`~latentcam.models.adapters.adapt` when ``wrap`` is
  absent. Loading such a folder imports that module: load folders whose code you trust, as
  you would run it.

:func:`load_adapted` rebuilds the adapter, checks that it has the recorded latent shape and
loads the weights strictly; :func:`latentcam.checkpoint.load_run` reads such a
folder like any run.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
from pathlib import Path
from typing import Any

import torch

from latentcam.errors import CheckpointError, InputError
from latentcam.io import (
    ADAPTER_FILES,
    TENSORS_ONLY,
    atomic_path,
    ensure_dir,
    pickled_objects,
    write_json,
)
from latentcam.models.adapters import (
    INPUT_LAYER,
    PREFIX,
    Adapter,
    DiffusersVAE,
    PythaeVAE,
    WrappedVAE,
    adapt,
    wrap,
)

log = logging.getLogger(__name__)

#: The spec file of an adapted-model run folder.
SPEC_FILE = ADAPTER_FILES[0]
#: The weights file of an adapted-model run folder.
WEIGHTS_FILE = ADAPTER_FILES[1]
#: Bumped when the layout of ``adapter.json`` changes incompatibly.
SPEC_FORMAT = 1
#: The ``library`` values a spec may name.
LIBRARIES = ("diffusers", "pythae", "python")


def is_adapter_run(path: str | Path) -> bool:
    """True when ``path`` is a folder written by :func:`save_adapted`."""
    return (Path(path) / SPEC_FILE).is_file()


# ----------------------------------------------------------------------------- spec


def _factory_spec(factory: str, kwargs: dict[str, Any] | None) -> dict[str, Any]:
    module, _, attr = factory.partition(":")
    if not module or not attr:
        raise InputError(
            f"factory '{factory}' must be 'package.module:function' (a callable that returns "
            "the model)"
        )
    try:
        json.dumps(kwargs or {})
    except TypeError as err:
        raise InputError(
            f"factory kwargs must be JSON values (numbers, strings, lists): {err}"
        ) from None
    return {"library": "python", "factory": factory, "kwargs": dict(kwargs or {})}


def _wrap_options(model: WrappedVAE) -> dict[str, Any]:
    """The :func:`wrap` arguments that rebuild ``model`` around a fresh module."""
    encode, decode = model.method_names
    if encode is None or decode is None:
        raise InputError(
            "this wrapped model was given encode/decode as callables, which a run folder cannot "
            "record; wrap it with method names (encode='encode', decode='decode')"
        )
    found = [n.removeprefix(f"{PREFIX}.") for n in model.encoder_layers() if n != INPUT_LAYER]
    explain = model.explain_layer
    return {
        "encode": encode,
        "decode": decode,
        "layers": found or None,
        "explain_layer": None if explain == INPUT_LAYER else explain.removeprefix(f"{PREFIX}."),
        "cond_dim": model.cond_dim,
        "outputs": sorted(model.outputs),
        "value_range": list(model.value_range),
    }  # the latent shape is recorded (and checked) beside the architecture


def adapter_spec(
    model: Adapter,
    factory: str | None = None,
    kwargs: dict[str, Any] | None = None,
    data: str | None = None,
) -> dict[str, Any]:
    """The JSON-ready spec of ``adapter.json`` for an adapted model (see the module docstring).

    Args:
        model: an adapter from :func:`adapt` or :func:`wrap`.
        factory: ``"package.module:function"`` that builds the wrapped module (needed for
            wrapped code and for pythae models with their own networks).
        kwargs: JSON arguments of the factory.
        data: the dataset the model expects (a path or "synth"), recorded for the tools.

    Raises:
        InputError: a model that cannot be described (not an adapter, callables given to
            wrap, a pythae model with its own networks and no factory, a bad factory).
    """
    if not isinstance(model, Adapter):
        raise InputError(
            f"only adapted models (latentcam.adapt / latentcam.wrap) are saved this way, got "
            f"{type(model).__name__}; latentcam's own models are saved by training"
        )
    arch: dict[str, Any]
    if factory is not None:
        arch = _factory_spec(factory, kwargs)
        if isinstance(model, WrappedVAE):
            arch["wrap"] = _wrap_options(model)
    elif isinstance(model, DiffusersVAE):
        vae: Any = model.module
        arch = {
            "library": "diffusers",
            "class": type(vae).__name__,
            "config": json.loads(vae.to_json_string()),
        }
    elif isinstance(model, PythaeVAE):
        pythae_model: Any = model.module
        config = pythae_model.model_config
        if not (config.uses_default_encoder and config.uses_default_decoder):
            raise InputError(
                f"this pythae {type(pythae_model).__name__} uses its own encoder or decoder "
                "network, which a config cannot rebuild; give factory='package.module:function' "
                "that builds the model"
            )
        arch = {
            "library": "pythae",
            "model": type(pythae_model).__name__,
            "config_class": type(config).__name__,
            "config": json.loads(json.dumps(config.to_dict())),  # tuples become lists
        }
    else:
        raise InputError(
            f"a {type(model).__name__} is rebuilt from code: give factory='package.module:function' "
            "that returns the wrapped module"
        )
    from latentcam import __version__

    return {
        "format": SPEC_FORMAT,
        "version": __version__,
        "architecture": arch,
        "image_size": model.image_size,
        "latent_shape": list(model.latent_shape),
        "cond_dim": model.cond_dim,
        "outputs": sorted(model.outputs),
        "encoder_layers": model.encoder_layers(),
        "explain_layer": model.explain_layer,
        "data": data,
    }


def save_adapted(
    model: Adapter,
    out: str | Path,
    factory: str | None = None,
    kwargs: dict[str, Any] | None = None,
    data: str | None = None,
) -> Path:
    """Write ``model`` as a run folder ``out`` (``adapter.json`` + ``weights.safetensors``).

    Args: as :func:`adapter_spec`; ``out`` is created if needed.

    Returns:
        ``out`` as a Path.

    Raises:
        InputError: a model that cannot be described, or ``out`` already holds a run.
    """
    from safetensors.torch import save_model

    spec = adapter_spec(model, factory=factory, kwargs=kwargs, data=data)
    out = Path(out)
    if is_adapter_run(out) or (out / "checkpoints").is_dir():
        raise InputError(f"{out} already holds a run; choose a new folder")
    ensure_dir(out)
    with atomic_path(out / WEIGHTS_FILE) as tmp:
        save_model(model, str(tmp), metadata={"format": str(SPEC_FORMAT)})
    write_json(out / SPEC_FILE, spec)  # last: a folder with a spec is complete
    return out


# ----------------------------------------------------------------------------- load


def read_spec(path: str | Path) -> dict[str, Any]:
    """The spec of a run folder, checked for its format and required keys.

    Raises:
        CheckpointError: no spec, unreadable JSON, another format, missing keys.
    """
    spec_path = Path(path) / SPEC_FILE
    try:
        spec = json.loads(spec_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(
            f"{path} is not an adapted-model run: no {SPEC_FILE}; write one with "
            "latentcam.models.saved.save_adapted"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {spec_path}: {err}") from None
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        found = spec.get("format") if isinstance(spec, dict) else None
        raise CheckpointError(
            f"{spec_path} has format {found!r}; this latentcam reads format {SPEC_FORMAT}"
        )
    missing = [k for k in ("architecture", "image_size", "latent_shape") if k not in spec]
    library = spec.get("architecture", {}).get("library") if not missing else None
    if missing or library not in LIBRARIES:
        what = f"lacks {', '.join(missing)}" if missing else f"names library {library!r}"
        raise CheckpointError(
            f"{spec_path} {what}; a spec names its architecture (library one of "
            f"{', '.join(LIBRARIES)}), image_size and latent_shape"
        )
    return spec


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _call_factory(arch: dict[str, Any]) -> Any:
    factory = str(arch.get("factory", ""))
    module_name, _, attr = factory.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise CheckpointError(
            f"cannot find the factory '{factory}' ({type(err).__name__}: {err}); make its "
            "module importable (e.g. on PYTHONPATH)"
        ) from None
    try:
        return fn(**arch.get("kwargs", {}))
    except Exception as err:  # user code: any failure is reported in one line, with its type
        raise CheckpointError(
            f"the factory '{factory}' raised {type(err).__name__}: {_first_line(err)}"
        ) from err


def _build(spec: dict[str, Any]) -> Adapter:
    """The adapter the spec describes, with random weights."""
    arch, size = spec["architecture"], int(spec["image_size"])
    library = arch["library"]
    if library == "diffusers":
        import diffusers

        cls = getattr(diffusers, str(arch.get("class", "")), None)
        if not isinstance(cls, type) or not issubclass(cls, diffusers.AutoencoderKL):
            raise CheckpointError(
                f"the spec names diffusers class {arch.get('class')!r}; "
                "latentcam adapts AutoencoderKL"
            )
        built = adapt(cls.from_config(arch["config"]), image_size=size)
    elif library == "pythae":
        import pythae.models

        model_cls = getattr(pythae.models, str(arch.get("model", "")), None)
        config_cls = getattr(pythae.models, str(arch.get("config_class", "")), None)
        if model_cls is None or config_cls is None:
            raise CheckpointError(
                f"pythae has no model {arch.get('model')!r} with config "
                f"{arch.get('config_class')!r}; install the pythae version that wrote it"
            )
        built = adapt(model_cls(config_cls.from_dict(arch["config"])), image_size=size)
    else:
        module = _call_factory(arch)
        options = arch.get("wrap")
        if options is None or isinstance(module, Adapter):  # a factory may return an adapter
            built = adapt(module, image_size=size)
        else:
            built = wrap(module, image_size=size, **options)
    if not isinstance(built, Adapter):
        raise CheckpointError(
            f"the factory '{arch.get('factory')}' returned a latentcam {type(built).__name__}; "
            "latentcam's own models are loaded from their training checkpoints"
        )
    return built


def load_adapted(path: str | Path, map_location: Any = "cpu") -> Adapter:
    """The adapted model of a run folder from :func:`save_adapted`, in eval mode.

    Raises:
        CheckpointError: a missing or foreign spec, a factory that cannot be found or
            raises, a rebuilt model whose latent shape differs from the spec, weights that
            do not fit it, a corrupt weights file.
        InputError: the rebuilt model cannot take the recorded image size.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    path = Path(path)
    spec = read_spec(path)
    model = _build(spec)
    recorded = tuple(int(d) for d in spec["latent_shape"])
    if model.latent_shape != recorded:
        raise CheckpointError(
            f"the model rebuilt from {path / SPEC_FILE} has latent shape {model.latent_shape}, "
            f"the spec records {recorded} (K={math.prod(recorded)}); the spec or the code changed"
        )
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{path} has no {WEIGHTS_FILE}: the run folder is incomplete")
    try:
        missing, unexpected = load_model(model, str(weights), strict=False)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(
            f"cannot read the weights in {weights}: the file is truncated or corrupt "
            f"({_first_line(err)}); save the model again"
        ) from None
    except RuntimeError as err:  # load_state_dict: tensors of other shapes
        wrong = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
        shown = "; ".join(wrong[:2]) + (f"; and {len(wrong) - 2} more" if len(wrong) > 2 else "")
        raise CheckpointError(
            f"the weights in {weights} do not fit the model its spec describes "
            f"({shown or _first_line(err)})"
        ) from None
    if missing or unexpected:
        raise CheckpointError(
            f"the weights in {weights} do not fit the model its spec describes (missing: "
            f"{', '.join(missing[:3]) or 'none'}; unexpected: {', '.join(unexpected[:3]) or 'none'})"
        )
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    return model.eval()


# ----------------------------------------------------------------------------- import

#: The ``--from`` formats of :func:`import_model`.
IMPORT_FORMATS = ("diffusers", "pythae", "python")


def _read_diffusers(folder: Path) -> Any:
    """An ``AutoencoderKL`` from a ``save_pretrained`` folder, read locally (no hub)."""
    if not (folder / "config.json").is_file():
        raise InputError(
            f"{folder} is not a diffusers model folder: it has no config.json; give a folder "
            "written by AutoencoderKL.save_pretrained"
        )
    try:
        from diffusers import AutoencoderKL
    except ImportError:
        raise InputError(
            "importing a diffusers model needs diffusers: pip install 'latentcam[diffusers]'"
        ) from None
    try:
        return AutoencoderKL.from_pretrained(
            str(folder), local_files_only=True, low_cpu_mem_usage=False
        )
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as err:
        raise InputError(
            f"cannot read the AutoencoderKL in {folder} ({type(err).__name__}: {_first_line(err)})"
        ) from None


def _read_pythae(folder: Path) -> Any:
    """A pythae model from a ``model.save(dir)`` folder (model_config.json + model.pt).

    Only models with pythae's default networks: a folder with its own encoder or decoder
    stores them as pickles (encoder.pkl, decoder.pkl), which latentcam does not unpickle.
    """
    for name in ("model_config.json", "model.pt"):
        if not (folder / name).is_file():
            raise InputError(
                f"{folder} is not a pythae model folder: it has no {name}; give a folder "
                "written by pythae's model.save(dir)"
            )
    custom = [n for n in ("encoder.pkl", "decoder.pkl") if (folder / n).is_file()]
    if custom:
        raise InputError(
            f"{folder} holds its own networks as pickles ({', '.join(custom)}), which latentcam "
            "does not unpickle; import the model with --from python MODULE:FACTORY --weights FILE"
        )
    try:
        from pythae.models import AutoModel
    except ImportError:
        raise InputError(
            "importing a pythae model needs pythae: pip install 'latentcam[pythae]'"
        ) from None
    try:
        # pythae reads model.pt with torch.load, whose default is weights_only=True here
        return AutoModel.load_from_folder(str(folder))
    except (OSError, ValueError, RuntimeError, TypeError, KeyError, NameError) as err:
        raise InputError(
            f"cannot read the pythae model in {folder} ({type(err).__name__}: {_first_line(err)})"
        ) from None


def state_diff(
    expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], show: int = 3
) -> str:
    """Missing, unexpected and wrongly shaped entries of ``found``, a few of each."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k} {tuple(found[k].shape)} in the file vs {tuple(v.shape)} in the model"
        for k, v in expected.items()
        if k in found and found[k].shape != v.shape
    ]

    def fmt(keys: list[str]) -> str:
        more = f" and {len(keys) - show} more" if len(keys) > show else ""
        return ", ".join(keys[:show]) + more if keys else "none"

    return f"missing: {fmt(missing)}; unexpected: {fmt(unexpected)}; wrong shape: {fmt(shapes)}"


def _load_weights(model: torch.nn.Module, weights: Path) -> None:
    """Load a state dict file (safetensors, else ``torch.load(weights_only=True)``) strictly."""
    if not weights.is_file():
        raise InputError(f"weights file not found: {weights}")
    state: Any
    try:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(weights))
        else:
            state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file: one line with its type
        found = pickled_objects(err)
        if found:
            raise InputError(
                f"{weights} holds {found}, not only tensors: {TENSORS_ONLY}; save the weights "
                "alone, with torch.save(model.state_dict(), FILE) or safetensors"
            ) from None
        raise InputError(
            f"cannot read the weights in {weights} ({type(err).__name__}: {_first_line(err)}); "
            "give a state dict saved with safetensors or torch.save(model.state_dict())"
        ) from None
    for key in ("state_dict", "model_state_dict"):  # Lightning's and pythae's wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise InputError(f"{weights} holds a {type(state).__name__}, not a state dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise InputError(
            f"the weights in {weights} do not fit the model "
            f"({state_diff(model.state_dict(), state)})"
        ) from None


def import_model(
    source: str,
    location: str,
    out: str | Path,
    weights: str | Path | None = None,
    image_size: int | None = None,
    data: str | None = None,
    kwargs: dict[str, Any] | None = None,
) -> Path:
    """Write another library's VAE (or plain code) as a latentcam run folder.

    Args:
        source: "diffusers" (a ``save_pretrained`` folder of an ``AutoencoderKL``, read
            locally), "pythae" (a ``model.save(dir)`` folder, default networks only) or
            "python" (``module:factory``, a callable returning a model that
            :func:`~latentcam.models.adapters.adapt` accepts, or an adapter; the module is
            imported from the current directory too).
        location: the folder, or ``module:factory``.
        out: the run folder to write (must not hold a run).
        weights: a state dict file (``.safetensors``, else ``torch.load`` with
            ``weights_only=True``) loaded strictly into the model before it is adapted.
        image_size: S, the side of the images to explain; default the model's own.
        data: the dataset the model expects (a path or "synth"), recorded in the spec.
        kwargs: JSON arguments of the factory ("python" only), recorded in the spec, so that
            loading the run calls it the same way.

    Returns:
        ``out`` as a Path.

    Raises:
        InputError: an unknown format, a missing folder, weights that do not fit, a factory
            that raises, an image size the model cannot take, ``out`` already a run. Nothing
            is written under ``out`` then.
    """
    import sys

    if source not in IMPORT_FORMATS:
        raise InputError(f"unknown format '{source}'; give one of {', '.join(IMPORT_FORMATS)}")
    out = Path(out)
    if is_adapter_run(out) or (out / "checkpoints").is_dir():
        raise InputError(f"{out} already holds a run; choose a new folder")
    factory: str | None = None
    if kwargs is not None and source != "python":
        raise InputError(f"factory arguments are for --from python MODULE:FACTORY, not {source}")
    if data is not None and data != "synth":
        if not Path(data).exists():
            raise InputError(f"dataset not found: {data}; give a dataset folder or 'synth'")
        data = str(Path(data).resolve())  # the run folder may be read from elsewhere
    if source == "python":
        factory = location
        _factory_spec(factory, kwargs)  # the form module:function, JSON arguments
        if "" not in sys.path:
            sys.path.insert(0, "")  # the module may lie in the current directory
        try:
            module: Any = _call_factory({"factory": factory, "kwargs": dict(kwargs or {})})
        except CheckpointError as err:
            raise InputError(str(err)) from None
    else:
        folder = Path(location)
        if not folder.is_dir():
            raise InputError(f"model folder not found: {folder}")
        module = _read_diffusers(folder) if source == "diffusers" else _read_pythae(folder)
    if weights is not None:
        target = module.module if isinstance(module, Adapter) else module
        _load_weights(target, Path(weights))
    adapted = adapt(module, image_size=image_size)
    if not isinstance(adapted, Adapter):
        raise InputError(
            f"'{location}' gives a latentcam {type(adapted).__name__}; latentcam's own models "
            "are run folders already (latentcam train)"
        )
    return save_adapted(adapted, out, factory=factory, kwargs=kwargs, data=data)
