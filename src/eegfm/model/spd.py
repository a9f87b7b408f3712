"""Symmetric positive-definite (SPD) matrices in torch: shrinkage, the matrix logarithm and the
tangent vector, batched over any leading dimensions, exportable to ONNX.

Why matrix products: the model is served through ONNX Runtime, and ONNX has no eigendecomposition
(``torch.linalg.eigh``), inverse or matrix-function op. :func:`log_spd_by_products` is the inverse
scaling and squaring method::

    A = s * N                          s = ||A||_F, so N's eigenvalues lie in (0, 1]
    N^(1/2^k)                          k square roots, each by the coupled Newton-Schulz iteration
                                           T = (3I - Z Y) / 2,  Y <- Y T,  Z <- T Z
                                       (Y -> N^(1/2), Z -> N^(-1/2); products only, and stable)
    log A = log(s) I + 2^k log(I + X),  X = N^(1/2^k) - I, by a truncated Taylor series

Where no gradient is asked for and no exporter is tracing (the head's spectral inputs, computed
from the window alone, in training, evaluation and PyTorch serving), :func:`log_spd` takes the
eigendecomposition instead: exact to float32, and about 5x faster on one thread for a batch of 32
windows' 5 bands of 19 channels (``python benchmarks/spd_log.py``, docs/performance.md). Through
an eigendecomposition the gradient of nearly equal eigenvalues is unstable, so a branch trained end
to end (``model.covariance_branch``) keeps the products. The two agree within 2e-5, relative
(tests/model/test_spd.py).

Every iterate is a polynomial in ``A``, so each eigenvalue follows the scalar recurrence on its
own: the iteration counts below are those that take the smallest eigenvalue the shrinkage allows
(:data:`EIGENVALUE_FLOOR` of the Frobenius norm) to its square root within float32 rounding, and
the series' terms those that keep the truncation error under 1e-5 after the 2^k scaling. Larger
eigenvalues converge sooner; an eigenvalue below the floor is only approximated.

:func:`shrink` guarantees the floor: adding ``alpha`` times the mean eigenvalue to every eigenvalue
of an n x n covariance makes the smallest one at least ``alpha / (n (1 + alpha))`` of the
Frobenius norm (which is at most the trace), 1.5e-4 for 64 channels at ``alpha`` 0.01.
"""

from __future__ import annotations

import math

import torch

# pyRiemann's Shrinkage default, and the benchmark readout's (model.spectral_features reads it from
# here): interpolated channels are mixes of their neighbours, so a montage's covariance is singular without it.
SHRINKAGE = 0.01
# The smallest eigenvalue, relative to the Frobenius norm, that the logarithm is accurate for: ten
# times below the smallest shrinkage allows at 64 channels, a margin for float32 rounding.
EIGENVALUE_FLOOR = 1e-5
# Newton-Schulz iterations of each square root: the scalar recurrence from the floor's eigenvalue
# (then its square root, ...) converges to 1e-7 relative in this many steps (tests/model/test_spd.py).
SQRT_ITERATIONS: tuple[int, ...] = (18, 11, 8, 6, 5, 4)
# Six square roots bring the floor's eigenvalue to 0.835; 7 terms of log(1 + x) at x = -0.165 err by
# 8e-8, 5e-6 after the 2^6 scaling (on a logarithm of magnitude 11.5 there).
LOG_TERMS = 7
# A floor under the shrinkage, so an all-zero window (a padded batch row) gives a finite logarithm.
_ABSOLUTE_FLOOR = 1e-10


def _eye_like(matrices: torch.Tensor) -> torch.Tensor:
    return torch.eye(matrices.shape[-1], dtype=matrices.dtype, device=matrices.device)


def trace(matrices: torch.Tensor) -> torch.Tensor:
    """(..., n, n) -> (...): the sum of the diagonal, as an elementwise product with the identity
    (one op in any exporter)."""
    return (matrices * _eye_like(matrices)).sum(dim=(-2, -1))


def shrink(covariances: torch.Tensor, alpha: float = SHRINKAGE) -> torch.Tensor:
    """(..., n, n) -> (..., n, n): ``C + (alpha * trace(C) / n + 1e-10) I``, every eigenvalue raised
    by ``alpha`` of the mean one, so the matrix is positive definite however many channels are
    copies or mixes of others (module docstring: the floor this keeps)."""
    n = covariances.shape[-1]
    ridge = alpha * trace(covariances) / n + _ABSOLUTE_FLOOR
    return covariances + ridge[..., None, None] * _eye_like(covariances)


