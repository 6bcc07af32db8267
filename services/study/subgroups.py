"""The subgroup trainer: learns the population mixture from profiles, publishes versions.

The pure core keeps each patient's
:class:`~streams.stratification.profile.BiomarkerProfile` and assigns the
patient to a cluster of whichever
:class:`~streams.stratification.snapshot.SubgroupSnapshot` it is given. This
module learns those snapshots:

* :func:`fit_subgroups` (offline): EM for a Gaussian mixture with diagonal
  covariance over standardised profile features, exact for missing features
  (each component's expected value and variance stand in for a missing one;
  Ghahramani & Jordan 1994), several seeded starts, the number of components
  chosen by BIC (Schwarz 1978) unless given;
* :class:`OnlineSubgroupTrainer` (online): stepwise EM (Cappé & Moulines
  2009), one profile at a time, from a fitted snapshot; publishes the next
  version with the same labels;
* :func:`match_labels`: a new version's components take the labels of the
  previous version's nearest components (the assignment with the smallest
  total distance between centres), so cluster ids stay stable over time.

Profiles come from patient states: replay the stored events (or rebuild the
states) and hand them to :func:`profile_vectors`.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> low = [{"crp_log": float(v), "sleep_duration": float(s)}
...        for v, s in zip(rng.normal(0.0, 0.4, 60), rng.normal(430, 30, 60))]
>>> high = [{"crp_log": float(v), "sleep_duration": float(s)}
...         for v, s in zip(rng.normal(1.7, 0.3, 30), rng.normal(430, 30, 30))]
>>> snap = fit_subgroups(low + high, k=2, seed=1)
>>> snap.labels, [round(w, 2) for w in snap.weights]
(('c1', 'c2'), [0.68, 0.32])
>>> snap.descriptions[1]
'32 % of patients: higher CRP (+1.3 SD)'
>>> len(fit_subgroups(low + high, seed=1).labels)  # k chosen by BIC
2
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from streams.stratification.config import StratificationConfig
from streams.stratification.profile import PROFILE_FEATURES, TRAIT_FEATURES, BiomarkerProfile
from streams.stratification.snapshot import SubgroupSnapshot, describe

#: Smallest variance of a component, in standard units (keeps EM off degenerate spikes).
VAR_FLOOR = 0.02
#: A feature enters the model when at least this share of profiles has it.
MIN_FEATURE_SHARE = 0.2


def profile_vectors(
    profiles: Mapping[str, BiomarkerProfile], config: StratificationConfig | None = None
) -> dict[str, dict[str, float]]:
    """Each patient's profile vector (features with enough data), keyed by pseudonym."""
    settings = config or StratificationConfig()
    return {patient: profiles[patient].vector(settings) for patient in sorted(profiles)}


@dataclass(frozen=True)
class MixtureFit:
    """A fitted mixture in standard units: weights (k), means and variances (k x d)."""

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    loglik: float
    n: int

    @property
    def bic(self) -> float:
        """Bayesian information criterion (lower is better; Schwarz 1978)."""
        k, d = self.means.shape
        parameters = (k - 1) + 2 * k * d
        return float(-2 * self.loglik + parameters * math.log(max(self.n, 2)))


def _log_densities(z: np.ndarray, seen: np.ndarray, fit: MixtureFit) -> np.ndarray:
    """log w_k + log N(z_i | component k) over the features present (n x k)."""
    zz = np.where(seen, z, 0.0)
    out = np.empty((z.shape[0], fit.means.shape[0]))
    for k in range(fit.means.shape[0]):
        var = fit.variances[k]
        terms = -0.5 * (np.log(2 * np.pi * var) + (zz - fit.means[k]) ** 2 / var)
        out[:, k] = math.log(fit.weights[k]) + np.where(seen, terms, 0.0).sum(axis=1)
    return out


def _responsibilities(log_dens: np.ndarray) -> tuple[np.ndarray, float]:
    top = log_dens.max(axis=1, keepdims=True)
    dens = np.exp(log_dens - top)
    total = dens.sum(axis=1, keepdims=True)
    loglik = float((np.log(total) + top).sum())
    return dens / total, loglik


