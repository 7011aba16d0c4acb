"""The response fit's bounded least squares (gmodiff.camera.nnls) against SciPy's solver."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import lsq_linear

from gmodiff.camera.nnls import lower_bounded_lstsq


def test_clamps_only_what_the_bound_stops():
    # Unconstrained answer (-1, 2): the first unknown sits on the bound, the second is free.
    x = lower_bounded_lstsq(np.eye(2), np.array([-1.0, 2.0]), lower=1e-6)
    np.testing.assert_allclose(x, [1e-6, 2.0], atol=1e-12)


def test_everything_on_the_bound_when_no_unknown_helps():
    x = lower_bounded_lstsq(np.ones((4, 3)), -np.ones(4), lower=0.5)
    np.testing.assert_allclose(x, [0.5, 0.5, 0.5])


@pytest.mark.parametrize("seed", range(40))
def test_same_minimum_as_scipy_bvls(seed):
    rng = np.random.default_rng(seed)
    rows, n = int(rng.integers(3, 300)), int(rng.integers(1, 30))
    # Columns of very different scales, as the response fit's weighted rows have.
    a = rng.normal(size=(rows, n)) * rng.uniform(0.01, 10.0, size=n)
    b = rng.normal(size=rows) * 3.0
    ours = lower_bounded_lstsq(a, b, lower=1e-6)
    ref = lsq_linear(a, b, bounds=(1e-6, np.inf), method="bvls", tol=1e-10).x
    assert ours.min() >= 1e-6
    cost, ref_cost = np.sum((a @ ours - b) ** 2), np.sum((a @ ref - b) ** 2)
    assert cost <= ref_cost * (1 + 1e-9) + 1e-12
    if rows >= n:  # full column rank (almost surely): the minimiser is unique
        np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-8)
