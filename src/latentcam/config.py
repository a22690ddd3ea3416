"""Typed run configuration: defaults live here, YAML files and ``key=value`` only override.

The schema is a tree of dataclasses (nanoGPT style: every field says why it exists),
validated by OmegaConf's structured configs, so an unknown key or a value of the wrong
type is an error that names the key. A resolved config travels inside every checkpoint,
which therefore describes itself.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from latentcam.errors import ConfigError
from latentcam.io import TextEncodingError, broken_link, decode_text

#: Packaged recipes: ``--config vae64`` reads ``latentcam/configs/vae64.yaml``.
RECIPES_DIR = Path(__file__).resolve().parent / "configs"


def recipe_names() -> list[str]:
    """Names of the packaged recipes (``latentcam/configs/*.yaml``)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def resolve_config_file(name_or_path: str | Path) -> Path:
    """A YAML path, or the name of a packaged recipe (e.g. ``vae64``). Raises ConfigError."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    reason = broken_link(path)
    if reason is not None:
        raise ConfigError(f"config file {path} is {reason}; fix or remove the link")
    recipe = RECIPES_DIR / f"{name_or_path}.yaml"
    if recipe.is_file():
        return recipe
    raise ConfigError(
        f"config file not found: {path}; give a YAML path or a recipe name "
        f"({', '.join(recipe_names())})"
    )


@dataclass
class ModelConfig:
    """The fields every model kind shares. A run's config holds one of its subclasses, one
    per kind (:class:`VAEConfig`, :class:`CVAEConfig`, :class:`SegVAEConfig`), which add the
    fields of that kind only, as pythae's model configs do; :func:`model_config` builds the
    one a kind names."""

    kind: str = "vae"  # vae | cvae | segvae: which model class the registry builds
    image_size: int = 64  # square input side in pixels; a power of two (64, 128, 256 in the paper)
    latent_dim: int = 100  # K, the number of latent units (the paper sweeps 5, 15, 50, 100)
    num_layers: int = 4  # encoder conv blocks (paper: 3 to 8); the decoder mirrors them
    base_channels: int = 32  # width of the first conv block; doubles per block
    max_channels: int = 256  # cap on the doubling, keeps deep/large models affordable
    min_feature_size: int = 4  # the encoder stops halving at this side; further blocks keep size
    downsample: str = "stride"  # stride (strided conv) | pool (conv + max-pool, as in the paper)
    norm: str = "batch"  # batch | group | instance | none
    activation: str = "leaky_relu"  # leaky_relu | relu | elu | silu
    head: str = "linear"  # linear (mu = W vec(A) + b, the paper) | mlp (a hidden layer before mu)
    head_hidden: int = 256  # width of the hidden layer when head = mlp
    bottleneck: str = "vector"  # vector (the paper) | spatial: latent_dim channels at the
    # smallest map (side min_feature_size), so mu is (B, latent_dim * s * s), channel-major
    decoder: str = "plain"  # plain (transposed conv per level, the paper) | residual (upsample + conv + residual block)
    coord_channels: bool = False  # x/y coordinate channels at every decoder level (CoordConv)
    logvar_init: float = 0.0  # initial bias of the logvar layer; 0 keeps PyTorch's default init.
    # A negative value (e.g. -6) starts with a nearly deterministic posterior, so the decoder
    # is not fed noise of SD 1 at step 0: faster early training when the KL weight is 0 or small

    def __post_init__(self) -> None:
        expected = model_config_class(self.kind)
        if _field_names(type(self)) != _field_names(expected):
            raise ConfigError(
                f"a {type(self).__name__} cannot hold model.kind '{self.kind}'; build it with "
                f"latentcam.config.model_config('{self.kind}', ...) ({expected.__name__})"
            )

    def check(self) -> None:
        """Checks of the fields this kind adds (the shared ones are checked by
        :func:`validate`). Raises ConfigError."""


@dataclass
class VAEConfig(ModelConfig):
    """A VAE: the shared fields only (the paper's model)."""

    kind: str = "vae"


@dataclass
class CVAEConfig(ModelConfig):
    """A conditional VAE: encoder and decoder also read the image's attributes."""

    kind: str = "cvae"
    cond_dim: int = 40  # number of conditioning attributes (CelebA has 40)


@dataclass
class SegVAEConfig(ModelConfig):
    """A VAE-shaped segmentation network: the decoder predicts part masks."""

    kind: str = "segvae"
    seg_classes: int = 1  # 1 = the paper's binary mask, 19 = full CelebAMask-HQ parsing
    seg_recon_image: bool = False  # also reconstruct the image from the same latent

    def check(self) -> None:
        if self.seg_classes not in (1, 19):
            raise ConfigError(
                f"config key 'model.seg_classes' must be 1 (binary mask) or 19 (parts), got "
                f"{self.seg_classes}"
            )


#: The config class of each model kind, in the order ``MODEL_KINDS`` lists them.
MODEL_CONFIGS: tuple[type[ModelConfig], ...] = (VAEConfig, CVAEConfig, SegVAEConfig)
MODEL_KINDS: tuple[str, ...] = tuple(cls.kind for cls in MODEL_CONFIGS)


def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


def model_config_class(kind: object) -> type[ModelConfig]:
    """The config class of model kind ``kind``.

    Raises:
        ConfigError: an unknown kind, with the known ones.
    """
    for cls in MODEL_CONFIGS:
        if cls.kind == kind:
            return cls
    raise ConfigError(
        f"config key 'model.kind' is '{kind}'; choose one of: {', '.join(MODEL_KINDS)}"
    )


def model_config(kind: str = "vae", **values: Any) -> ModelConfig:
    """The model config of ``kind`` with ``values`` set, e.g.
    ``model_config("cvae", cond_dim=5)``.

    Raises:
        ConfigError: an unknown kind, or a field that models of that kind do not have.
    """
    cls = model_config_class(kind)
    foreign = sorted(set(values) - _field_names(cls))
    if foreign:
        raise ConfigError(_foreign_message(foreign[0], kind, "the call"))
    return cls(**values)


def _foreign_message(key: str, kind: object, source: str) -> str:
    owners = [cls.kind for cls in MODEL_CONFIGS if key in _field_names(cls)]
    if not owners:
        return (
            f"config key 'model.{key}' in {source}: no model has such a key. See "
            "latentcam/config.py for the keys."
        )
    return (
        f"config key 'model.{key}' in {source} belongs to {' and '.join(owners)} models, but "
        f"model.kind is '{kind}'; set model.kind={owners[0]} or remove the key"
    )


@dataclass
class DataConfig:
    path: str = "synth"  # dataset folder (any supported layout) or "synth" (built-in faces)
    synth_n: int = 4000  # images to render when path is "synth"
    synth_seed: int = 0  # seed of the synthetic faces
    target: str = "parts"  # segvae target: parts (19 classes) | binary (the paper's mask)
    batch_size: int = 64  # the paper's batch size
    val_fraction: float = 0.1  # seeded split when the dataset has no official partition
    test_fraction: float = 0.1
    num_workers: int = -1  # loader processes; -1 = auto: 0 on the CPU (fastest: the decoded
    # cache is sliced in-process), 4 per GPU process (slicing overlaps the GPU's work)
    limit: int = 0  # use only the first N images of each split (0 = all)
    hflip: bool = False  # mirror each training image (labels too; left/right parts swap) with p 1/2
    skip_bad: bool = (
        False  # skip unreadable/inconsistent files (listed in a summary) instead of stopping
    )
    cache_dir: str = ""  # where decoded arrays live ("" = $LATENTCAM_CACHE or ~/.cache/latentcam)


@dataclass
class TrainConfig:
    epochs: int = 20  # passes over the training split
    max_steps: int = -1  # stop after this many optimiser steps (-1 = no limit)
    max_minutes: float = 0.0  # wall-clock budget in minutes (0 = none); checkpoints are kept
    lr: float = 1e-3  # Adam learning rate (the peak of the onecycle schedule)
    lr_schedule: str = "constant"  # constant | onecycle: warm-up from lr / 25 over the first
    # warmup_fraction of the run's steps to lr, then cosine annealing to lr / 2.5e5 at the
    # last step (Smith & Topin 2019; torch's OneCycleLR). It spans train.max_steps (else the
    # epochs), so a shorter budget is a shorter schedule that still ends annealed
    warmup_fraction: float = 0.1  # onecycle: share of the steps spent warming up
    weight_decay: float = 0.0
    beta: float = 1.0  # KL weight (beta-VAE, Higgins et al. 2017); SegVAE 0 = the paper's code
    kl_warmup_steps: int = 0  # linear KL warm-up from 0 to beta (Bowman et al. 2016)
    recon_loss: str = "mse"  # mse | bce
    seg_loss: str = "bce_jaccard"  # bce_jaccard (paper) | jaccard | dice | ce | ce_dice |
    # lovasz | ce_lovasz (the Lovasz surrogate of the IoU, alone or + cross-entropy)
    seg_weight: float = 1.0  # SegVAE: weight of the segmentation loss
    recon_weight: float = 1.0  # weight of the image reconstruction loss where there is one
    grad_clip: float = 0.0  # clip gradient norm to this value (0 = off)
    ema_decay: float = 0.0  # keep an exponential moving average of the weights with this decay
    # (e.g. 0.99; 0 = off): validation, checkpoints and the trained model use the average. It
    # warms up: update t uses min(ema_decay, (1 + t) / (10 + t)) (TensorFlow's rule), so a
    # short run's average is not dominated by its first, nearly random weights
    seed: int = 0  # seeds torch, numpy and the split: same seed, same run on CPU
    accelerator: str = "cpu"  # cpu | gpu | auto (passed to Lightning's Trainer)
    devices: int = 1  # processes/GPUs per node
    strategy: str = "auto"  # auto | ddp | ddp_spawn | ddp_fork
    num_nodes: int = 1
    precision: str = "auto"  # auto (bf16/16-mixed on GPU, 32 on CPU) | 32 | 16-mixed | bf16-mixed
    log_every_n_steps: int = 10
    val_check_interval: float = 1.0  # fraction of an epoch between validations
    deterministic: bool = True  # torch deterministic algorithms (CPU runs are reproducible)
    # Attention disentanglement (Liu et al. 2020): penalise the soft IoU between the Grad-CAM
    # maps of pairs of latent units, so units look at different places (vae/cvae/segvae).
    attention_weight: float = 0.0  # weight of the overlap term (0 = off, the paper's training)
    attention_layer: str = ""  # layer whose maps are penalised ("" = the model's explain layer)
    attention_units: int = 16  # units drawn at random per step (pairs grow as units^2)
    attention_post: str = "abs"  # abs (Liu et al.'s code; maps cannot vanish) | relu


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=VAEConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _fail(err: OmegaConfBaseException, source: str) -> ConfigError:
    key = getattr(err, "full_key", None) or getattr(err, "key", None)
    what = str(err).splitlines()[0]
    where = f" in {source}" if source else ""
    if key:
        return ConfigError(
            f"config key '{key}'{where}: {what}. See latentcam/config.py for the keys."
        )
    return ConfigError(f"invalid config{where}: {what}")


#: The sections of a config file, as in :class:`RunConfig`.
SECTIONS = ("model", "data", "train")

#: One key of each section, for the messages.
_EXAMPLE_KEY = {"model": "latent_dim=15", "data": "batch_size=32", "train": "lr=3e-4"}

#: How a YAML config file must look, for the messages about one that does not.
_CONFIG_SHAPE = (
    "a config file is a mapping of sections, e.g. 'train: {lr: 0.001}' "
    "(sections: model, data, train)"
)


def _yaml_error(err: yaml.YAMLError, path: Path) -> ConfigError:
    """One line for a YAML syntax error, duplicate key or tag in ``path``: what, where, fix."""
    problem = str(getattr(err, "problem", None) or err).strip().splitlines()[0]
    context = getattr(err, "context", None)
    if context and problem.startswith("but "):  # "expected a single document ..., but found"
        problem = f"{context}, {problem}"
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    if "duplicate key" in problem:
        fix = "keep one of the two"
    elif "constructor for the tag" in problem:
        tag = problem.split("tag", 1)[1].strip().strip("'").replace("tag:yaml.org,2002:", "!!")
        problem = f"the YAML tag {tag} is not allowed, configs hold plain values only"
        fix = "remove the tag"
    elif "expansion exceeds" in problem:
        problem = "too many YAML aliases (*name) expand"
        fix = "write the values out"
    else:
        fix = "fix the YAML there (indent with spaces, quote values that hold ':' or '#')"
    return ConfigError(f"cannot parse config file {path}{where}: {problem}; {fix}")


def read_config_file(path: str | Path) -> DictConfig:
    """Read one YAML config file (text as :func:`latentcam.io.decode_text` reads it) as a
    DictConfig.

    Parsed by OmegaConf's loader (YAML 1.2 floats such as ``1e-3``, duplicate keys refused,
    a cap on alias expansion); tags that construct objects (``!!python/object``) are refused.

    Raises:
        ConfigError: one line naming the file, what is wrong and the fix, for a file that
            cannot be read, is not UTF-8 text, is not valid YAML, has a duplicate key or a
            tag, or holds a list or a single value instead of a mapping of sections.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(
            f"cannot read config file {path}: {err.strerror}; check the path and its permissions"
        ) from None
    try:
        text = decode_text(raw)
    except TextEncodingError as err:
        raise ConfigError(f"config file {path} {err}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)  # the shape, before any value is built
        if root is not None and not isinstance(root, yaml.MappingNode):
            found = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
            raise ConfigError(f"config file {path} holds {found}, not a mapping; {_CONFIG_SHAPE}")
        loaded = OmegaConf.load(io.StringIO(text))
    except yaml.YAMLError as err:
        raise _yaml_error(err, path) from None
    assert isinstance(loaded, DictConfig)
    for key, value in list(loaded.items_ex(resolve=False)):
        if key not in SECTIONS:
            continue  # an unknown key: the merge names it
        if value is None:  # an empty section ("train:") overrides nothing
            del loaded[key]
        elif not OmegaConf.is_dict(value):
            raise ConfigError(
                f"config file {path}: section '{key}' must be a mapping of keys, got "
                f"{value!r}; {_CONFIG_SHAPE}"
            )
    return loaded


def load_config(
    files: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
    base: RunConfig | dict[str, Any] | None = None,
) -> RunConfig:
    """Defaults, then ``base``, then each YAML file, then ``key=value`` overrides.

    Args:
        files: YAML files, or packaged recipe names (e.g. ``vae64``), whose keys override
            the defaults, in order.
        overrides: dotted overrides such as ``model.latent_dim=15`` or ``train.lr=3e-4``.
        base: a config (or its dict) to start from instead of the defaults.

    Raises:
        ConfigError: an unknown key, a wrong type, an unreadable file, or an invalid value.
    """
    sources: list[tuple[str, DictConfig, bool]] = []  # (where from, keys, saved by us)
    if base is not None:
        base_dict = asdict(base) if isinstance(base, RunConfig) else base
        try:
            sources.append(("the base config", OmegaConf.create(base_dict), True))
        except OmegaConfBaseException as err:
            raise _fail(err, "the base config") from None
    for f in files:
        path = resolve_config_file(f)
        try:
            sources.append((str(path), read_config_file(path), False))
        except OmegaConfBaseException as err:  # a value OmegaConf cannot hold (a YAML set)
            raise _fail(err, str(path)) from None
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(
            f"override '{bad[0]}' is not of the form key=value (e.g. model.latent_dim=15)"
        )
    for override in overrides:
        try:
            sources.append(("the command line", OmegaConf.from_dotlist([override]), False))
        except OmegaConfBaseException as err:
            raise _fail(err, "the command line") from None
        except yaml.YAMLError as err:  # the value is parsed as YAML: "train.lr=[1"
            what = str(getattr(err, "problem", None) or err).strip().splitlines()[0]
            raise ConfigError(
                f"override '{override}' has a value that is not valid YAML ({what}); give a "
                "plain number or word, e.g. train.lr=3e-4"
            ) from None
    # The last source that sets model.kind picks the model's config class; then every
    # source merges into that schema, so a key of another kind is an error that says so.
    kind: object = ModelConfig.kind
    for source, node, _ in sources:
        model = node.get("model") if isinstance(node, DictConfig) else None
        if OmegaConf.is_dict(model) and "kind" in model:
            try:
                kind = model["kind"]
            except OmegaConfBaseException as err:
                raise _fail(err, source) from None
    model_cls = model_config_class(kind)
    merged: Any = OmegaConf.structured(RunConfig(model=model_cls()))
    for source, node, saved in sources:
        for section in SECTIONS:
            value = node.get(section) if isinstance(node, DictConfig) else None
            if value is not None and not OmegaConf.is_dict(value):
                raise ConfigError(
                    f"config key '{section}' in {source} must be a mapping of keys, got "
                    f"{value!r}; set one key at a time, e.g. {section}.{_EXAMPLE_KEY[section]}"
                )
        model = node.get("model") if isinstance(node, DictConfig) else None
        if OmegaConf.is_dict(model):
            for key in [k for k in model if k not in _field_names(model_cls)]:
                if saved and any(key in _field_names(c) for c in MODEL_CONFIGS):
                    # a key of another kind in a config we wrote: a flat config saved before
                    # configs were per kind, or a base whose kind an override changes
                    del model[key]
                else:
                    raise ConfigError(_foreign_message(str(key), kind, source))
        try:
            merged = OmegaConf.merge(merged, node)
        except OmegaConfBaseException as err:
            raise _fail(err, source) from None
    try:
        cfg = OmegaConf.to_object(merged)  # resolves ${...} interpolations
    except OmegaConfBaseException as err:
        raise _fail(err, "the config files and key=value overrides") from None
    assert isinstance(cfg, RunConfig)
    validate(cfg)
    return cfg


_CHOICES: dict[str, tuple[str, ...]] = {
    "model.kind": MODEL_KINDS,
    "model.downsample": ("stride", "pool"),
    "model.norm": ("batch", "group", "instance", "none"),
    "model.activation": ("leaky_relu", "relu", "elu", "silu"),
    "model.head": ("linear", "mlp"),
    "model.bottleneck": ("vector", "spatial"),
    "model.decoder": ("plain", "residual"),
    "data.target": ("parts", "binary"),
    "train.recon_loss": ("mse", "bce"),
    "train.lr_schedule": ("constant", "onecycle"),
    "train.attention_post": ("abs", "relu"),
    "train.seg_loss": ("bce_jaccard", "jaccard", "dice", "ce", "ce_dice", "lovasz", "ce_lovasz"),
    "train.strategy": ("auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook"),
    "train.accelerator": ("cpu", "gpu", "cuda", "mps", "auto"),
    "train.precision": ("auto", "32", "16-mixed", "bf16-mixed", "64"),
}

_POSITIVE = (
    "model.image_size",
    "model.latent_dim",
    "model.num_layers",
    "model.base_channels",
    "model.max_channels",
    "model.min_feature_size",
    "model.seg_classes",
    "data.batch_size",
    "data.synth_n",
    "train.devices",
    "train.num_nodes",
)


#: The largest seed torch, NumPy and Python all accept.
SEED_MAX = 2**32 - 1

#: Numeric keys and their allowed range ``(low, high, what the ends mean)``, both ends
#: included (None: unbounded). Every float key must also be finite (NaN and infinity are
#: refused). Keys in :data:`_POSITIVE` are > 0 besides.
_RANGES: dict[str, tuple[float | None, float | None, str]] = {
    "model.head_hidden": (1, None, ""),
    "model.cond_dim": (1, None, ""),
    "data.synth_seed": (0, SEED_MAX, ""),
    "data.limit": (0, None, "0 = all"),
    "train.epochs": (-1, None, "-1 or 0 = no epoch limit"),
    "train.max_steps": (-1, None, "-1 = no step limit"),
    "train.max_minutes": (0, 10**7, "0 = no time limit"),
    "train.weight_decay": (0, None, ""),
    "train.beta": (0, None, ""),
    "train.kl_warmup_steps": (0, None, "0 = off"),
    "train.seg_weight": (0, None, ""),
    "train.recon_weight": (0, None, ""),
    "train.grad_clip": (0, None, "0 = off"),
    "train.seed": (0, SEED_MAX, ""),
    "train.log_every_n_steps": (1, None, ""),
    "train.attention_weight": (0, None, "0 = off"),
    "train.attention_units": (1, None, ""),
}


#: The allowed values of float keys checked apart from :data:`_RANGES` (for the message).
_FLOAT_HINTS = {
    "train.lr": "> 0",
    "train.val_check_interval": "> 0",
    "train.ema_decay": "in [0, 1)",
    "train.warmup_fraction": "in (0, 1)",
    "data.val_fraction": "in [0, 1)",
    "data.test_fraction": "in [0, 1)",
}


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _range_text(low: float | None, high: float | None, note: str) -> str:
    if low is None:
        text = f"<= {_num(high)}" if high is not None else "any number"
    else:
        text = f"from {_num(low)} to {_num(high)}" if high is not None else f">= {_num(low)}"
    return f"{text} ({note})" if note else text


def _check_numbers(cfg: RunConfig) -> None:
    """NaN and infinity nowhere; every key of :data:`_RANGES` inside its range."""
    for section in ("model", "data", "train"):
        part = getattr(cfg, section)
        for f in fields(part):
            value = getattr(part, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                key = f"{section}.{f.name}"
                allowed = _RANGES.get(key)
                hint = f" {_range_text(*allowed)}" if allowed else ""
                hint = f" {_FLOAT_HINTS[key]}" if key in _FLOAT_HINTS else hint
                raise ConfigError(f"config key '{key}' must be a finite number{hint}, got {value}")
    for key, (low, high, note) in _RANGES.items():
        value = _get(cfg, key)
        if value is None:
            continue
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(
                f"config key '{key}' must be {_range_text(low, high, note)}, got {value}"
            )


def _get(cfg: RunConfig, dotted: str) -> Any:
    """The value of ``section.key``, or None where this config's model kind has no such key."""
    section, key = dotted.split(".")
    if section == "model" and not hasattr(cfg.model, key):
        return None
    return getattr(getattr(cfg, section), key)


def validate(cfg: RunConfig) -> None:
    """Check values that types alone cannot: choices, positivity, sizes. Raises ConfigError."""
    for key, choices in _CHOICES.items():
        value = _get(cfg, key)
        if value not in choices:
            raise ConfigError(
                f"config key '{key}' is '{value}'; choose one of: {', '.join(choices)}"
            )
    for key in _POSITIVE:
        value = _get(cfg, key)
        if value is not None and value <= 0:
            raise ConfigError(f"config key '{key}' must be positive, got {value}")
    _check_numbers(cfg)
    if cfg.data.num_workers < -1:
        raise ConfigError(
            f"config key 'data.num_workers' must be -1 (auto) or >= 0, got {cfg.data.num_workers}"
        )
    size = cfg.model.image_size
    if size & (size - 1) or not 4 <= size <= 4096:
        raise ConfigError(
            f"model.image_size must be a power of two from 4 to 4096 (64, 128, 256), got {size}"
        )
    if cfg.model.min_feature_size > size:
        raise ConfigError(
            f"model.min_feature_size ({cfg.model.min_feature_size}) exceeds model.image_size ({size})"
        )
    cfg.model.check()
    if not 0.0 <= cfg.data.val_fraction < 1 or not 0.0 <= cfg.data.test_fraction < 1:
        raise ConfigError("data.val_fraction and data.test_fraction must lie in [0, 1)")
    if cfg.data.val_fraction + cfg.data.test_fraction >= 1:
        raise ConfigError("data.val_fraction + data.test_fraction must leave images for training")
    if not cfg.train.lr > 0:
        raise ConfigError(f"config key 'train.lr' must be > 0 (e.g. 1e-3), got {cfg.train.lr}")
    if not cfg.train.val_check_interval > 0:
        raise ConfigError(
            "config key 'train.val_check_interval' must be > 0 (a fraction of an epoch), got "
            f"{cfg.train.val_check_interval}"
        )
    if not 0.0 < cfg.train.warmup_fraction < 1.0:
        raise ConfigError(
            "config key 'train.warmup_fraction' must lie in (0, 1) (a share of the steps, "
            f"e.g. 0.1), got {cfg.train.warmup_fraction}"
        )
    if not 0.0 <= cfg.train.ema_decay < 1.0:
        raise ConfigError(
            f"config key 'train.ema_decay' must lie in [0, 1) (0 = off, e.g. 0.99), "
            f"got {cfg.train.ema_decay}"
        )
    if cfg.train.attention_weight < 0:
        raise ConfigError(
            f"config key 'train.attention_weight' must be >= 0, got {cfg.train.attention_weight}"
        )
    if cfg.train.attention_weight > 0 and cfg.train.attention_units < 2:
        raise ConfigError(
            "config key 'train.attention_units' must be at least 2 (the loss compares pairs), "
            f"got {cfg.train.attention_units}"
        )


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Plain nested dict of a config (what checkpoints and config.yaml store)."""
    return asdict(cfg)


def to_yaml(cfg: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