def _m_step(z: np.ndarray, seen: np.ndarray, resp: np.ndarray, fit: MixtureFit) -> MixtureFit:
    n = z.shape[0]
    mass = resp.sum(axis=0) + 1e-12
    zz = np.where(seen, z, 0.0)
    means = np.empty_like(fit.means)
    variances = np.empty_like(fit.variances)
    for k in range(means.shape[0]):
        r = resp[:, k][:, None]
        old_mu, old_var = fit.means[k], fit.variances[k]
        filled = np.where(seen, zz, old_mu)
        mu = (r * filled).sum(axis=0) / mass[k]
        spread = np.where(seen, (zz - mu) ** 2, old_var + (old_mu - mu) ** 2)
        means[k] = mu
        variances[k] = np.maximum((r * spread).sum(axis=0) / mass[k], VAR_FLOOR)
    weights = np.maximum(mass / n, 1e-6)
    return MixtureFit(weights / weights.sum(), means, variances, fit.loglik, n)


def _initial(z: np.ndarray, seen: np.ndarray, k: int, rng: np.random.Generator) -> MixtureFit:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) on mean-imputed data."""
    zz = np.where(seen, z, 0.0)
    centres = [zz[int(rng.integers(len(zz)))]]
    for _ in range(1, k):
        d2 = np.min([((zz - c) ** 2).sum(axis=1) for c in centres], axis=0)
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(zz), 1 / len(zz))
        centres.append(zz[int(rng.choice(len(zz), p=p))])
    means = np.array(centres, dtype=float)
    variances = np.ones_like(means)
    return MixtureFit(np.full(k, 1.0 / k), means, variances, -math.inf, len(z))


def fit_mixture(
    z: np.ndarray, k: int, *, seed: int = 0, starts: int = 5, max_iter: int = 300, tol: float = 1e-7
) -> MixtureFit:
    """EM for a ``k``-component diagonal Gaussian mixture; NaN marks a missing feature."""
    if z.ndim != 2 or len(z) < k:
        raise ValueError(f"need a 2-d array with at least k={k} rows, got shape {z.shape}")
    seen = ~np.isnan(z)
    rng = np.random.default_rng(seed)
    best: MixtureFit | None = None
    for _ in range(starts if k > 1 else 1):
        fit = _initial(z, seen, k, rng)
        previous = -math.inf
        for _ in range(max_iter):
            resp, loglik = _responsibilities(_log_densities(z, seen, fit))
            fit = _m_step(z, seen, resp, fit)
            if loglik - previous < tol * max(1.0, abs(loglik)):
                break
            previous = loglik
        _, loglik = _responsibilities(_log_densities(z, seen, fit))
        fit = MixtureFit(fit.weights, fit.means, fit.variances, loglik, fit.n)
        if best is None or fit.loglik > best.loglik:
            best = fit
    assert best is not None
    return best


def _standardise(
    vectors: Sequence[Mapping[str, float]], features: Sequence[str] | None
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    if features is None:
        counts = {f: sum(1 for v in vectors if f in v) for f in TRAIT_FEATURES}
        features = [f for f in TRAIT_FEATURES if counts[f] >= MIN_FEATURE_SHARE * len(vectors)]
    raw = np.array([[v.get(f, np.nan) for f in features] for v in vectors], dtype=float)
    keep = [j for j in range(raw.shape[1]) if np.nanstd(raw[:, j]) > 1e-9]
    if not keep:
        raise ValueError(
            "no profile feature varies across the profiles given; accepted: profiles with "
            f"at least one of {', '.join(PROFILE_FEATURES)} present in >= "
            f"{MIN_FEATURE_SHARE:.0%} of them"
        )
    raw = raw[:, keep]
    names = [features[j] for j in keep]
    centre = np.nanmean(raw, axis=0)
    scale = np.nanstd(raw, axis=0)
    return names, centre, scale, (raw - centre) / scale


def match_labels(
    previous: SubgroupSnapshot | None,
    features: Sequence[str],
    centre: np.ndarray,
    scale: np.ndarray,
    means: np.ndarray,
) -> list[str]:
    """Labels for new components: the previous version's nearest ones, new labels for the rest.

    Distances are between component centres in the new standard units, over
    the features both versions share; the permutation with the smallest total
    distance wins (exhaustive up to 7 components, greedy beyond).
    """
    k = len(means)
    if previous is None:
        return [f"c{i + 1}" for i in range(k)]
    shared = [f for f in features if f in previous.features]
    cost = np.zeros((k, len(previous.labels)))
    for i in range(k):
        for j in range(len(previous.labels)):
            total = 0.0
            for f in shared:
                a = features.index(f)
                b = previous.features.index(f)
                old_raw = previous.centre[b] + previous.scale[b] * previous.means[j][b]
                new_raw = centre[a] + scale[a] * means[i][a]
                total += ((new_raw - old_raw) / scale[a]) ** 2
            cost[i, j] = math.sqrt(total)
    pairs: dict[int, int] = {}
    old = len(previous.labels)
    if max(k, old) <= 7:
        best_cost, best_pairs = math.inf, {}
        rows = list(range(k))
        for chosen in itertools.permutations(range(old), min(k, old)):
            for subset in itertools.combinations(rows, min(k, old)):
                c = sum(cost[i, j] for i, j in zip(subset, chosen, strict=True))
                if c < best_cost:
                    best_cost, best_pairs = c, dict(zip(subset, chosen, strict=True))
        pairs = best_pairs
    else:
        free_rows, free_cols = set(range(k)), set(range(old))
        for i, j in sorted(np.ndindex(cost.shape), key=lambda ij: cost[ij]):
            if i in free_rows and j in free_cols:
                pairs[i] = j
                free_rows.discard(i)
                free_cols.discard(j)
    numbers = [int(label[1:]) for label in previous.labels if label[1:].isdigit()]
    following = max(numbers, default=0) + 1
    labels = []
    for i in range(k):
        if i in pairs:
            labels.append(previous.labels[pairs[i]])
        else:
            labels.append(f"c{following}")
            following += 1
    return labels


def fit_subgroups(
    vectors: Iterable[Mapping[str, float]],
    *,
    k: int | None = None,
    max_k: int = 4,
    name: str = "profile_mixture",
    previous: SubgroupSnapshot | None = None,
    trained_until: datetime | None = None,
    features: Sequence[str] | None = None,
    min_features: int = 1,
    seed: int = 0,
) -> SubgroupSnapshot:
    """Fit the population mixture to profile vectors; the next version after ``previous``.

    Parameters
    ----------
    vectors
        One profile vector per patient (:func:`profile_vectors`).
    k
        Components; ``None``: the number in ``1..max_k`` with the lowest BIC.
    previous
        The version in force: the new one is numbered after it and keeps its
        labels for matching components (:func:`match_labels`).
    features
        Features to use; default: the trait features
        (:data:`~streams.stratification.profile.TRAIT_FEATURES`, not symptom
        severity, which follows episodes) present in >= 20 % of the profiles.
    min_features
        Profiles with fewer features present are left out of the fit.
    """
    rows = [v for v in vectors if len(v) >= min_features]
    names, centre, scale, z = _standardise(rows, features)
    if k is None:
        fits = [fit_mixture(z, j, seed=seed) for j in range(1, max_k + 1) if j <= len(z)]
        fit = min(fits, key=lambda f: f.bic)
    else:
        fit = fit_mixture(z, k, seed=seed)
    order = sorted(range(len(fit.weights)), key=lambda i: (-fit.weights[i], tuple(fit.means[i])))
    weights = fit.weights[order]
    means, variances = fit.means[order], fit.variances[order]
    labels = match_labels(previous, names, centre, scale, means)
    return _snapshot(
        name=name,
        version=0 if previous is None else previous.version + 1,
        features=names,
        centre=centre,
        scale=scale,
        labels=labels,
        weights=weights,
        means=means,
        variances=variances,
        examples=len(rows),
        trained_until=trained_until,
    )


def _snapshot(
    *,
    name: str,
    version: int,
    features: Sequence[str],
    centre: np.ndarray,
    scale: np.ndarray,
    labels: Sequence[str],
    weights: np.ndarray,
    means: np.ndarray,
    variances: np.ndarray,
    examples: int,
    trained_until: datetime | None,
) -> SubgroupSnapshot:
    order = sorted(range(len(labels)), key=lambda i: (len(labels[i]), labels[i]))
    w = np.array([weights[i] for i in order])
    w = w / w.sum()
    return SubgroupSnapshot(
        name=name,
        version=version,
        features=tuple(features),
        centre=tuple(round(float(c), 6) for c in centre),
        scale=tuple(round(float(s), 6) for s in scale),
        labels=tuple(labels[i] for i in order),
        weights=tuple(float(x) for x in w),
        means=tuple(tuple(round(float(m), 6) for m in means[i]) for i in order),
        variances=tuple(tuple(round(float(v), 6) for v in variances[i]) for i in order),
        descriptions=tuple(
            describe(features, [float(m) for m in means[i]], float(weights[i])) for i in order
        ),
        examples=examples,
        trained_until=trained_until,
    )


class OnlineSubgroupTrainer:
    """Stepwise EM (Cappé & Moulines 2009): the mixture follows new profiles one at a time.

    Starts from a fitted snapshot and keeps its standardisation and labels;
    ``learn_one`` moves the weights, means and variances by a step that shrinks
    as ``(t + 2) ** -0.6``; :meth:`snapshot` publishes the next version.

    >>> base = SubgroupSnapshot(features=("crp_log",), centre=(0.0,), scale=(1.0,),
    ...     labels=("c1", "c2"), weights=(0.5, 0.5), means=((-1.0,), (1.0,)),
    ...     variances=((0.5,), (0.5,)), descriptions=("a", "b"))
    >>> trainer = OnlineSubgroupTrainer(base)
    >>> for x in [2.0, 2.2, 1.8] * 20:
    ...     trainer.learn_one({"crp_log": x})
    >>> snap = trainer.snapshot()
    >>> snap.version, snap.labels, round(snap.means[1][0], 1), snap.weights[1] > 0.9
    (1, ('c1', 'c2'), 2.0, True)
    """

    def __init__(self, base: SubgroupSnapshot, *, decay: float = 0.6) -> None:
        self.base = base
        self.decay = decay
        self.t = 0
        self.weights = np.array(base.weights, dtype=float)
        self.means = np.array(base.means, dtype=float)
        self.variances = np.array(base.variances, dtype=float)
        self.s0 = self.weights.copy()
        self.s1 = self.means * self.s0[:, None]
        self.s2 = (self.variances + self.means**2) * self.s0[:, None]

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Move the mixture towards one profile vector ``x``."""
        z = np.array([np.nan if v is None else v for v in self.base.standardise(x)], dtype=float)
        seen = ~np.isnan(z)
        if not seen.any():
            return
        fit = MixtureFit(self.weights, self.means, self.variances, 0.0, 1)
        resp, _ = _responsibilities(_log_densities(z[None, :], seen[None, :], fit))
        r = resp[0]
        filled = np.where(seen[None, :], np.where(seen, z, 0.0)[None, :], self.means)
        second = np.where(seen[None, :], filled**2, self.variances + self.means**2)
        step = (self.t + 2) ** -self.decay
        self.s0 = (1 - step) * self.s0 + step * r
        self.s1 = (1 - step) * self.s1 + step * r[:, None] * filled
        self.s2 = (1 - step) * self.s2 + step * r[:, None] * second
        self.weights = self.s0 / self.s0.sum()
        self.means = self.s1 / self.s0[:, None]
        self.variances = np.maximum(self.s2 / self.s0[:, None] - self.means**2, VAR_FLOOR)
        self.t += 1

    def snapshot(self, trained_until: datetime | None = None) -> SubgroupSnapshot:
        """The next version, with the same labels and standardisation."""
        base = self.base
        snap = _snapshot(
            name=base.name,
            version=base.version + 1,
            features=base.features,
            centre=np.array(base.centre),
            scale=np.array(base.scale),
            labels=base.labels,
            weights=self.weights,
            means=self.means,
            variances=self.variances,
            examples=base.examples + self.t,
            trained_until=trained_until,
        )
        self.base = snap
        return snap
