"""Least squares with a lower bound on every unknown, in NumPy alone.

The response fit (:mod:`gmodiff.camera.calibration`) solves one small bounded least-squares
problem per robust iteration (a few thousand rows, a few dozen unknowns). SciPy's
``lsq_linear`` solves it too, but ``import scipy.optimize`` costs about 0.9 s on two cores, paid
by every command before its first stage (issue 25); this active-set solver (Lawson and Hanson's
NNLS, shifted to the bound) needs nothing beyond NumPy.
"""

from __future__ import annotations

import numpy as np


def lower_bounded_lstsq(a: np.ndarray, b: np.ndarray, lower: float = 0.0,
                        max_rounds: int | None = None) -> np.ndarray:
    """``argmin ||a x − b||₂`` subject to ``x ≥ lower`` (every component).

    Lawson–Hanson active set on ``y = x − lower``: unknowns move from the bound into the free
    set one at a time, in order of how much they would lower the residual, and a free unknown
    that an unconstrained solve would push below the bound is stepped back onto it. Each round
    solves the free columns' least squares with ``numpy.linalg.lstsq`` (not the normal
    equations, whose condition number is the square of ``a``'s). Exact in finitely many rounds
    for a full-rank ``a``; ``max_rounds`` (default ``3 n``) only guards against cycling.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    rows, n = a.shape
    target = b - a.sum(axis=1) * lower  # a (y + lower) − b = a y − target
    y = np.zeros(n)
    free = np.zeros(n, dtype=bool)
    # Gradient magnitudes below this are rounding noise, not a reason to free an unknown.
    tolerance = 10.0 * np.finfo(np.float64).eps * max(rows, n) * max(
        float(np.abs(a).sum(axis=0).max(initial=0.0)) * float(np.abs(target).max(initial=0.0)), 1.0)
    for _ in range(max_rounds or 3 * n):
        gradient = a.T @ (target - a @ y)  # −½ ∇ of the squared residual
        candidates = np.where(free, -np.inf, gradient)
        if free.all() or candidates.max() <= tolerance:
            break
        free[int(np.argmax(candidates))] = True
        while True:
            trial = np.zeros(n)
            trial[free] = np.linalg.lstsq(a[:, free], target, rcond=None)[0]
            if trial[free].min(initial=np.inf) > 0.0:
                y = trial
                break
            # Step from y toward the trial as far as the bound allows, and pin what reaches it.
            blocked = free & (trial <= 0.0)
            gap = y[blocked] - trial[blocked]  # ≥ 0: y is feasible, the trial is not
            step = float(np.min(np.where(gap > 0.0, y[blocked] / np.maximum(gap, 1e-300), 0.0)))
            y = y + step * (trial - y)
            free &= y > 0.0
            y[~free] = 0.0
            if not free.any():
                break
    return y + lower
