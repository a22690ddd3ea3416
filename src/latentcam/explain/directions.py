"""Directions in latent space: concepts to explain, not only units.

A latent unit k is the direction e_k of mu space; most of what a user asks about ("where
does the model look for a smile?") is carried by a mix of units. A :class:`Direction` is a
unit vector w in mu space (K,) with a name, where it came from and its scores; the score
mu . w is explained like a unit (:class:`latentcam.explain.targets.LatentDirection`), and
traversed along w in units of the data's standard deviation along w.

Finders, each with its source:

=============================  ==============================================================
finder                         what it finds
=============================  ==============================================================
:func:`attribute_directions`   one per binary attribute: the weight vector of a class-balanced,
                               L2-regularised logistic probe on standardised mu, mapped back to
                               mu space (the linear boundary of InterFaceGAN, Shen et al. 2020;
                               a concept activation vector, Kim et al. 2018, TCAV)
:func:`factor_directions`      one per known continuous factor (synthetic faces): ridge
                               regression of the factor on standardised mu, mapped back
:func:`pca_directions`         principal components of mu over the data (GANSpace, Härkönen
                               et al. 2020)
:func:`sefa_directions`        top eigenvectors of W^T W of the decoder's first linear layer
                               (SeFa, Shen & Zhou 2021, closed form)
:func:`jacobian_directions`    top right-singular vectors of the decoder Jacobian averaged over
                               images (eigenvectors of mean J^T J): SeFa's idea for decoders
                               that do not start with a linear layer
:func:`mean_difference`        the mean of mu over images "with" minus "without" a concept
                               (TCAV's simplest concept vector, Kim et al. 2018)
:func:`unit_direction`         a single unit as a direction (sign +-1), for side-by-side scores
=============================  ==============================================================

Why the probe is read on *standardised* mu and then mapped back: units have very different
scales, and an L2 penalty on raw coefficients would favour wide units. With z = (mu - m) / s
the probe's logit is beta . z + b, so in mu space the direction is w = beta / s (normalised).
Units whose spread is below :data:`MIN_STD_SHARE` of the median spread (collapsed units) have
their scale floored there, so the mapping back cannot blow their noise up.

Directions are saved as one self-describing ``directions.npz`` (:meth:`DirectionSet.save`):
arrays ``vectors`` (T, K) float32, ``patterns`` (T, K) (:class:`Direction`), ``scales`` (T,),
``names``, ``kinds`` and a JSON string
``meta`` (format, per-direction source, parts, scores); read back with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from latentcam.data.classes import ATTRIBUTE_NAMES, PART_IDS, PART_NAMES, REGIONS
from latentcam.data.synthetic import FACTOR_REGIONS
from latentcam.errors import InputError
from latentcam.explain.decoder import decoder_gram
from latentcam.explain.disentangle import auroc_matrix, fit_logistic
from latentcam.explain.targets import LatentDirection, Target
from latentcam.io import TENSORS_ONLY, atomic_path, pickled_objects

log = logging.getLogger(__name__)

Tensor = torch.Tensor

#: Format tag written into every directions file.
FORMAT = "latentcam.directions/1"
#: The finders' kinds (the ``kind`` of a Direction).
KINDS = (
    "attribute",
    "factor",
    "pca",
    "sefa",
    "jacobian",
    "mean_difference",
    "user",
    "unit",
    "random",
)
#: Fewest positives (and negatives) an attribute needs in the training split for a probe.
MIN_POSITIVES = 10
#: Units whose standard deviation of mu is below this share of the median are floored there.
MIN_STD_SHARE = 0.1

#: CelebA attribute -> the CelebAMask-HQ parts where it shows. Attributes of the whole face or
#: of the skin at large (Attractive, Young, Male, Chubby, Oval_Face, High_Cheekbones,
#: Heavy_Makeup, Rosy_Cheeks, Blurry, Bald, Double_Chin, beards and stubble, Bags_Under_Eyes)
#: have no part a map could point at, and are left out. Override with ``parts=`` (API) or
#: ``--parts FILE`` (CLI).
ATTRIBUTE_PARTS: dict[str, tuple[str, ...]] = {
    "Arched_Eyebrows": ("l_brow", "r_brow"),
    "Bangs": ("hair",),
    "Big_Lips": ("u_lip", "l_lip"),
    "Big_Nose": ("nose",),
    "Black_Hair": ("hair",),
    "Blond_Hair": ("hair",),
    "Brown_Hair": ("hair",),
    "Bushy_Eyebrows": ("l_brow", "r_brow"),
    "Eyeglasses": ("eye_g",),
    "Gray_Hair": ("hair",),
    "Mouth_Slightly_Open": ("mouth",),
    "Narrow_Eyes": ("l_eye", "r_eye"),
    "Pale_Skin": ("skin",),
    "Pointy_Nose": ("nose",),
    "Receding_Hairline": ("hair",),
    "Smiling": ("mouth", "u_lip", "l_lip"),
    "Straight_Hair": ("hair",),
    "Wavy_Hair": ("hair",),
    "Wearing_Earrings": ("ear_r",),
    "Wearing_Hat": ("hat",),
    "Wearing_Lipstick": ("u_lip", "l_lip"),
    "Wearing_Necklace": ("neck_l",),
    "Wearing_Necktie": ("cloth",),
}


def factor_parts() -> dict[str, tuple[str, ...]]:
    """Synthetic factor -> the parts it changes (from the renderer's ``FACTOR_REGIONS``).

    Factors that move most of the face (pose, light, face shape: four regions or more) are
    left out: a map cannot point at "everything".
    """
    out = {}
    for name, regions in FACTOR_REGIONS.items():
        known = [r for r in regions if r in REGIONS]
        if 0 < len(known) <= 3:
            out[name] = tuple(PART_NAMES[i] for r in known for i in REGIONS[r])
    return out


def part_ids(parts: Sequence[str]) -> tuple[int, ...]:
    """CelebAMask-HQ class ids of part names (e.g. ("mouth", "u_lip")).

    Raises:
        InputError: an unknown part name (the message lists the 19 names).
    """
    unknown = [p for p in parts if p not in PART_IDS]
    if unknown:
        raise InputError(
            f"unknown face part '{unknown[0]}'; parts are the CelebAMask-HQ names: "
            f"{', '.join(PART_NAMES)}"
        )
    return tuple(PART_IDS[p] for p in parts)


def read_parts_table(path: str | Path) -> dict[str, tuple[str, ...]]:
    """A parts table from a JSON or YAML file: ``{"Smiling": ["mouth", "u_lip"], ...}``.

    Raises:
        InputError: unreadable file, not a mapping of names to lists, or an unknown part.
    """
    import yaml

    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise InputError(f"cannot read the parts table {path}: {err}") from None
    if not isinstance(loaded, dict):
        raise InputError(
            f"the parts table {path} must map names to lists of part names, e.g. "
            '{"Smiling": ["mouth", "u_lip", "l_lip"]}'
        )
    table = {}
    for name, parts in loaded.items():
        if isinstance(parts, str):
            parts = [parts]
        if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
            raise InputError(f"the parts table {path}: '{name}' must list part names")
        part_ids(parts)
        table[str(name)] = tuple(parts)
    return table


# ----------------------------------------------------------------------------- the objects


@dataclass(frozen=True)
class Direction:
    """A named direction in mu space.

    Attributes:
        name: e.g. "Smiling", "pca_0", "unit_17".
        vector: float32 (K,) on the CPU, norm 1 (unit directions: +-e_k).
        kind: one of :data:`KINDS`.
        source: how it was found, in one sentence (method, data, split, sizes).
        scale: standard deviation of the score s = mu . vector over the data it was found on
            (1 when unknown).
        parts: CelebAMask-HQ part names where the concept shows (scored against), or ().
        scores: what the finder measured (e.g. ``auroc``, ``accuracy``, ``n_pos``,
            ``explained_variance``, ``r2``), JSON-ready numbers.
        pattern: float32 (K,): how mu moves per unit of the score over the data,
            a = Cov(mu, s) / Var(s), or None for ``vector`` itself (units, user vectors).
            Traversals and effect maps step along it (:attr:`displacement`).

    Why a pattern: ``vector`` is the *filter* the heatmap explains (the encoder's evidence
    for the concept is mu . w), but a probe's weights also cancel what the concept shares
    with other factors, so w often points along directions in which the data barely varies
    and the decoder barely responds. Haufe et al. 2014 ("On the interpretation of weight
    vectors of linear models in multivariate neuroimaging") show that the matching
    *activation pattern* a = Cov(mu) w / Var(mu . w) says what changes with the concept. With
    z = mu + t * scale * a the score moves by t of its data standard deviations while mu
    follows the data's covariance; for a principal component (an eigenvector) a = w, and for
    uncorrelated units a = e_k, so the paper's unit traversals are the special case.
    """

    name: str
    vector: Tensor
    kind: str
    source: str = ""
    scale: float = 1.0
    parts: tuple[str, ...] = ()
    scores: dict[str, Any] = field(default_factory=dict)
    pattern: Tensor | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"unknown direction kind '{self.kind}'; one of: {', '.join(KINDS)}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise InputError(f"direction '{self.name}': scale must be > 0, got {self.scale}")

    @property
    def target(self) -> Target:
        """The explanation target mu . vector."""
        return LatentDirection(self.vector, self.name)

    @property
    def displacement(self) -> Tensor:
        """float32 (K,): the move in mu space of one data standard deviation of the concept,
        ``scale * pattern`` (``scale * vector`` without a pattern)."""
        along = self.vector if self.pattern is None else self.pattern
        return along.float() * float(self.scale)


def _unit_vector(w: Tensor, name: str) -> Tensor:
    w = torch.as_tensor(w).detach().double().flatten()
    norm = float(w.norm())
    if not math.isfinite(norm) or norm == 0.0:
        raise InputError(f"direction '{name}' is zero or not finite; it points nowhere")
    return (w / norm).float()


def make_direction(
    name: str,
    vector: Tensor | np.ndarray | Sequence[float],
    kind: str,
    mu: Tensor | None = None,
    along_data: bool = True,
    **fields: Any,
) -> Direction:
    """A :class:`Direction` with ``vector`` normalised to norm 1 and, when ``mu`` (N, K) is
    given, ``scale`` = the standard deviation of s = mu . w over those rows and (with
    ``along_data``) ``pattern`` = Cov(mu, s) / Var(s) (see :class:`Direction`)."""
    w = _unit_vector(torch.as_tensor(np.asarray(vector, dtype=np.float64)), name)
    if mu is not None:
        mu = torch.as_tensor(mu).double()
        if mu.dim() != 2 or mu.shape[1] != w.numel():
            raise InputError(
                f"direction '{name}' has {w.numel()} components; mu has shape {tuple(mu.shape)}"
            )
        centred = mu - mu.mean(0)
        score = centred @ w.double()  # (N,)
        spread = float(score.std()) if mu.shape[0] > 1 else 0.0
        fields["scale"] = spread if spread > 1e-8 else 1.0
        if along_data and spread > 1e-8:
            fields["pattern"] = (centred.T @ score / float(score @ score)).float()
    return Direction(name=name, vector=w, kind=kind, **fields)


@dataclass
class DirectionSet:
    """T directions of one model's mu space (K units), with where they came from.

    Attributes:
        directions: the T directions, in order.
        latent_dim: K.
        meta: set-level facts (run, data, split, images), JSON-ready.
        skipped: name -> why a finder left it out (e.g. too few positives).
    """

    directions: list[Direction]
    latent_dim: int
    meta: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for d in self.directions:
            if d.vector.numel() != self.latent_dim:
                raise InputError(
                    f"direction '{d.name}' has {d.vector.numel()} components; the set is for "
                    f"K={self.latent_dim} latent units"
                )
        names = [d.name for d in self.directions]
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise InputError(f"two directions are named '{twice}'; names must be unique")

    def __len__(self) -> int:
        return len(self.directions)

    def __iter__(self) -> Iterator[Direction]:
        return iter(self.directions)

    def __getitem__(self, name: str) -> Direction:
        for d in self.directions:
            if d.name == name:
                return d
        raise InputError(
            f"no direction named '{name}'; this set has: {', '.join(self.names) or '(none)'}"
        )

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.directions]

    @property
    def vectors(self) -> Tensor:
        """float32 (T, K)."""
        if not self.directions:
            return torch.zeros(0, self.latent_dim)
        return torch.stack([d.vector for d in self.directions])

    @property
    def scales(self) -> Tensor:
        """float32 (T,)."""
        return torch.tensor([d.scale for d in self.directions], dtype=torch.float32)

    @property
    def displacements(self) -> Tensor:
        """float32 (T, K): one data standard deviation of each concept in mu space
        (:attr:`Direction.displacement`)."""
        if not self.directions:
            return torch.zeros(0, self.latent_dim)
        return torch.stack([d.displacement for d in self.directions])

    @property
    def targets(self) -> list[Target]:
        return [d.target for d in self.directions]

    def select(self, names: Sequence[str] | None) -> DirectionSet:
        """The directions named (in the order given); all when ``names`` is None."""
        if names is None:
            return self
        chosen = [self[n] for n in names]
        return DirectionSet(chosen, self.latent_dim, dict(self.meta), {})

    def extend(self, other: DirectionSet) -> DirectionSet:
        """This set followed by ``other``'s directions (same K)."""
        if other.latent_dim != self.latent_dim:
            raise InputError(
                f"cannot join directions for K={other.latent_dim} to a set for K={self.latent_dim}"
            )
        return DirectionSet(
            [*self.directions, *other.directions],
            self.latent_dim,
            {**self.meta, **other.meta},
            {**self.skipped, **other.skipped},
        )

    # ------------------------------------------------------------------ files

    def describe(self) -> dict[str, Any]:
        """Everything but the vectors, JSON-ready: the format, K, the set's meta, what was
        skipped and why, and per direction its name, kind, source, scale, parts and scores."""
        return {
            "format": FORMAT,
            "latent_dim": self.latent_dim,
            **_jsonable(self.meta),
            "skipped": dict(self.skipped),
            "directions": [
                {
                    "name": d.name,
                    "kind": d.kind,
                    "source": d.source,
                    "scale": d.scale,
                    "parts": list(d.parts),
                    "scores": _jsonable(d.scores),
                }
                for d in self.directions
            ],
        }

    def save(self, path: str | Path) -> Path:
        """Write ``directions.npz`` atomically (see the module docstring for its arrays)."""

        path = Path(path)
        meta = self.describe()
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                vectors=self.vectors.numpy().astype(np.float32),
                patterns=np.stack(
                    [
                        (d.vector if d.pattern is None else d.pattern).numpy()
                        for d in self.directions
                    ]
                ).astype(np.float32)
                if self.directions
                else np.zeros((0, self.latent_dim), np.float32),
                scales=self.scales.numpy(),
                names=np.asarray(self.names, dtype=str),
                kinds=np.asarray([d.kind for d in self.directions], dtype=str),
                meta=np.asarray(json.dumps(meta)),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> DirectionSet:
        """Read a file written by :meth:`save` (no pickle is ever loaded).

        Raises:
            InputError: a missing or unreadable file, or not a latentcam directions file.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as arrays:
                vectors = arrays["vectors"].astype(np.float32)
                scales = arrays["scales"].astype(np.float64)
                patterns = (
                    arrays["patterns"].astype(np.float32) if "patterns" in arrays.files else vectors
                )
                names = [str(n) for n in arrays["names"]]
                meta = json.loads(str(arrays["meta"]))
        except FileNotFoundError:
            raise InputError(f"no directions file at {path}") from None
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as err:
            found = pickled_objects(err)
            if found:
                raise InputError(f"{path} holds {found}: {TENSORS_ONLY}") from None
            raise InputError(
                f"{path} is not a latentcam directions file ({err}); write one with "
                "'latentcam directions' or DirectionSet.save"
            ) from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise InputError(f"{path} is not a latentcam directions file (format {FORMAT})")
        if (
            vectors.ndim != 2
            or len(names) != vectors.shape[0]
            or scales.shape != (len(names),)
            or patterns.shape != vectors.shape
        ):
            raise InputError(f"{path} is damaged: vectors, patterns, names and scales do not match")
        finite = np.isfinite(vectors).all() and np.isfinite(patterns).all()
        if not finite or not np.isfinite(scales).all():
            raise InputError(f"{path} holds NaN or Inf values")
        entries = meta.get("directions", [])
        directions = []
        for i, name in enumerate(names):
            entry = entries[i] if i < len(entries) and isinstance(entries[i], dict) else {}
            directions.append(
                Direction(
                    name=name,
                    vector=torch.from_numpy(vectors[i].copy()),
                    kind=str(entry.get("kind", "user")),
                    source=str(entry.get("source", "")),
                    scale=float(scales[i]),
                    pattern=torch.from_numpy(patterns[i].copy()),
                    parts=tuple(entry.get("parts", ())),
                    scores=dict(entry.get("scores", {})),
                )
            )
        rest = {
            k: v
            for k, v in meta.items()
            if k not in ("format", "latent_dim", "directions", "skipped")
        }
        return cls(directions, int(vectors.shape[1]), rest, dict(meta.get("skipped", {})))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Tensor):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def read_vectors(path: str | Path, latent_dim: int) -> DirectionSet:
    """User directions from a file: a ``directions.npz`` (:meth:`DirectionSet.save`), a
    ``.npy`` array (K,) or (T, K), a text/CSV file with one vector per line, or a JSON list
    (one vector or several) or object ``{name: vector}``.

    Raises:
        InputError: unreadable file, no numbers, NaN/Inf, or vectors whose width is not K.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no directions file at {path}")
    named: list[tuple[str, Any]]
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            loaded = DirectionSet.load(path)
            if loaded.latent_dim != latent_dim:
                raise InputError(
                    f"{path} holds directions for K={loaded.latent_dim} latent units; this model "
                    f"has K={latent_dim}: find directions on this model"
                )
            return loaded
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
            named = [(f"{path.stem}_{i}", row) for i, row in enumerate(np.atleast_2d(array))]
        elif suffix == ".json":
            loaded_json = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded_json, dict):
                named = [(str(k), v) for k, v in loaded_json.items()]
            else:
                rows = np.atleast_2d(np.asarray(loaded_json, dtype=np.float64))
                named = [(f"{path.stem}_{i}", row) for i, row in enumerate(rows)]
        else:
            text = path.read_text(encoding="utf-8").replace(",", " ")
            lines = [ln.split() for ln in text.splitlines() if ln.strip()]
            named = [(f"{path.stem}_{i}", [float(v) for v in ln]) for i, ln in enumerate(lines)]
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as err:
        found = pickled_objects(err)
        if found:
            raise InputError(
                f"{path} holds {found}: {TENSORS_ONLY}; save the numbers alone, e.g. "
                "np.save(FILE, np.asarray(vectors, dtype=np.float32))"
            ) from None
        raise InputError(f"cannot read directions from {path}: {err}") from None
    if len(named) == 1:
        named = [(path.stem if named[0][0].startswith(path.stem) else named[0][0], named[0][1])]
    directions = []
    for name, row in named:
        try:
            vector = np.asarray(row, dtype=np.float64).flatten()
        except (ValueError, TypeError):
            raise InputError(f"{path}: direction '{name}' is not a list of numbers") from None
        if vector.size != latent_dim:
            raise InputError(
                f"{path}: direction '{name}' has {vector.size} components; this model has "
                f"K={latent_dim} latent units (one number per unit of mu)"
            )
        if not np.isfinite(vector).all():
            raise InputError(f"{path}: direction '{name}' holds NaN or Inf")
        directions.append(make_direction(name, vector, "user", source=f"read from {path.name}"))
    if not directions:
        raise InputError(f"{path} holds no direction")
    return DirectionSet(directions, latent_dim, {"source": str(path)})


# ----------------------------------------------------------------------------- helpers


def _as_matrix(values: Tensor | np.ndarray, name: str) -> Tensor:
    arr = torch.as_tensor(
        np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values)
    )
    arr = arr.double()
    if arr.dim() != 2 or arr.shape[0] < 2:
        raise InputError(f"{name} must be a (N, K) matrix with N >= 2; got {tuple(arr.shape)}")
    if not bool(torch.isfinite(arr).all()):
        raise InputError(f"{name} holds NaN or Inf")
    return arr


