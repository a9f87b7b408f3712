"""The SPD functions (``model.spd``): the logarithm, by matrix products and by the eigendecomposition
it takes without a gradient, against float64 eigenvalues and scipy on real EEG covariances and on
condition numbers up to 1e4, the products' gradients and iteration counts, shrinkage and the
tangent vector."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from eegfm.model.band_powers import band_covariances
from eegfm.model.spd import (
    EIGENVALUE_FLOOR,
    LOG_TERMS,
    SQRT_ITERATIONS,
    log_spd,
    log_spd_by_products,
    shrink,
    tangent_vectors,
    upper_triangle,
)


def eigh_log(matrices: torch.Tensor) -> torch.Tensor:
    """The reference: log of the eigenvalues, in float64."""
    values, vectors = torch.linalg.eigh(matrices.double())
    return (vectors * values.log().unsqueeze(-2)) @ vectors.transpose(-2, -1)


def relative_errors(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return (estimate.double() - reference).flatten(-2).norm(dim=-1) / reference.flatten(-2).norm(dim=-1)


def random_spd(n: int, condition: float, scale: float = 1.0, seed: int = 0, batch: int = 4) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    rotations, _ = torch.linalg.qr(torch.randn(batch, n, n, generator=generator, dtype=torch.float64))
    values = scale * torch.logspace(-math.log10(condition), 0, n, dtype=torch.float64)
    return (rotations * values) @ rotations.transpose(-2, -1)


LOGARITHMS = pytest.mark.parametrize("logarithm", [log_spd_by_products, log_spd], ids=["products", "eigh"])


@LOGARITHMS
@pytest.mark.parametrize("alpha", [0.01, 0.002], ids=["readout-shrinkage", "condition-1e4"])
def test_the_logarithm_of_real_eeg_band_covariances_matches_eigh_and_scipy(eegmat_rest_10s, alpha, logarithm):
    """Subject 00's 10 s windows at rest: every band's 19 x 19 covariance, shrunk (unshrunk they are
    singular: eegmat's montage has a common reference), in float32 as the model computes it."""
    covariances = shrink(band_covariances(eegmat_rest_10s[:6] / 100.0, 256.0).double(), alpha)
    values = torch.linalg.eigvalsh(covariances)
    conditions = values[..., -1] / values[..., 0]
    assert conditions.max() > (1e3 if alpha == 0.01 else 5e3)  # the hard cases are there
    reference = eigh_log(covariances)
    assert relative_errors(logarithm(covariances.float()), reference).max() < 1e-4
    np.testing.assert_allclose(scipy.linalg.logm(covariances[0, 0].numpy()), reference[0, 0].numpy(), atol=1e-9)


@LOGARITHMS
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_condition_numbers_up_to_1e4_at_any_scale_and_batched(dtype, logarithm):
    for scale in (1e-6, 1.0, 1e4):
        matrices = random_spd(16, 1e4, scale).reshape(2, 2, 16, 16)  # (B, bands, F, F)
        found = logarithm(matrices.to(dtype))
        assert found.shape == (2, 2, 16, 16) and found.dtype == dtype
        assert relative_errors(found, eigh_log(matrices)).max() < (1e-4 if dtype == torch.float32 else 1e-6)


def test_without_a_gradient_the_logarithm_is_the_eigendecomposition_s_and_agrees_with_the_products(eegmat_rest_10s):
    """The head's inputs take the eigendecomposition; a gradient, or an exporter, the products: the
    two within the products' 1e-5 on real EEG, and exactly the products' where a gradient is asked."""
    covariances = shrink(band_covariances(eegmat_rest_10s[:6] / 100.0, 256.0)).float()
    eager, products = log_spd(covariances), log_spd_by_products(covariances)
    reference = eigh_log(covariances)
    assert not torch.equal(eager, products) and relative_errors(eager, reference).max() < 1e-5
    assert relative_errors(products, eager.double()).max() < 2e-5
    traced = log_spd(covariances.clone().requires_grad_(True)).detach()
    assert torch.equal(traced, products)


def test_every_eigenvalue_down_to_the_floor_converges():
    """A diagonal matrix runs the scalar recurrence on each eigenvalue: the fixed iteration counts
    and series terms must reach every eigenvalue the shrinkage allows, relative to the Frobenius norm."""
    values = torch.logspace(math.log10(EIGENVALUE_FLOOR), 0, 40, dtype=torch.float64)
    matrix = torch.diag(values / values.square().sum().sqrt())
    errors = (log_spd_by_products(matrix).diagonal() - matrix.diagonal().log()).abs()
    assert errors.max() < 1e-5
    # one square root fewer, or half the terms, is not enough at the floor
    fewer = log_spd_by_products(matrix, SQRT_ITERATIONS[:-1], LOG_TERMS)
    assert (fewer.diagonal() - matrix.diagonal().log()).abs().max() > 1e-5
    assert (log_spd_by_products(matrix, terms=3).diagonal() - matrix.diagonal().log()).abs().max() > 1e-5


def test_shrinkage_keeps_the_smallest_eigenvalue_above_the_floor():
    for n in (2, 19, 64):
        rank_one = torch.ones(n, 1, dtype=torch.float64) @ torch.ones(1, n, dtype=torch.float64)  # worst case
        shrunk = shrink(rank_one)
        smallest = torch.linalg.eigvalsh(shrunk)[0] / shrunk.square().sum().sqrt()
        assert smallest >= 0.01 / (n * 1.01) * (1 - 1e-9) and smallest > EIGENVALUE_FLOOR
    eye = torch.eye(3)
    torch.testing.assert_close(shrink(2.0 * eye, 0.5), 3.0 * eye)  # + half the mean eigenvalue
    zero = log_spd(shrink(torch.zeros(2, 4, 4)))  # an all-zero window: finite
    assert torch.isfinite(zero).all()


def test_gradients_flow_and_match_the_eigendecomposition():
    generator = torch.Generator().manual_seed(1)
    factor = torch.randn(4, 4, dtype=torch.float64, generator=generator, requires_grad=True)

    def tangent(f: torch.Tensor) -> torch.Tensor:
        return tangent_vectors(f @ f.T + 0.1 * torch.eye(4, dtype=torch.float64))

    assert torch.autograd.gradcheck(tangent, (factor,))
    matrices = random_spd(5, 1e3, seed=2, batch=3).requires_grad_(True)
    weights = torch.randn(3, 5, 5, dtype=torch.float64, generator=generator)
    (log_spd(matrices) * weights).sum().backward()
    ours = matrices.grad.clone()
    matrices.grad = None
    (eigh_log(matrices) * weights).sum().backward()
    symmetric = 0.5 * (ours + ours.transpose(-2, -1))  # both define the gradient on symmetric matrices
    torch.testing.assert_close(symmetric, 0.5 * (matrices.grad + matrices.grad.transpose(-2, -1)), atol=1e-5, rtol=1e-4)


def test_the_upper_triangle_keeps_the_frobenius_norm():
    matrix = torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 5.0], [3.0, 5.0, 6.0]])
    vector = upper_triangle(matrix)
    root2 = math.sqrt(2.0)
    torch.testing.assert_close(vector, torch.tensor([1.0, 2 * root2, 3 * root2, 4.0, 5 * root2, 6.0]))
    torch.testing.assert_close(vector.norm(), matrix.norm())
    assert upper_triangle(torch.zeros(2, 5, 8, 8)).shape == (2, 5, 36)


