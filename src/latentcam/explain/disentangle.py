"""Which latent units carry which factor or attribute: MIG, DCI and linear probes.

Answers the paper's open question (Sec. 5.4, "a metric to evaluate set of most significant
latent nodes") on data whose factors or attributes are known (the synthetic faces, CelebA
attributes). Definitions follow disentanglement_lib (Locatello et al. 2019, "Challenging
common assumptions in the unsupervised learning of disentangled representations"):

- :func:`mig`: Mutual Information Gap (Chen et al. 2018, "Isolating sources of
  disentanglement in VAEs").
- :func:`dci`: Disentanglement, Completeness, Informativeness (Eastwood & Williams 2018).
- :func:`probe_units` / :func:`top_units_per_attribute`: which units predict a binary
  attribute (single-unit AUROC, or an L2-regularised logistic probe).

Everything runs on the CPU in float64 (these are statistics over N codes, not images);
inputs may be tensors or arrays, results are CPU tensors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from latentcam.errors import InputError
from latentcam.explain.metrics import average_ranks

log = logging.getLogger(__name__)

Tensor = torch.Tensor


def _as_2d(values: Tensor | np.ndarray, name: str) -> Tensor:
    arr = torch.as_tensor(
        np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values)
    )
    if arr.dim() == 1:
        arr = arr.unsqueeze(1)
    if arr.dim() != 2 or arr.shape[0] < 2:
        raise InputError(f"{name} must be a (N, D) array with N >= 2 rows; got {tuple(arr.shape)}")
    arr = arr.to(torch.float64)
    if not bool(torch.isfinite(arr).all()):
        raise InputError(f"{name} holds NaN or Inf values")
    return arr


def _check_rows(a: Tensor, b: Tensor, names: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise InputError(
            f"{names} must have the same number of rows, got {a.shape[0]} and {b.shape[0]}"
        )


# ----------------------------------------------------------------------------- discretisation


def discretise(values: Tensor | np.ndarray, bins: int = 20) -> Tensor:
    """Equal-width histogram bins per column (disentanglement_lib's ``make_discretizer``).

    Each column is cut into ``bins`` equal bins between its min and max; constant columns
    map to bin 0.

    Args:
        values: (N, D) float.
        bins: number of bins (20 in Locatello et al. 2019).

    Returns:
        long (N, D) in [0, bins).
    """
    v = _as_2d(values, "values")
    if bins < 2:
        raise InputError(f"bins must be >= 2, got {bins}")
    low = v.min(0).values
    width = v.max(0).values - low
    safe = torch.where(width > 0, width, torch.ones_like(width))
    codes = ((v - low) / safe * bins).floor().long().clamp(0, bins - 1)
    return torch.where(width > 0, codes, torch.zeros_like(codes))


def discretise_factors(factors: Tensor | np.ndarray, bins: int = 20) -> Tensor:
    """Factor values as discrete labels: kept as they are when a factor takes at most
    ``bins`` distinct values (binary or categorical factors), else equal-width bins.

    Args:
        factors: (N, F) float.

    Returns:
        long (N, F), labels 0..L_f-1 per column.
    """
    f = _as_2d(factors, "factors")
    columns = []
    for j in range(f.shape[1]):
        distinct, labels = torch.unique(f[:, j], return_inverse=True)
        if distinct.numel() <= bins:
            columns.append(labels)
        else:
            columns.append(discretise(f[:, j : j + 1], bins)[:, 0])
    return torch.stack(columns, dim=1)


def _entropy(labels: Tensor) -> Tensor:
    """Entropy in nats of each column of integer labels (N, D) -> (D,)."""
    out = []
    for j in range(labels.shape[1]):
        p = torch.bincount(labels[:, j]).double()
        p = p[p > 0] / labels.shape[0]
        out.append(-(p * p.log()).sum())
    return torch.stack(out)


def _mutual_info(codes: Tensor, labels: Tensor) -> Tensor:
    """Mutual information in nats between every code column and every label column.

    Args:
        codes: long (N, K) in [0, Bc); labels: long (N, F) in [0, L_f).

    Returns:
        float64 (K, F) (sklearn's ``mutual_info_score`` for each pair).
    """
    N, K = codes.shape
    n_codes = int(codes.max()) + 1
    offsets = torch.arange(K).unsqueeze(0)
    p_code = torch.bincount((offsets * n_codes + codes).flatten(), minlength=K * n_codes)
    p_code = p_code.reshape(K, n_codes, 1).double() / N
    mi = torch.zeros(K, labels.shape[1], dtype=torch.float64)
    for j in range(labels.shape[1]):  # one joint histogram per factor, all K units at once
        y = labels[:, j]
        n_y = int(y.max()) + 1
        cell = (offsets * n_codes + codes) * n_y + y.unsqueeze(1)  # (N, K)
        joint = torch.bincount(cell.flatten(), minlength=K * n_codes * n_y)
        joint = joint.reshape(K, n_codes, n_y).double() / N
        p_y = joint.sum(1, keepdim=True)  # (K, 1, n_y), the same for every k
        ratio = joint / (p_code * p_y)
        terms = torch.where(joint > 0, joint * ratio.log(), torch.zeros_like(joint))
        mi[:, j] = terms.sum(dim=(1, 2)).clamp(min=0.0)
    return mi


def mutual_info_matrix(
    mu: Tensor | np.ndarray, factors: Tensor | np.ndarray, bins: int = 20
) -> Tensor:
    """Mutual information (nats) between each discretised unit and each discretised factor.

    Units: :func:`discretise` into ``bins`` equal-width bins; factors:
    :func:`discretise_factors`. Range [0, min(H(unit), H(factor))]. Plug-in estimate, biased
    upwards by about (bins - 1)(L - 1) / (2N) nats for independent variables.

    Args:
        mu: (N, K) posterior means. factors: (N, F) known factor values.

    Returns:
        float64 (K, F).
    """
    mu2, f2 = _as_2d(mu, "mu"), _as_2d(factors, "factors")
    _check_rows(mu2, f2, "mu and factors")
    return _mutual_info(discretise(mu2, bins), discretise_factors(f2, bins))


class MIGResult(NamedTuple):
    """Mutual Information Gap.

    Attributes:
        score: mean over factors of the normalised gap, in [0, 1]; 1 = each factor is
            captured by one unit alone.
        per_factor: (F,) (MI of the best unit - MI of the second) / H(factor); NaN for
            constant factors (left out of the mean).
        mutual_info: (K, F) in nats.
        entropy: (F,) factor entropies in nats.
    """

    score: float
    per_factor: Tensor
    mutual_info: Tensor
    entropy: Tensor


def mig(mu: Tensor | np.ndarray, factors: Tensor | np.ndarray, bins: int = 20) -> MIGResult:
    """Mutual Information Gap (Chen et al. 2018), as disentanglement_lib computes it.

    Units are discretised into ``bins`` equal-width bins (20 in Locatello et al. 2019);
    continuous factors likewise (discrete factors are used as they are). For each factor,
    the gap between the largest and second largest MI over units, divided by the factor's
    entropy; the score is the mean over factors. Range [0, 1].

    Args:
        mu: (N, K) posterior means (K >= 1). factors: (N, F) known factor values.
    """
    mu2, f2 = _as_2d(mu, "mu"), _as_2d(factors, "factors")
    _check_rows(mu2, f2, "mu and factors")
    labels = discretise_factors(f2, bins)
    mi = _mutual_info(discretise(mu2, bins), labels)
    entropy = _entropy(labels)
    top = mi.sort(dim=0, descending=True).values
    second = top[1] if top.shape[0] > 1 else torch.zeros_like(top[0])
    per_factor = torch.where(
        entropy > 0, (top[0] - second) / entropy, torch.full_like(entropy, float("nan"))
    )
    if bool(per_factor.isnan().any()):
        log.warning("mig: %d constant factor(s) left out", int(per_factor.isnan().sum()))
    valid = ~per_factor.isnan()
    score = float(per_factor[valid].mean()) if bool(valid.any()) else float("nan")
    return MIGResult(score=score, per_factor=per_factor, mutual_info=mi, entropy=entropy)


class BestUnits(NamedTuple):
    """The unit that shares the most information with each factor.

    Attributes:
        unit: long (F,) unit index.
        mutual_info: (F,) that unit's MI with the factor, in nats.
        normalised: (F,) the same divided by the factor's entropy, in [0, 1] (NaN for
            constant factors).
    """

    unit: Tensor
    mutual_info: Tensor
    normalised: Tensor


def best_unit_per_factor(
    mu: Tensor | np.ndarray, factors: Tensor | np.ndarray, bins: int = 20
) -> BestUnits:
    """Per factor, the unit with the highest mutual information (as in :func:`mig`)."""
    mu2, f2 = _as_2d(mu, "mu"), _as_2d(factors, "factors")
    _check_rows(mu2, f2, "mu and factors")
    labels = discretise_factors(f2, bins)
    mi = _mutual_info(discretise(mu2, bins), labels)
    entropy = _entropy(labels)
    best_mi, unit = mi.max(dim=0)
    norm = torch.where(entropy > 0, best_mi / entropy, torch.full_like(entropy, float("nan")))
    return BestUnits(unit=unit, mutual_info=best_mi, normalised=norm)


# ----------------------------------------------------------------------------- DCI


class DCIResult(NamedTuple):
    """Disentanglement, Completeness, Informativeness (Eastwood & Williams 2018).

    Attributes:
        disentanglement: in [0, 1]; 1 = every unit matters for at most one factor
            (weighted by how much each unit matters overall).
        completeness: in [0, 1]; 1 = every factor is captured by a single unit.
        informativeness_train, informativeness_test: how well the regressors predict the
            factors from mu: mean R^2 over factors (``method="ridge"``, <= 1, 1 = perfect)
            or mean accuracy (``method="gbt"``, in [0, 1]).
        importance: (K, F) the importance matrix R (non-negative).
        method: "ridge" or "gbt": which regressor made the importance matrix.
    """

    disentanglement: float
    completeness: float
    informativeness_train: float
    informativeness_test: float
    importance: Tensor
    method: str


def _sklearn_available() -> bool:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


def _ridge_importance(
    mu_train: Tensor, f_train: Tensor, mu_test: Tensor, f_test: Tensor, alpha: float
) -> tuple[Tensor, float, float]:
    """|W| of a ridge regression from standardised mu to standardised factors, and R^2."""
    mean, std = mu_train.mean(0), mu_train.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    f_mean, f_std = f_train.mean(0), f_train.std(0)
    f_std = torch.where(f_std > 0, f_std, torch.ones_like(f_std))
    x_tr, x_te = (mu_train - mean) / std, (mu_test - mean) / std
    y_tr, y_te = (f_train - f_mean) / f_std, (f_test - f_mean) / f_std
    N, K = x_tr.shape
    gram = x_tr.T @ x_tr + alpha * N * torch.eye(K, dtype=x_tr.dtype)
    weights = torch.linalg.solve(gram, x_tr.T @ y_tr)  # (K, F)

    def r2(x: Tensor, y: Tensor) -> float:
        resid = (y - x @ weights).square().sum(0)
        total = (y - y.mean(0)).square().sum(0)
        keep = total > 0
        return float((1.0 - resid[keep] / total[keep]).mean()) if bool(keep.any()) else float("nan")

    return weights.abs(), r2(x_tr, y_tr), r2(x_te, y_te)


def _gbt_importance(
    mu_train: Tensor,
    f_train: Tensor,
    mu_test: Tensor,
    f_test: Tensor,
    bins: int,
    progress: bool = False,
) -> tuple[Tensor, float, float]:  # pragma: no cover - needs scikit-learn
    """disentanglement_lib's ``compute_importance_gbt``: one GradientBoostingClassifier per
    discretised factor; importance = feature_importances_, informativeness = accuracy."""
    from sklearn.ensemble import GradientBoostingClassifier
    from tqdm.auto import tqdm

    both = discretise_factors(torch.cat([f_train, f_test]), bins)
    y_tr, y_te = both[: f_train.shape[0]].numpy(), both[f_train.shape[0] :].numpy()
    x_tr, x_te = mu_train.numpy(), mu_test.numpy()
    importance = np.zeros((x_tr.shape[1], y_tr.shape[1]))
    acc_tr, acc_te = [], []
    for j in tqdm(range(y_tr.shape[1]), desc="DCI factors", disable=not progress, leave=False):
        clf = GradientBoostingClassifier(random_state=0)
        clf.fit(x_tr, y_tr[:, j])
        importance[:, j] = np.abs(clf.feature_importances_)
        acc_tr.append(float(np.mean(clf.predict(x_tr) == y_tr[:, j])))
        acc_te.append(float(np.mean(clf.predict(x_te) == y_te[:, j])))
    return torch.from_numpy(importance), float(np.mean(acc_tr)), float(np.mean(acc_te))


def _weighted_one_minus_entropy(importance: Tensor, dim: int) -> float:
    """sum_i w_i (1 - H_base(P_i)) with P_i the rows (dim=1) or columns (dim=0) of R.

    disentanglement_lib's ``disentanglement`` (dim=1, base = #factors) and
    ``completeness`` (dim=0, base = #units), with its 1e-11 smoothing.
    """
    base = importance.shape[dim]
    p = importance + 1e-11
    p = p / p.sum(dim=dim, keepdim=True)
    per = 1.0 - (-(p * p.log()).sum(dim=dim) / math.log(base))
    total = importance.sum()
    weights = (
        importance.sum(dim=dim) / total
        if total > 0
        else torch.ones(per.shape[0], dtype=per.dtype) / per.shape[0]
    )
    return float((per * weights).sum())


def dci(
    mu_train: Tensor | np.ndarray,
    f_train: Tensor | np.ndarray,
    mu_test: Tensor | np.ndarray,
    f_test: Tensor | np.ndarray,
    method: str = "auto",
    alpha: float = 1e-3,
    bins: int = 20,
    progress: bool = False,
) -> DCIResult:
    """DCI scores of Eastwood & Williams 2018, as disentanglement_lib computes them.

    An importance matrix R (K, F) says how much unit k matters for predicting factor f;
    disentanglement = importance-weighted mean over units of 1 - H_F(R_k. / sum R_k.),
    completeness = importance-weighted mean over factors of 1 - H_K(R_.f / sum R_.f),
    informativeness = how well the factors are predicted on the test split.

    Regressors (``method``):
      - "gbt": disentanglement_lib's gradient-boosted trees (one classifier per
        discretised factor, seeded; needs scikit-learn, which latentcam does not require;
        slow: minutes for a few hundred codes).
      - "ridge": an L2-regularised linear regression from standardised mu to standardised
        factors in closed form; R = |W| (Eastwood & Williams 2018 also used the weights of
        a linear (Lasso) regressor); informativeness = R^2.
      - "auto" (the default): "ridge". It used to mean "gbt" whenever scikit-learn could be
        imported, so the same run's DCI changed with what else was installed (pythae, for
        one, installs scikit-learn); ask for "gbt" by name. The method used is in the result.

    Args:
        mu_train, mu_test: (N, K) posterior means, K >= 2.
        f_train, f_test: (N, F) factor values, F >= 2.
        alpha: ridge penalty per sample (on standardised data).
        bins: factor discretisation for "gbt".
        progress: show a progress bar over the factors ("gbt": one classifier each, slow).
    """
    m_tr, m_te = _as_2d(mu_train, "mu_train"), _as_2d(mu_test, "mu_test")
    y_tr, y_te = _as_2d(f_train, "f_train"), _as_2d(f_test, "f_test")
    _check_rows(m_tr, y_tr, "mu_train and f_train")
    _check_rows(m_te, y_te, "mu_test and f_test")
    if m_tr.shape[1] != m_te.shape[1] or y_tr.shape[1] != y_te.shape[1]:
        raise InputError("train and test splits must have the same units and factors")
    if m_tr.shape[1] < 2 or y_tr.shape[1] < 2:
        raise InputError(
            f"dci needs at least 2 units and 2 factors (got K={m_tr.shape[1]}, F={y_tr.shape[1]})"
        )
    if method == "auto":
        method = "ridge"
    if method == "ridge":
        importance, info_tr, info_te = _ridge_importance(m_tr, y_tr, m_te, y_te, alpha)
    elif method == "gbt":
        if not _sklearn_available():
            raise InputError(
                "dci(method='gbt') needs scikit-learn; install it or use method='ridge'"
            )
        importance, info_tr, info_te = _gbt_importance(m_tr, y_tr, m_te, y_te, bins, progress)
    else:
        raise InputError(f"unknown dci method '{method}'; choose auto, ridge or gbt")
    return DCIResult(
        disentanglement=_weighted_one_minus_entropy(importance, dim=1),
        completeness=_weighted_one_minus_entropy(importance, dim=0),
        informativeness_train=info_tr,
        informativeness_test=info_te,
        importance=importance,
        method=method,
    )


# ----------------------------------------------------------------------------- probes


class ProbeResult(NamedTuple):
    """Which units predict each binary attribute.

    Attributes:
        scores: (A, K), higher = unit k more predictive of attribute a, measured on the
            training split. ``method="auroc"``: the unit's AUROC in its better direction,
            max(AUROC, 1 - AUROC), in [0.5, 1] (0.5 = chance). ``method="logistic"``: the
            absolute coefficient of the unit in the attribute's logistic probe on
            standardised mu (>= 0). NaN rows for attributes with one class only.
        heldout_auroc: (A,) AUROC on the held-out split: of the best single unit chosen on
            the training split ("auroc") or of the whole probe ("logistic"); in [0, 1].
        method: "auroc" or "logistic".
    """

    scores: Tensor
    heldout_auroc: Tensor
    method: str


def auroc_matrix(values: Tensor, positives: Tensor) -> Tensor:
    """AUROC of every column of ``values`` as a score for every column of ``positives``.

    The Mann-Whitney U statistic with average ranks for ties (Hanley & McNeil 1982): the
    probability that a positive scores higher than a negative. NaN where a column has one
    class only.

    Args:
        values: float (N, K). positives: bool (N, A).

    Returns:
        float64 (A, K) in [0, 1].
    """
    ranks = average_ranks(values.T.contiguous()).T  # (N, K), ranks within each unit
    pos = positives.to(torch.float64)
    n_pos = pos.sum(0)  # (A,)
    n_neg = pos.shape[0] - n_pos
    rank_sum = pos.T @ ranks  # (A, K)
    auc = (rank_sum - (n_pos * (n_pos + 1) / 2).unsqueeze(1)) / (n_pos * n_neg).unsqueeze(1)
    one_class = ((n_pos == 0) | (n_neg == 0)).unsqueeze(1)
    return torch.where(one_class, torch.full_like(auc, float("nan")), auc)


def _split(n: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(n * val_fraction)))
    if n - n_val < 2:
        raise InputError(f"too few samples ({n}) for a held-out split of {val_fraction}")
    return order[n_val:], order[:n_val]


def fit_logistic(
    x: Tensor, y: Tensor, l2: float, steps: int, sample_weights: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """L2-regularised logistic regressions (one per column of y) with L-BFGS; x standardised.

    ``sample_weights`` (N, A) weighs each sample's loss per column (class balancing); the
    loss is the weighted mean BCE per column plus ``l2 * |W|^2``.
    """
    K, A = x.shape[1], y.shape[1]
    weight_of = torch.ones_like(y) if sample_weights is None else sample_weights.to(y)
    weights = torch.zeros(K, A, dtype=x.dtype, requires_grad=True)
    bias = torch.zeros(A, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([weights, bias], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        logits = x @ weights + bias
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        loss = ((bce * weight_of).sum(0) / weight_of.sum(0)).sum()
        loss = loss + l2 * weights.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return weights.detach(), bias.detach()


def probe_units(
    mu: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    method: str = "auroc",
    val_fraction: float = 0.25,
    seed: int = 0,
    l2: float = 1e-3,
    steps: int = 200,
) -> ProbeResult:
    """Score every unit as a predictor of every binary attribute (a linear probe).

    ``method="auroc"`` (default): the single-unit AUROC (Mann-Whitney) of mu_k for
    attribute a, direction-free: max(AUROC, 1 - AUROC). It asks "which unit, alone, best
    separates smiling faces?" and needs no fitting. ``method="logistic"``: one
    L2-regularised logistic regression per attribute on standardised mu (L-BFGS, ``steps``
    iterations, CPU), score = |coefficient|; it asks which units a joint linear read-out
    uses. Both are measured on a seeded training split; ``heldout_auroc`` checks the
    read-out on the rest.

    Args:
        mu: (N, K) posterior means.
        labels: (N, A) binary attributes, {0, 1}, {-1, 1} (CelebA) or bool; > 0 = positive.
        method: "auroc" or "logistic".
        val_fraction: share of samples held out.
        seed: seed of the split.
        l2: logistic penalty on the weights (mean BCE + l2 * |W|^2).
        steps: L-BFGS iterations for "logistic".
    """
    x = _as_2d(mu, "mu")
    lab = _as_2d(labels, "labels")
    _check_rows(x, lab, "mu and labels")
    positives = lab > 0
    train, held = _split(x.shape[0], val_fraction, seed)
    if method == "auroc":
        train_auc = auroc_matrix(x[train], positives[train])  # (A, K)
        scores = torch.maximum(train_auc, 1.0 - train_auc)
        best = scores.nan_to_num(-1.0).argmax(dim=1)  # (A,)
        held_auc = auroc_matrix(x[held], positives[held])  # (A, K)
        chosen = torch.gather(held_auc, 1, best.unsqueeze(1)).squeeze(1)
        sign = torch.gather(train_auc, 1, best.unsqueeze(1)).squeeze(1) >= 0.5
        heldout = torch.where(sign, chosen, 1.0 - chosen)
    elif method == "logistic":
        mean, std = x[train].mean(0), x[train].std(0)
        std = torch.where(std > 0, std, torch.ones_like(std))
        z = (x - mean) / std
        y = positives.to(torch.float64)
        weights, bias = fit_logistic(z[train], y[train], l2, steps)
        scores = weights.abs().T.contiguous()  # (A, K)
        heldout = auroc_matrix(z[held] @ weights + bias, positives[held]).diagonal()
    else:
        raise InputError(f"unknown probe method '{method}'; choose auroc or logistic")
    n_pos = positives[train].sum(0)
    one_class = (n_pos == 0) | (n_pos == len(train))
    scores = torch.where(one_class.unsqueeze(1), torch.full_like(scores, float("nan")), scores)
    heldout = torch.where(one_class, torch.full_like(heldout, float("nan")), heldout)
    return ProbeResult(scores=scores, heldout_auroc=heldout, method=method)


def top_units_per_attribute(
    scores: Tensor, attribute_names: Sequence[str], k: int = 5
) -> dict[str, list[int]]:
    """The ``k`` best units of each attribute, best first (attributes with NaN scores get []).

    Args:
        scores: (A, K) from :func:`probe_units` (``.scores``).
        attribute_names: A names (e.g. ``classes.ATTRIBUTE_NAMES``).
        k: units per attribute.
    """
    scores = torch.as_tensor(scores)
    if scores.dim() != 2 or scores.shape[0] != len(attribute_names):
        raise InputError(
            f"scores {tuple(scores.shape)} must be (A, K) with A = {len(attribute_names)} "
            "attribute names"
        )
    top: dict[str, list[int]] = {}
    for name, row in zip(attribute_names, scores, strict=True):
        valid = ~row.isnan()
        order = torch.sort(row.nan_to_num(float("-inf")), descending=True, stable=True).indices
        top[name] = [int(i) for i in order[: min(k, int(valid.sum()))]]
    return top