def standardiser(mu: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and floored standard deviation of each unit of mu (N, K), float64 (K,) each.

    The spread of a collapsed unit is floored at :data:`MIN_STD_SHARE` of the median spread,
    so that w = beta / s (the probe mapped back to mu space) cannot amplify its noise.
    """
    mean = mu.mean(0)
    std = mu.std(0)
    floor = MIN_STD_SHARE * float(std.median()) if float(std.median()) > 0 else 1.0
    return mean, std.clamp_min(max(floor, 1e-12))


def _best_threshold_accuracy(scores: Tensor, positives: Tensor) -> tuple[float, float]:
    """(accuracy, balanced accuracy) of ``scores > 0``."""
    predicted = scores > 0
    accuracy = float((predicted == positives).double().mean())
    tpr = float(predicted[positives].double().mean()) if bool(positives.any()) else float("nan")
    tnr = (
        float((~predicted[~positives]).double().mean())
        if bool((~positives).any())
        else float("nan")
    )
    return accuracy, (tpr + tnr) / 2


# ----------------------------------------------------------------------------- finders


def attribute_directions(
    mu_train: Tensor | np.ndarray,
    labels_train: Tensor | np.ndarray,
    mu_val: Tensor | np.ndarray,
    labels_val: Tensor | np.ndarray,
    names: Sequence[str] = ATTRIBUTE_NAMES,
    parts: Mapping[str, Sequence[str]] = ATTRIBUTE_PARTS,
    min_positives: int = MIN_POSITIVES,
    l2: float = 1e-3,
    steps: int = 100,
    required: Sequence[str] = (),
) -> DirectionSet:
    """One direction per binary attribute with enough positives: a logistic probe on mu.

    A class-balanced (each class weighs half), L2-regularised logistic regression per
    attribute on standardised mu (:func:`standardiser`; L-BFGS, mean weighted BCE + ``l2``
    |beta|^2), fit on the training rows; its weights are mapped back to mu space (w = beta /
    s) and normalised. Scored on the validation rows: ``auroc`` of mu . w, ``accuracy`` and
    ``balanced_accuracy`` of the probe's decision; ``n_pos`` / ``n_train`` (train) and
    ``n_pos_val`` / ``n_val``. InterFaceGAN (Shen et al. 2020) finds its boundaries the
    same way in a GAN's latent space; TCAV (Kim et al. 2018) in a classifier's activations.

    Args:
        mu_train, mu_val: (N, K) posterior means of the train and validation images.
        labels_train, labels_val: (N, A) attributes, > 0 = present ({0, 1} or {-1, 1}).
        names: the A attribute names (columns).
        parts: attribute -> part names the direction is scored against.
        min_positives: fewest positives and negatives in the training rows (and at least one
            of each in the validation rows); other attributes are skipped, with the reason.
        l2, steps: the probe's penalty and L-BFGS iterations.
        required: attribute names that must get a direction (an InputError otherwise).

    Returns:
        :class:`DirectionSet` (kind "attribute"), ``skipped`` naming those left out.
    """
    xt, xv = _as_matrix(mu_train, "mu_train"), _as_matrix(mu_val, "mu_val")
    yt = torch.as_tensor(np.asarray(labels_train)).double() > 0
    yv = torch.as_tensor(np.asarray(labels_val)).double() > 0
    if (
        yt.dim() != 2
        or yt.shape != (xt.shape[0], len(names))
        or yv.shape != (xv.shape[0], len(names))
    ):
        raise InputError(
            f"labels must be (N, {len(names)}) for {len(names)} attribute names; got "
            f"{tuple(yt.shape)} (train) and {tuple(yv.shape)} (val) for {xt.shape[0]} and "
            f"{xv.shape[0]} latents"
        )
    unknown = [r for r in required if r not in names]
    if unknown:
        raise InputError(
            f"unknown attribute '{unknown[0]}'; attributes are the CelebA names, e.g. "
            "Smiling, Eyeglasses, Wearing_Hat"
        )
    skipped: dict[str, str] = {}
    keep = []
    for a, name in enumerate(names):
        n_pos, n_neg = int(yt[:, a].sum()), int((~yt[:, a]).sum())
        v_pos, v_neg = int(yv[:, a].sum()), int((~yv[:, a]).sum())
        if min(n_pos, n_neg) < min_positives or min(v_pos, v_neg) < 1:
            skipped[name] = (
                f"too few positives or negatives: {n_pos}/{n_neg} in the training split "
                f"(need {min_positives} of each), {v_pos}/{v_neg} in the validation split"
            )
        else:
            keep.append(a)
    missing = [r for r in required if r in skipped]
    if missing:
        raise InputError(f"attribute '{missing[0]}' has {skipped[missing[0]]}")
    directions: list[Direction] = []
    if keep:
        mean, std = standardiser(xt)
        zt, zv = (xt - mean) / std, (xv - mean) / std
        y = yt[:, keep].double()
        pos = y.sum(0)
        balance = torch.where(y > 0, 0.5 / pos, 0.5 / (y.shape[0] - pos))  # (N, A')
        beta, bias = fit_logistic(zt, y, l2, steps, sample_weights=balance)
        logits_val = zv @ beta + bias  # (Nv, A')
        auroc = auroc_matrix(logits_val, yv[:, keep]).diagonal()
        for j, a in enumerate(keep):
            name = names[a]
            accuracy, balanced = _best_threshold_accuracy(logits_val[:, j], yv[:, a])
            directions.append(
                make_direction(
                    name,
                    beta[:, j] / std,
                    "attribute",
                    mu=xt,
                    source=(
                        f"class-balanced logistic probe on standardised mu (L2 {l2:g}), fit on "
                        f"{xt.shape[0]} training images, scored on {xv.shape[0]} validation images"
                    ),
                    parts=tuple(parts.get(name, ())),
                    scores={
                        "auroc": float(auroc[j]),
                        "accuracy": accuracy,
                        "balanced_accuracy": balanced,
                        "n_pos": int(yt[:, a].sum()),
                        "n_train": int(xt.shape[0]),
                        "n_pos_val": int(yv[:, a].sum()),
                        "n_val": int(xv.shape[0]),
                    },
                )
            )
    for name, why in skipped.items():
        log.info("no direction for %s: %s", name, why)
    return DirectionSet(directions, xt.shape[1], {"finder": "attribute"}, skipped)


def factor_directions(
    mu_train: Tensor | np.ndarray,
    factors_train: Tensor | np.ndarray,
    mu_val: Tensor | np.ndarray,
    factors_val: Tensor | np.ndarray,
    names: Sequence[str],
    parts: Mapping[str, Sequence[str]] | None = None,
    l2: float = 1e-2,
) -> DirectionSet:
    """One direction per known continuous factor: ridge regression of the factor on mu.

    Closed-form ridge regression of each (centred) factor on standardised mu
    ((Z^T Z / N + l2 I) beta = Z^T f / N), mapped back to mu space (w = beta / s) and
    normalised; ``r2`` on the validation rows, ``corr`` (Pearson of mu . w with the factor).

    Args:
        mu_train, mu_val: (N, K). factors_train, factors_val: (N, F).
        names: the F factor names.
        parts: factor -> part names (default :func:`factor_parts` for the synthetic faces).
        l2: ridge penalty on standardised coefficients.
    """
    xt, xv = _as_matrix(mu_train, "mu_train"), _as_matrix(mu_val, "mu_val")
    ft, fv = _as_matrix(factors_train, "factors_train"), _as_matrix(factors_val, "factors_val")
    if ft.shape != (xt.shape[0], len(names)) or fv.shape != (xv.shape[0], len(names)):
        raise InputError(f"factors must be (N, {len(names)}) for {len(names)} factor names")
    table = factor_parts() if parts is None else dict(parts)
    mean, std = standardiser(xt)
    zt, zv = (xt - mean) / std, (xv - mean) / std
    f_mean = ft.mean(0)
    K = zt.shape[1]
    gram = zt.T @ zt / zt.shape[0] + l2 * torch.eye(K, dtype=zt.dtype)
    beta = torch.linalg.solve(gram, zt.T @ (ft - f_mean) / zt.shape[0])  # (K, F)
    predicted = zv @ beta + f_mean
    residual = ((fv - predicted) ** 2).sum(0)
    total = ((fv - fv.mean(0)) ** 2).sum(0)
    directions = []
    skipped = {}
    for j, name in enumerate(names):
        if float(ft[:, j].std()) == 0.0 or float(beta[:, j].norm()) == 0.0:
            skipped[name] = "the factor is constant in the training split"
            continue
        w = beta[:, j] / std
        projection = xv @ (w / w.norm())
        corr = float(torch.corrcoef(torch.stack([projection, fv[:, j]]))[0, 1])
        directions.append(
            make_direction(
                name,
                w,
                "factor",
                mu=xt,
                source=(
                    f"ridge regression of the factor on standardised mu (L2 {l2:g}), fit on "
                    f"{xt.shape[0]} training images, scored on {xv.shape[0]} validation images"
                ),
                parts=tuple(table.get(name, ())),
                scores={
                    "r2": float(1 - residual[j] / total[j])
                    if float(total[j]) > 0
                    else float("nan"),
                    "corr": corr,
                    "n_train": int(xt.shape[0]),
                    "n_val": int(xv.shape[0]),
                },
            )
        )
    return DirectionSet(directions, K, {"finder": "factor"}, skipped)


def _sign_fixed(vectors: Tensor) -> Tensor:
    """Each row's sign chosen so its largest-magnitude entry is positive (a fixed convention
    for eigenvectors, whose sign is arbitrary)."""
    index = vectors.abs().argmax(dim=1, keepdim=True)
    signs = torch.sign(torch.gather(vectors, 1, index)).clamp_min(0) * 2 - 1
    return vectors * signs


def _top_eigen(matrix: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k largest eigenvalues (k,) and eigenvectors (k, K) of a symmetric matrix."""
    values, vectors = torch.linalg.eigh(matrix.double())
    order = values.argsort(descending=True)[:k]
    return values[order], _sign_fixed(vectors[:, order].T.contiguous())


