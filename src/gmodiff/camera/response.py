"""Camera response curves for the bracket simulator (spec §6).

A response maps linear sensor exposure in [0, 1] (1 = saturation) to the camera's non-linear
encoding in [0, 1]. Each family is a small frozen dataclass with ``forward`` (linear → encoded)
and ``inverse`` (encoded → linear). All are strictly increasing with f(0) = 0 and f(1) = 1, so
simulated frames stay valid Kalantari-style LDR values whatever the family.

Families: plain gamma (1.8–2.6), sRGB, a sigmoid in log exposure (Naka–Rushton), a μ-law log
curve, a filmic toe/shoulder curve followed by display gamma, and a perturbed gamma whose
wiggles stand in for the inter-camera variation captured by EMoR-style bases. Varying the curve
keeps trained models from overfitting one camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gmodiff.errors import ConfigError
from gmodiff.srgb import linear_to_srgb, srgb_to_linear


def _unit(x: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] as float64 (responses are defined on the unit interval only)."""
    return np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)


class Response:
    """Base: a monotone curve on [0, 1]. Subclasses implement ``_forward`` / ``_inverse``."""

    name: str = "response"

    def forward(self, linear: np.ndarray) -> np.ndarray:
        """Linear exposure in [0, 1] → non-linear encoded value in [0, 1] (float32)."""
        return self._forward(_unit(linear)).astype(np.float32)

    def inverse(self, encoded: np.ndarray) -> np.ndarray:
        """Encoded value in [0, 1] → linear exposure in [0, 1] (float32)."""
        return self._inverse(_unit(encoded)).astype(np.float32)

    def _forward(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _inverse(self, y: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class GammaResponse(Response):
    """Pure power law ``y = x**(1/gamma)``; gamma 2.2 is the curve the networks assume."""

    gamma: float = 2.2

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"gamma{self.gamma:g}"

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return np.power(x, 1.0 / self.gamma)

    def _inverse(self, y: np.ndarray) -> np.ndarray:
        return np.power(y, self.gamma)


@dataclass(frozen=True)
class SRGBResponse(Response):
    """The IEC 61966-2-1 sRGB transfer curve (linear toe, then a 1/2.4 power)."""

    name: str = "srgb"

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return linear_to_srgb(x)

    def _inverse(self, y: np.ndarray) -> np.ndarray:
        return srgb_to_linear(y)


@dataclass(frozen=True)
class SigmoidLogResponse(Response):
    """A sigmoid in log exposure (Naka–Rushton): ``y = x**n (1 + k**n) / (x**n + k**n)``.

    ``n`` sets the contrast (slope in log space), ``k`` the exposure of the mid-tone knee; the
    ``(1 + k**n)`` factor pins f(1) = 1. The inverse is closed form.
    """

    exponent: float = 0.7
    knee: float = 0.3

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"sigmoidlog(n={self.exponent:.3g},k={self.knee:.3g})"

    def _forward(self, x: np.ndarray) -> np.ndarray:
        xn = np.power(x, self.exponent)
        kn = self.knee**self.exponent
        return xn * (1.0 + kn) / (xn + kn)

    def _inverse(self, y: np.ndarray) -> np.ndarray:
        kn = self.knee**self.exponent
        # y (x^n + k^n) = x^n (1 + k^n)  →  x^n = y k^n / (1 + k^n − y); denominator ≥ k^n > 0.
        return np.power(y * kn / (1.0 + kn - y), 1.0 / self.exponent)


@dataclass(frozen=True)
class LogResponse(Response):
    """μ-law log curve ``y = ln(1 + a x) / ln(1 + a)``: a concave, highlight-compressing response."""

    strength: float = 50.0

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"log(a={self.strength:.3g})"

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return np.log1p(self.strength * x) / math.log1p(self.strength)

    def _inverse(self, y: np.ndarray) -> np.ndarray:
        return np.expm1(y * math.log1p(self.strength)) / self.strength


# Hable's filmic operator constants (shoulder, linear, toe strengths and angles).
_HABLE = (0.15, 0.50, 0.10, 0.20, 0.02, 0.30)


def _hable(x: np.ndarray | float) -> np.ndarray | float:
    a, b, c, d, e, f = _HABLE
    return (x * (a * x + c * b) + d * e) / (x * (a * x + b) + d * f) - e / f


@dataclass(frozen=True)
class FilmicResponse(Response):
    """Filmic toe/shoulder curve (Hable's form) mapped so ``x = 1`` hits white, then display gamma.

    ``white`` is the scene-linear value the shoulder maps to 1: larger values roll highlights off
    more gently. The inverse undoes the gamma, then solves the operator's quadratic.
    """

    white: float = 8.0
    gamma: float = 2.2

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"filmic(w={self.white:.3g},g={self.gamma:.3g})"

    def _forward(self, x: np.ndarray) -> np.ndarray:
        display = _hable(x * self.white) / _hable(self.white)
        return np.power(np.clip(display, 0.0, 1.0), 1.0 / self.gamma)

    def _inverse(self, y: np.ndarray) -> np.ndarray:
        a, b, c, d, e, f = _HABLE
        r = np.power(y, self.gamma) * _hable(self.white) + e / f
        # r (A s² + B s + D F) = A s² + C B s + D E  →  A (r−1) s² + B (r−C) s + D (r F − E) = 0,
        # with r < 1 on the curve's range; take the non-negative root.
        qa = a * (r - 1.0)
        qb = b * (r - c)
        qc = d * (r * f - e)
        disc = np.sqrt(np.maximum(qb * qb - 4.0 * qa * qc, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(np.abs(qa) > 1e-12, (-qb - disc) / (2.0 * qa), -qc / qb)
        return np.clip(s / self.white, 0.0, 1.0)


@dataclass(frozen=True)
class PerturbedGammaResponse(Response):
    """Gamma curve plus smooth sinusoidal wiggles: ``y = g + Σ c_k sin(kπ g) / (kπ)``, g = x**(1/γ).

    A hand-made stand-in for the principal-component variation of measured camera curves
    (EMoR). ``Σ|c_k| < 1`` keeps dy/dg > 0, so the curve stays monotone with fixed end points.
    The inverse is a dense lookup table in g.
    """

    gamma: float = 2.2
    coefficients: tuple[float, ...] = (0.2, -0.1)
    _table: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if sum(abs(c) for c in self.coefficients) >= 1.0:
            raise ConfigError("perturbed gamma coefficients must have Σ|c| < 1 to stay monotone")
        g = np.linspace(0.0, 1.0, 8193)
        object.__setattr__(self, "_table", (self._from_g(g), g))

    @property
    def name(self) -> str:  # type: ignore[override]
        coeffs = ",".join(f"{c:.2f}" for c in self.coefficients)
        return f"perturbed(g={self.gamma:.3g},c=[{coeffs}])"

    def _from_g(self, g: np.ndarray) -> np.ndarray:
        y = np.array(g, dtype=np.float64)
        for k, c in enumerate(self.coefficients, start=1):
            y = y + c * np.sin(k * math.pi * g) / (k * math.pi)
        return y

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return np.clip(self._from_g(np.power(x, 1.0 / self.gamma)), 0.0, 1.0)

    def _inverse(self, y: np.ndarray) -> np.ndarray:
        ys, gs = self._table
        return np.power(np.interp(y, ys, gs), self.gamma)


RESPONSE_FAMILIES = ("gamma", "srgb", "sigmoidlog", "log", "filmic", "perturbed")
"""Family names :func:`random_response` draws from."""

# Draw probabilities: plain gammas dominate (most real pipelines are close to one), the rest
# cover the S-shaped and strongly highlight-compressing curves.
_FAMILY_WEIGHTS = np.array([0.30, 0.15, 0.20, 0.10, 0.10, 0.15])


MID_GREY_RANGE = (0.35, 0.62)
"""Encoded value of 18 % grey that drawn curves must give: measured camera curves fall roughly
here (gamma 1.8 → 0.39, sRGB → 0.46, gamma 2.6 → 0.52, punchy JPEG tone curves → ~0.6)."""


def random_response(rng: np.random.Generator, family: str | None = None) -> Response:
    """Draw a response curve from the family mix (or from one named ``family``).

    Parameters are redrawn until 18 % grey encodes inside :data:`MID_GREY_RANGE`, so no draw is
    wildly brighter or darker than a real camera.
    """
    if family is None:
        family = str(rng.choice(RESPONSE_FAMILIES, p=_FAMILY_WEIGHTS / _FAMILY_WEIGHTS.sum()))
    for _ in range(100):
        response = _draw_family(rng, family)
        mid_grey = float(response.forward(np.array(0.18)))
        if MID_GREY_RANGE[0] <= mid_grey <= MID_GREY_RANGE[1]:
            return response
    return GammaResponse(2.2)  # pragma: no cover - the ranges below make this unreachable


def _draw_family(rng: np.random.Generator, family: str) -> Response:
    if family == "gamma":
        return GammaResponse(gamma=float(rng.uniform(1.8, 2.6)))
    if family == "srgb":
        return SRGBResponse()
    if family == "sigmoidlog":
        return SigmoidLogResponse(exponent=float(rng.uniform(0.6, 1.0)),
                                  knee=float(rng.uniform(0.2, 0.7)))
    if family == "log":
        return LogResponse(strength=float(rng.uniform(8.0, 60.0)))
    if family == "filmic":
        return FilmicResponse(white=float(rng.uniform(1.5, 4.0)), gamma=float(rng.uniform(2.0, 2.4)))
    if family == "perturbed":
        c1 = float(rng.uniform(-0.3, 0.3))
        c2 = float(rng.uniform(-0.15, 0.15))
        return PerturbedGammaResponse(gamma=float(rng.uniform(1.9, 2.5)), coefficients=(c1, c2))
    raise ConfigError(f"unknown response family {family!r}", fix=f"use one of {RESPONSE_FAMILIES}")


def response_by_name(name: str, rng: np.random.Generator | None = None) -> Response:
    """Resolve a config/CLI response name: ``random``, a family name, ``srgb`` or ``gammaX.Y``.

    ``random`` and parametric family names draw their parameters from ``rng``.
    """
    key = name.strip().lower()
    if key.startswith("gamma") and key != "gamma":
        try:
            gamma = float(key[len("gamma"):])
        except ValueError:
            gamma = float("nan")
        if not (1.0 <= gamma <= 4.0):
            raise ConfigError(f"bad gamma response {name!r}", fix="write e.g. gamma2.2 (1.0–4.0)")
        return GammaResponse(gamma=gamma)
    if key == "srgb":
        return SRGBResponse()
    if key == "random" or key in RESPONSE_FAMILIES:
        rng = rng if rng is not None else np.random.default_rng(0)
        return random_response(rng, None if key == "random" else key)
    raise ConfigError(f"unknown camera response {name!r}",
                      fix=f"use random, srgb, gammaX.Y or one of {RESPONSE_FAMILIES}")