def sqrt_newton_schulz(matrices: torch.Tensor, iterations: int) -> torch.Tensor:
    """(..., n, n) SPD with eigenvalues in (0, 1] -> the principal square root, by ``iterations``
    steps of the coupled Newton-Schulz iteration (matrix products only)."""
    eye = _eye_like(matrices)
    y, z = matrices, eye.expand_as(matrices)
    for step in range(iterations):
        t = 0.5 * (3.0 * eye - z @ y)
        y = y @ t
        if step + 1 < iterations:  # the last Z is never read
            z = t @ z
    return y


def log_near_identity(matrices: torch.Tensor, terms: int = LOG_TERMS) -> torch.Tensor:
    """(..., n, n) -> log(M) for M close to the identity: the Taylor series of log(I + X), X = M - I,
    to ``terms`` terms, evaluated by Horner's rule (``terms`` - 1 products)."""
    eye = _eye_like(matrices)
    x = matrices - eye
    # log(I + X) = X (c1 I + X (c2 I + ... X (c_m I))), c_j = (-1)^(j + 1) / j
    series = ((-1.0) ** (terms + 1) / terms) * eye.expand_as(x)
    for j in range(terms - 1, 0, -1):
        series = ((-1.0) ** (j + 1) / j) * eye + x @ series
    return x @ series


def log_spd(matrices: torch.Tensor) -> torch.Tensor:
    """(..., n, n) SPD -> its matrix logarithm (..., n, n), symmetric: by the eigendecomposition
    where no gradient is asked for and no exporter is tracing, else by :func:`log_spd_by_products`
    (module docstring: why both)."""
    if matrices.requires_grad or torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export():
        return log_spd_by_products(matrices)
    eigenvalues, vectors = torch.linalg.eigh(matrices)
    return (vectors * eigenvalues.clamp_min(_ABSOLUTE_FLOOR).log().unsqueeze(-2)) @ vectors.transpose(-2, -1)


def log_spd_by_products(
    matrices: torch.Tensor, sqrt_iterations: tuple[int, ...] = SQRT_ITERATIONS, terms: int = LOG_TERMS
) -> torch.Tensor:
    """(..., n, n) SPD -> its matrix logarithm (..., n, n), symmetric, differentiable and exportable
    to ONNX: matrix products alone (module docstring). Accurate for eigenvalues down to
    :data:`EIGENVALUE_FLOOR` of the Frobenius norm, which :func:`shrink` guarantees; compute in
    float32 or float64."""
    norm = matrices.square().sum(dim=(-2, -1)).sqrt()
    roots = matrices / norm[..., None, None]
    for iterations in sqrt_iterations:
        roots = sqrt_newton_schulz(roots, iterations)
    logarithm = (2.0 ** len(sqrt_iterations)) * log_near_identity(roots, terms)
    logarithm = 0.5 * (logarithm + logarithm.transpose(-2, -1))  # exact symmetry, whatever the rounding
    return logarithm + torch.log(norm)[..., None, None] * _eye_like(matrices)


def upper_triangle(matrices: torch.Tensor) -> torch.Tensor:
    """(..., n, n) symmetric -> (..., n (n + 1) / 2): the upper triangle row by row, off-diagonal
    entries times sqrt(2), so the vector's Euclidean norm is the matrix's Frobenius norm (pyRiemann's
    ``upper``: the tangent vector a linear model reads)."""
    n = matrices.shape[-1]
    rows, cols = torch.triu_indices(n, n, device=matrices.device)
    weights = torch.where(rows == cols, 1.0, math.sqrt(2.0)).to(matrices.dtype)
    flat = matrices.flatten(-2)
    return flat[..., rows * n + cols] * weights


def tangent_vectors(
    covariances: torch.Tensor, alpha: float = SHRINKAGE, whitening: torch.Tensor | None = None
) -> torch.Tensor:
    """(..., n, n) covariances -> (..., n (n + 1) / 2): each shrunk matrix's logarithm as a vector,
    the log-Euclidean tangent space at the identity (a learned reference is a bias after it).

    ``whitening`` (broadcastable to the covariances: a reference point's inverse square root
    ``M^(-1/2)``) maps at ``M`` in the affine-invariant geometry instead: the logarithm of
    ``M^(-1/2) C M^(-1/2)``, pyRiemann's ``riemann`` tangent space, the congruence's result shrunk
    again so the logarithm's eigenvalue floor holds however far a window lies from ``M``."""
    shrunk = shrink(covariances, alpha)
    return upper_triangle(log_spd(shrunk if whitening is None else at_reference(shrunk, whitening, alpha)))


def at_reference(shrunk: torch.Tensor, whitening: torch.Tensor, alpha: float = SHRINKAGE) -> torch.Tensor:
    """``shrink(W S W)``: shrunk covariances ``S`` seen from the reference point whose inverse
    square root is ``W`` (:func:`tangent_vectors` takes their logarithm)."""
    return shrink(whitening @ shrunk @ whitening, alpha)