def _check_k(k: int, K: int) -> int:
    if k < 1:
        raise InputError(f"the number of directions must be >= 1, got {k}")
    return min(k, K)


def _eigen_directions(
    matrix: Tensor, k: int, kind: str, source: str, mu: Tensor | None
) -> DirectionSet:
    """The top ``k`` eigenvectors of a symmetric (K, K) matrix as directions ``{kind}_{i}``.

    ``explained_variance`` is each eigenvalue's share of the trace; ``source`` is formatted
    with the index ``i``; ``mu`` (N, K), when given, sets each direction's scale and pattern.
    """
    k = _check_k(k, matrix.shape[0])
    values, vectors = _top_eigen(matrix, k)
    total = float(matrix.diagonal().sum())
    directions = [
        make_direction(
            f"{kind}_{i}",
            vectors[i],
            kind,
            mu=mu,
            source=source.format(i=i),
            scores={"explained_variance": float(values[i]) / total if total > 0 else 0.0},
        )
        for i in range(k)
    ]
    return DirectionSet(directions, matrix.shape[0], {"finder": kind})


def pca_directions(mu: Tensor | np.ndarray, k: int = 10) -> DirectionSet:
    """Principal components of mu over the data (GANSpace, Härkönen et al. 2020).

    The top ``k`` eigenvectors of the covariance of mu (N, K); ``explained_variance`` is each
    component's share of the total variance, ``scale`` its standard deviation. Signs follow
    :func:`_sign_fixed` (largest entry positive).
    """
    x = _as_matrix(mu, "mu")
    centred = x - x.mean(0)
    cov = centred.T @ centred / (x.shape[0] - 1)
    source = f"principal component {{i}} of mu over {x.shape[0]} images (GANSpace)"
    return _eigen_directions(cov, k, "pca", source, x)


