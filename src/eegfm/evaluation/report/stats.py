"""The report's statistics: confidence intervals that resample subjects (a subject's windows are
not independent of each other), the maximum mean discrepancy between a site's embeddings and the
other sites', and how well a linear probe tells the sites apart."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95


def subject_bootstrap(
    numerators: np.ndarray,
    denominators: np.ndarray,
    subjects: Sequence[str],
    n_resamples: int,
    seed: int,
) -> dict[str, float | int | None]:
    """The ratio ``sum(numerators) / sum(denominators)`` over the windows and its 95 % percentile
    interval from resampling whole subjects with replacement (``n_resamples`` draws, ``seed``).

    ``numerators`` [N] are per-window values (a window's KL, 1 for a correct top class),
    ``denominators`` [N] what they are averaged over (1 per window, or the class prior's KL for a
    ratio to it). ``low`` and ``high`` are None with fewer than two subjects: one subject's windows
    say nothing about the next subject's."""
    names, index = np.unique(np.asarray(subjects), return_inverse=True)
    top = np.bincount(index, weights=np.asarray(numerators, dtype=np.float64), minlength=len(names))
    bottom = np.bincount(index, weights=np.asarray(denominators, dtype=np.float64), minlength=len(names))
    point = float(top.sum() / bottom.sum()) if bottom.sum() > 0 else math.nan
    result: dict[str, float | int | None] = {"value": point, "low": None, "high": None, "n_subjects": len(names)}
    if len(names) < 2:
        return result
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(names), size=(n_resamples, len(names)))
    counts = np.stack([np.bincount(row, minlength=len(names)) for row in draws]).astype(np.float64)
    totals = counts @ bottom
    ratios = np.divide(counts @ top, totals, out=np.full(n_resamples, np.nan), where=totals > 0)
    ratios = ratios[np.isfinite(ratios)]
    tail = (1.0 - CONFIDENCE) / 2 * 100
    result["low"], result["high"] = (float(v) for v in np.percentile(ratios, [tail, 100 - tail]))
    return result


def median_bandwidth(points: np.ndarray) -> float:
    """The median of the pairwise Euclidean distances (the median heuristic); 1 where all coincide."""
    distances = np.sqrt(np.maximum(_squared_distances(points, points), 0.0))
    upper = distances[np.triu_indices(len(points), k=1)]
    median = float(np.median(upper)) if upper.size else 0.0
    return median if median > 0 else 1.0


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T


def mmd_squared(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None) -> float:
    """The biased (V-statistic) squared MMD between samples ``x`` [n, d] and ``y`` [m, d] under an
    RBF kernel exp(-|a - b|^2 / (2 bandwidth^2)); bandwidth: the median heuristic over both. 0 for
    identical samples, never negative."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if bandwidth is None:
        bandwidth = median_bandwidth(np.concatenate([x, y]))
    gamma = 1.0 / (2.0 * bandwidth**2)

    def kernel_mean(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.exp(-gamma * np.maximum(_squared_distances(a, b), 0.0)).mean())

    return max(kernel_mean(x, x) + kernel_mean(y, y) - 2.0 * kernel_mean(x, y), 0.0)


def mmd_permutation_p(x: np.ndarray, y: np.ndarray, n_permutations: int, seed: int) -> float:
    """How often a random split of the pooled windows into groups of the same sizes is at least as
    far apart as ``x`` from ``y`` (bandwidth fixed on the pool): the chance of an MMD this large
    were the site's windows like the rest."""
    pool = np.concatenate([np.asarray(x, np.float64), np.asarray(y, np.float64)])
    bandwidth = median_bandwidth(pool)
    observed = mmd_squared(x, y, bandwidth)
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_permutations):
        order = rng.permutation(len(pool))
        hits += mmd_squared(pool[order[: len(x)]], pool[order[len(x) :]], bandwidth) >= observed
    return (hits + 1) / (n_permutations + 1)


def site_probe(embeddings: np.ndarray, sites: Sequence[str], seed: int, max_folds: int = 5) -> dict[str, float | int]:
    """Cross-validated accuracy of a logistic regression that predicts each window's site from its
    standardised embedding, beside chance (the largest site's share). Folds are stratified by site
    over windows, so one subject's windows can sit in training and test folds alike: an upper
    bound on what the embedding says about the site."""
    # scikit-learn only where the report measures domain shift: not for eegfm-report --help.
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(sites)
    _, counts = np.unique(labels, return_counts=True)
    folds = int(min(max_folds, counts.min()))
    if len(counts) < 2 or folds < 2:
        raise ValueError(
            f"site probe: expected at least 2 sites with at least 2 windows each; got {len(counts)} site(s), "
            f"the smallest with {int(counts.min())} window(s)"
        )
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_score(probe, embeddings, labels, cv=splitter)
    return {
        "accuracy": float(scores.mean()),
        "accuracy_std": float(scores.std()),
        "chance": float(counts.max() / counts.sum()),
        "folds": folds,
        "n_windows": int(counts.sum()),
        "n_sites": len(counts),
    }


def project_2d(embeddings: np.ndarray, method: str, seed: int) -> np.ndarray:
    """[N, 2] coordinates: PCA's first two components, or t-SNE (perplexity below N / 3)."""
    if method == "pca":
        # scikit-learn only where a projection is drawn: not for eegfm-report --help.
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(embeddings)
    # scikit-learn only where a projection is drawn: not for eegfm-report --help.
    from sklearn.manifold import TSNE

    perplexity = float(max(2.0, min(30.0, (len(embeddings) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(embeddings)