@LOGARITHMS
def test_with_a_reference_the_vectors_are_pyriemann_s_affine_invariant_tangent_space(eegmat_rest_10s, logarithm):
    """Whitened by the training windows' Riemannian mean ``M``, the vector of each window's shrunk
    covariance is pyRiemann's ``riemann`` tangent vector at ``M`` (the congruence's second
    shrinkage, 1e-6 here, aside), by either logarithm on real EEG."""
    from pyriemann.geometry.base import invsqrtm
    from pyriemann.geometry.mean import mean_riemann
    from pyriemann.geometry.tangentspace import tangent_space

    alpha = 1e-6
    covariances = band_covariances(eegmat_rest_10s / 100.0, 256.0).double()[:, 2]  # alpha band
    shrunk = shrink(covariances, 0.01).numpy()
    reference = mean_riemann(shrunk)
    whitening = torch.from_numpy(invsqrtm(reference))
    ours = upper_triangle(logarithm(shrink(whitening @ torch.from_numpy(shrunk) @ whitening, alpha)))
    expected = tangent_space(shrunk, reference, metric="riemann")
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-4 * np.abs(expected).max())
    at_identity = tangent_vectors(covariances, 0.01)
    assert (tangent_vectors(covariances, 0.01, whitening) - at_identity).abs().max() > 0.1  # a different chart