def first_linear_weight(model: nn.Module, latent_dim: int) -> Tensor | None:
    """The weight (D, K) of the decoder's first linear layer that reads z, or None.

    Found by running ``model.decode`` once and watching every ``nn.Linear``: the first one
    whose input's first K columns are the latent itself. Its columns past K (a CVAE's
    condition) are dropped. None when the decoder starts otherwise (e.g. a convolution on a
    spatial latent).
    """
    generator = torch.Generator().manual_seed(0)
    param = next(model.parameters())
    z = torch.randn(2, latent_dim, generator=generator).to(param)
    cond_dim = int(getattr(model, "cond_dim", 0) or 0)
    cond = torch.zeros(2, cond_dim).to(param) if cond_dim else None
    found: list[nn.Linear] = []

    def watch(module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0] if args else None
        if (
            not found
            and isinstance(x, Tensor)
            and x.dim() == 2
            and x.shape[1] >= latent_dim
            and torch.equal(x[:, :latent_dim], z)
        ):
            found.append(module)  # type: ignore[arg-type]

    handles = [
        m.register_forward_pre_hook(watch) for m in model.modules() if isinstance(m, nn.Linear)
    ]
    try:
        with torch.no_grad():
            model.decode(z, cond)  # type: ignore[operator]
    finally:
        for h in handles:
            h.remove()
    if not found:
        return None
    return found[0].weight.detach()[:, :latent_dim].double().cpu()


def sefa_directions(weight: Tensor, k: int = 10, mu: Tensor | None = None) -> DirectionSet:
    """Closed-form factorisation of the decoder's first linear layer (SeFa, Shen & Zhou 2021).

    The directions n that the first layer y = W z amplifies most, argmax |W n|^2 with |n| = 1:
    the top ``k`` eigenvectors of W^T W. ``explained_variance`` is each eigenvalue's share
    of the trace (how much of the layer's energy the direction carries).

    Args:
        weight: W (D, K) (:func:`first_linear_weight`).
        k: how many directions.
        mu: (N, K) latents of the data, for each direction's ``scale``; else scale 1.
    """
    W = torch.as_tensor(weight).double()
    if W.dim() != 2:
        raise InputError(f"SeFa needs a weight matrix (D, K); got {tuple(W.shape)}")
    x = None if mu is None else _as_matrix(mu, "mu")
    source = "eigenvector {i} of W^T W of the decoder's first linear layer (SeFa)"
    return _eigen_directions(W.T @ W, k, "sefa", source, x)


def jacobian_directions(
    model: nn.Module, mu: Tensor, cond: Tensor | None = None, k: int = 10
) -> DirectionSet:
    """Top right-singular vectors of the decoder Jacobian averaged over images.

    The eigenvectors of mean_n J_n^T J_n (:func:`latentcam.explain.decoder.decoder_gram`,
    forward-mode AD): the latent directions along which the decoded images change most, on
    average over these latents. For a linear first layer followed by a near-linear decoder
    they match SeFa's; unlike SeFa they need no linear layer.

    Args:
        model: a latentcam model (``decode``).
        mu: (N, K) latents (keep N small: 8-32; each image costs K Jacobian columns).
        cond: (N, A) CVAE condition or None.
        k: how many directions.
    """

    gram = decoder_gram(model, mu, cond)  # type: ignore[arg-type]
    x = _as_matrix(mu, "mu")
    source = f"eigenvector {{i}} of the decoder Jacobian's J^T J averaged over {x.shape[0]} images"
    return _eigen_directions(gram, k, "jacobian", source, x)


def mean_difference(
    mu_with: Tensor | np.ndarray,
    mu_without: Tensor | np.ndarray,
    name: str = "concept",
    parts: Sequence[str] = (),
) -> Direction:
    """The concept direction mean(mu | with) - mean(mu | without), normalised (TCAV's
    simplest concept vector, Kim et al. 2018).

    Scores: ``auroc`` of mu . w separating the two sets (in-sample), ``n_with``,
    ``n_without``.

    Raises:
        InputError: a set with no image, or two sets with the same mean.
    """
    a = torch.as_tensor(np.asarray(mu_with)).double()
    b = torch.as_tensor(np.asarray(mu_without)).double()
    if a.dim() != 2 or b.dim() != 2 or a.shape[0] == 0 or b.shape[0] == 0:
        raise InputError(
            f"concept '{name}' needs images with and without it; got {a.shape[0] if a.dim() == 2 else 0} "
            f"with and {b.shape[0] if b.dim() == 2 else 0} without"
        )
    if a.shape[1] != b.shape[1]:
        raise InputError("the two sets of latents have different widths")
    w = a.mean(0) - b.mean(0)
    if float(w.norm()) == 0.0:
        raise InputError(f"concept '{name}': the two sets have the same mean latent")
    both = torch.cat([a, b])
    labels = torch.cat([torch.ones(a.shape[0]), torch.zeros(b.shape[0])]).bool()
    auroc = float(auroc_matrix((both @ w)[:, None], labels[:, None])[0, 0])
    return make_direction(
        name,
        w,
        "mean_difference",
        mu=both,
        source=f"mean of mu over {a.shape[0]} images with minus {b.shape[0]} without (TCAV)",
        parts=tuple(parts),
        scores={"auroc": auroc, "n_with": int(a.shape[0]), "n_without": int(b.shape[0])},
    )


def unit_direction(
    unit: int, latent_dim: int, sign: int = 1, mu: Tensor | None = None, name: str = ""
) -> Direction:
    """Latent unit ``unit`` as the direction sign * e_k (for scoring it beside directions)."""
    if not 0 <= unit < latent_dim:
        raise InputError(f"unit {unit} is out of range 0..{latent_dim - 1}")
    vector = torch.zeros(latent_dim)
    vector[unit] = 1.0 if sign >= 0 else -1.0
    return make_direction(
        name or f"unit_{unit}",
        vector,
        "unit",
        mu=None if mu is None else _as_matrix(mu, "mu"),
        source=f"latent unit {unit}" + (" (negated)" if sign < 0 else ""),
        along_data=False,  # a unit moves alone, as in the paper's traversals
    )


def random_directions(latent_dim: int, count: int = 8, seed: int = 0) -> DirectionSet:
    """``count`` directions drawn uniformly on the unit sphere of mu space (seeded): the null
    baseline of a direction's scores. A heatmap that lands on a part no more often than the
    maps of random directions do says nothing about the concept."""
    if count < 1:
        raise InputError(f"the number of random directions must be >= 1, got {count}")
    vectors = torch.randn(count, latent_dim, generator=torch.Generator().manual_seed(seed))
    return DirectionSet(
        [
            make_direction(
                f"random_{i}", vectors[i], "random", source=f"random, seed {seed}", along_data=False
            )
            for i in range(count)
        ],
        latent_dim,
    )


def best_units(
    mu: Tensor | np.ndarray, labels: Tensor | np.ndarray
) -> tuple[list[int], list[int], Tensor]:
    """Per attribute (column of labels), the single unit with the highest AUROC in its better
    direction, that direction's sign, and the AUROC (A,): the best single-unit handle.

    The same rule as ``probe_units(method="auroc")`` uses for ``ranking.attribute_auroc``.
    """
    x = _as_matrix(mu, "mu")
    positives = torch.as_tensor(np.asarray(labels)).double() > 0
    auc = auroc_matrix(x, positives)  # (A, K)
    better = torch.maximum(auc, 1.0 - auc).nan_to_num(-1.0)
    best = better.argmax(dim=1)
    chosen = torch.gather(auc, 1, best[:, None])[:, 0]
    signs = [1 if float(a) >= 0.5 else -1 for a in chosen]
    return best.tolist(), signs, torch.maximum(chosen, 1.0 - chosen)


def pearson_matrix(x: Tensor, y: Tensor) -> Tensor:
    """Pearson r of every column of x (N, P) with every column of y (N, Q): float64 (P, Q);
    0 where a column is constant."""
    xc = x.double() - x.double().mean(0)
    yc = y.double() - y.double().mean(0)
    denom = xc.norm(dim=0)[:, None] * yc.norm(dim=0)[None, :]
    return torch.where(denom > 0, (xc.T @ yc) / denom, torch.zeros_like(denom))


def correlations(
    directions: DirectionSet,
    mu: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    label_names: Sequence[str],
    top: int = 3,
) -> dict[str, list[tuple[str, float]]]:
    """Per direction, the ``top`` labels (attributes or factors) mu . w correlates with most:
    (name, Pearson r) sorted by |r| (point-biserial r for binary labels)."""
    x = _as_matrix(mu, "mu")
    y = torch.as_tensor(np.asarray(labels)).double()
    if y.dim() != 2 or y.shape != (x.shape[0], len(label_names)):
        raise InputError(f"labels must be (N, {len(label_names)}) for the {x.shape[0]} latents")
    r = pearson_matrix(x @ directions.vectors.double().T, y)  # (T, A)
    out = {}
    for t, d in enumerate(directions):
        order = r[t].abs().argsort(descending=True)[:top]
        out[d.name] = [(label_names[int(i)], float(r[t, i])) for i in order]
    return out


def oriented(
    directions: DirectionSet, correlated: Mapping[str, list[tuple[str, float]]]
) -> DirectionSet:
    """Unsupervised directions flipped so that each one's top correlate has r > 0.

    An eigenvector's sign is arbitrary, but a ReLU-ed heatmap of mu . w shows evidence for
    the + side only: orienting +w towards the attribute it tracks most makes the map show
    where the encoder looks for that attribute. The flip is recorded in ``source``.
    """
    flipped = []
    for d in directions:
        top = correlated.get(d.name, [])
        if top and top[0][1] < 0:
            d = replace(
                d,
                vector=-d.vector,
                pattern=None if d.pattern is None else -d.pattern,
                source=d.source + f"; sign set so +w tracks {top[0][0]}",
            )
        flipped.append(d)
    return DirectionSet(
        flipped, directions.latent_dim, dict(directions.meta), dict(directions.skipped)
    )


__all__ = [
    "ATTRIBUTE_PARTS",
    "FORMAT",
    "KINDS",
    "Direction",
    "DirectionSet",
    "attribute_directions",
    "best_units",
    "correlations",
    "factor_directions",
    "factor_parts",
    "first_linear_weight",
    "jacobian_directions",
    "make_direction",
    "mean_difference",
    "oriented",
    "part_ids",
    "pca_directions",
    "pearson_matrix",
    "read_parts_table",
    "random_directions",
    "read_vectors",
    "sefa_directions",
    "standardiser",
    "unit_direction",
]
