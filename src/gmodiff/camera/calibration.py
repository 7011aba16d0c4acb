"""Camera-response estimation from the exposure bracket itself (issue #13, item 3).

Two frames of one view taken at exposure times t_a < t_b are related, pixel by pixel, by a
monotone brightness transfer function τ: a value x in the short frame becomes τ(x) in the long
one, and for the inverse response g = f⁻¹ the "comparametric" equation

    g(τ(x)) = (t_b / t_a) · g(x)

holds wherever neither frame is clipped. τ needs no pixel correspondence: it is read off by
matching the two frames' cumulative histograms (equal ranks ↔ equal radiance), which small camera
shake and a few moving objects barely change. The exposure ratio is known, so the equation fixes
g up to its end point, which we pin with g(1) = 1.

The fit works on h = ln g as a function of ln x (a power law is a straight line there):
piecewise linear between ~24 nodes, increasing (monotone g), with a second-difference penalty
that pulls toward a prior shape where the data are thin. The prior is the curve, out of a
library drawn from the simulator's response families, that best explains the samples (raised
to a fitted power); a two-term power-law-with-shoulder fit replaces it when that explains the
samples clearly better (kinked curves no drawn family has). Camera JPEG curves bend in ways a
power law does not continue: with only a power law to lean on, dark brackets whose samples
stop at mid-grey got highlights wrong by up to 2 stops. The equation is linear in the node
values, so one bounded least-squares solve (plus two robust reweighting passes) fits it.
Below the darkest sample the curve continues as a power law (the prior's slope there).

One curve is shared by the three channels (camera tone curves are normally applied per channel
with one curve; pooling the channels triples the data). Clipped and near-black histogram bins
are excluded. When the bracket says too little (one frame, flat frames, no overlap between
exposures) the estimate falls back to gamma 2.2, the curve the networks assume (spec §1).

Standard curves (sRGB, and the pure power law that fits best) are tried as whole answers after the free fit: when one of
them explains the samples about as well, it is returned. The free fit pins g(1) = 1 and has to
bridge the range no sample reaches (dark brackets stop well below white), so a slight bend there
shifts the level of every shadow; a standard curve has no such freedom (issue #13: on 2-stop
sRGB brackets of dark rooms the free fit put shadows ×0.55 too dark).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from gmodiff.camera.nnls import lower_bounded_lstsq
from gmodiff.channels import channel_max
from gmodiff.pixelmath import uniform_lookup
from gmodiff.srgb import srgb_to_linear

LUT_SIZE = 1024
"""Samples of f⁻¹ on linspace(0, 1, LUT_SIZE)."""
DEFAULT_GAMMA = 2.2
"""Fallback curve, and the linearisation spec §1 assumes (``L**2.2 / t``)."""
SOURCES = ("comparametric", "srgb", "gamma", "fallback-gamma-2.2")
HINTS = ("srgb", "gamma2.2")

# Working resolution: histograms need no more pixels than this, and area-averaging down to it
# also averages away some sensor noise (both frames are averaged the same way). A 256² crop
# is used as is: averaging it would mix saturated and unsaturated pixels, and dropping those
# costs most of the data in scenes like foliage against a clipped sky.
WORK_PIXELS = 256 * 256
DARK_LEVEL = 0.03
"""Encoded values below this are near-black: noise and black-level offsets dominate them."""
CLIP_MARGIN = 0.995
"""Fraction of a frame's saturation level above which its values are treated as clipped."""
TAIL_PROBABILITY = 0.002
"""Histogram ranks this close to 0 or 1 are ignored (a few stray pixels move them)."""
N_NODES = 24
NODE_OFFSET = 0.03
"""Nodes are spaced uniformly in ln(x + NODE_OFFSET): dense in the shadows, not absurdly so."""
NODE_FLOOR = 0.005
N_SAMPLES = 96
"""Sample points per frame pair and channel, spaced uniformly in ln x."""
SMOOTHNESS = 1e-3
"""Weight of the second-difference (curvature in log–log) penalty, relative to the data term."""
HUBER_STOPS = 0.05
"""Residuals (in stops) beyond this are down-weighted in the robust passes."""
MOTION_PASSES = 1
"""Rounds of: map short onto long, find pixels that disagree (moving objects), drop them."""
MOTION_THRESHOLD = 0.06
"""Disagreement (encoded units, after a small blur) above which a pixel counts as moving."""
PRIOR_TERMS = 2
"""Terms of the smooth prior h = a·ln x + b·(x − 1): a power law, bent by a shoulder term."""
PRIOR_RIDGE = 1e-4
"""Ridge on the prior's shoulder term, relative to the (unit-sum) data weights."""
PRIOR_GAIN, PRIOR_GAIN_ABS = 0.9, 0.002
"""A prior term is kept only if it cuts the RMS residual below GAIN × before − GAIN_ABS."""
PRIOR_SWITCH = (1.1, 0.002)
"""The parametric prior replaces the library's only if its fit's RMS error × 1.1 + 0.002 stops
is below the library fit's: a kinked or unusual curve the library has no neighbour for."""
LEVEL_WEIGHT = 1e-2
"""Pull of h toward the prior's values (decides h where no sample reaches)."""
NOISE_BINS = np.geomspace(0.004, 1.0, 24)
"""Encoded values at which each frame's noise level is estimated."""
NOISE_STOPS = 0.1
"""Per-pixel noise (in stops, short and long frame together) at which a sample's weight halves."""
MAX_NOISE_STOPS = 0.35
"""Samples noisier than this are dropped: histogram blur biases their ranks."""
TOE_SLOPES = (1.0, 2.6)
"""Log–log slope range of the power law that continues f⁻¹ below the darkest sample: from a
linear toe (sRGB-like, slope 1) to a steep gamma; a steeper fit there is noise, not a camera."""
NOISE_QUANTILE, NOISE_QUANTILE_SCALE = 0.25, 0.319
"""Low quantile of |noise operator| per value bin, and that quantile of |N(0, 1)|."""
MAX_MOVING_FRACTION = 0.5
"""If more than this disagrees after mapping, it is texture the registration cannot fit
(rotation, parallax), not moving objects: keep those pixels rather than lose the pair."""
MIN_ROWS = 12
"""Fewer usable sample points than this and the bracket is deemed uninformative."""
HINT_TOLERANCE_STOPS = 0.01
"""A hinted curve is kept if it fits within this (RMS stops) of the free fit, or 25 % of it."""
POWER_LAW_RANGE = (1.0, 3.0)
"""Exponents a pure power law may take as a standard curve (1.8-2.6 covers common encodings)."""


def _power_lut(gamma: float) -> np.ndarray:
    return np.power(np.linspace(0.0, 1.0, LUT_SIZE), gamma).astype(np.float32)


def _srgb_lut() -> np.ndarray:
    return srgb_to_linear(np.linspace(0.0, 1.0, LUT_SIZE)).astype(np.float32)


@dataclass(frozen=True)
class ResponseEstimate:
    """An inverse camera response f⁻¹ as a lookup table, where it came from, and how well it fit.

    ``fit_error`` is the weighted RMS residual of the comparametric equation in stops
    (``log2 g(τ(x)) − log2 g(x) − log2 k`` over the sampled histogram points); NaN when there was
    nothing to fit (fallback without data).
    """

    inverse_lut: np.ndarray
    source: str
    fit_error: float
    _grid: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lut = np.asarray(self.inverse_lut, dtype=np.float32).reshape(-1)
        if lut.size != LUT_SIZE:
            raise ValueError(f"inverse_lut must have {LUT_SIZE} samples, got {lut.size}")
        object.__setattr__(self, "inverse_lut", lut)
        object.__setattr__(self, "_grid", np.linspace(0.0, 1.0, LUT_SIZE, dtype=np.float32))

    def linearise(self, ldr: np.ndarray) -> np.ndarray:
        """f⁻¹(L) for non-linear values in [0, 1]: same shape, float32 linear exposure in [0, 1]."""
        return uniform_lookup(ldr, self.inverse_lut)


def _fallback(hint: str | None = None) -> ResponseEstimate:
    """The curve to use when the bracket cannot be fitted: the hinted one, else gamma 2.2."""
    if hint == "srgb":
        return ResponseEstimate(_srgb_lut(), "srgb", float("nan"))
    if hint == "gamma2.2":
        return ResponseEstimate(_power_lut(DEFAULT_GAMMA), "gamma", float("nan"))
    return ResponseEstimate(_power_lut(DEFAULT_GAMMA), "fallback-gamma-2.2", float("nan"))


def _power_law_gamma(samples: _Samples) -> float:
    """Exponent of the pure power law g = x**γ that best explains the samples (least squares)."""
    a = np.log(samples.y) - np.log(samples.x)
    w = samples.weight
    gamma = float(np.sum(w * a * samples.log_ratio) / max(float(np.sum(w * a * a)), 1e-12))
    return float(np.clip(gamma, *POWER_LAW_RANGE))


def _standard_curves(samples: _Samples) -> list[ResponseEstimate]:
    """The standard curves a bracket may be explained by: sRGB and the best pure power law
    (errors still to be measured)."""
    return [ResponseEstimate(_srgb_lut(), "srgb", float("nan")),
            ResponseEstimate(_power_lut(_power_law_gamma(samples)), "gamma", float("nan"))]


def _close_enough(error: float, fit_error: float) -> bool:
    """Does a fixed curve fit within the tolerance of the free fit?"""
    return error <= max(1.25 * fit_error, fit_error + HINT_TOLERANCE_STOPS)


def _normalise_hint(hint: str | None) -> str | None:
    if hint is None:
        return None
    key = str(hint).strip().lower().replace(" ", "").replace("_", "").replace("-", "")
    if key in ("srgb", "iec6196621"):
        return "srgb"
    if key in ("gamma2.2", "gamma22", "adobergb", "gamma"):
        return "gamma2.2"
    return None  # an unknown hint is no information, not an error


# ---------------------------------------------------------------------------------------------
# Histograms


@dataclass
class _FrameHistogram:
    cdf: np.ndarray  # (C, B + 1): fraction of pixels ≤ each bin edge
    edges: np.ndarray  # (B + 1,)


@dataclass
class _WorkingFrame:
    image: np.ndarray  # (h, w, C) area-averaged frame
    clipped: np.ndarray  # (h, w) bool: averaging mixed saturated and unsaturated pixels here
    clip_level: float  # values at or above this are saturated
    levels: int  # histogram bins per channel
    codes: np.ndarray = field(init=False)  # (h, w, C) uint16 bin index
    noise: np.ndarray = field(init=False)  # noise std (encoded units) at NOISE_BINS values

    def __post_init__(self) -> None:
        self.codes = np.rint(self.image * (self.levels - 1)).astype(np.uint16)
        self.noise = _noise_profile(self.image)

    def noise_at(self, values: np.ndarray) -> np.ndarray:
        """Estimated per-pixel noise std (encoded units) at encoded ``values``."""
        return np.interp(np.log(np.maximum(values, NOISE_BINS[0])), np.log(NOISE_BINS), self.noise)

    @property
    def edges(self) -> np.ndarray:
        """Bin edges: bins are centred on code values k / (levels − 1)."""
        edges = (np.arange(self.levels + 1) - 0.5) / (self.levels - 1)
        edges[0], edges[-1] = 0.0, 1.0
        return edges


_RESIDUAL_BINS = 64
_RESIDUAL_RANGE = (math.log(1e-6), math.log(0.3))


def _noise_profile(image: np.ndarray) -> np.ndarray:
    """Noise std as a function of encoded value, from each pixel's difference to its 3×3 mean.

    Texture inflates such differences, so each value bin takes a low quantile of them (flat
    areas dominate it): the 25th percentile of |N(0, σ)| is 0.319 σ, and a pixel minus its 3×3
    mean has std σ·√(8/9). Quantiles come from a joint (value, log residual) histogram of every
    other pixel. Heavily textured scenes (foliage) still read noisier than they are, which only
    costs their shadow samples some weight.
    """
    blurred = cv2.blur(image, (3, 3), borderType=cv2.BORDER_REFLECT)
    residual = np.abs(image - blurred) / math.sqrt(8.0 / 9.0)
    if blurred.ndim == 2:
        blurred, residual = blurred[..., None], residual[..., None]
    residual = residual[::2, ::2].reshape(-1)
    values = blurred[::2, ::2].reshape(-1)
    value_bin = np.searchsorted(NOISE_BINS, values)
    lo, hi = _RESIDUAL_RANGE
    residual_bin = (np.log(np.maximum(residual, 1e-6)) - lo) * ((_RESIDUAL_BINS - 1) / (hi - lo))
    residual_bin = np.clip(residual_bin.astype(np.int64), 0, _RESIDUAL_BINS - 1)
    joint = np.bincount(value_bin * _RESIDUAL_BINS + residual_bin,
                        minlength=(NOISE_BINS.size + 1) * _RESIDUAL_BINS)
    joint = joint.reshape(NOISE_BINS.size + 1, _RESIDUAL_BINS)[:NOISE_BINS.size]
    totals = joint.sum(axis=1)
    low = np.argmax(np.cumsum(joint, axis=1) >= NOISE_QUANTILE * totals[:, None], axis=1)
    residual_at = np.exp(lo + (low + 0.5) * (hi - lo) / (_RESIDUAL_BINS - 1))
    noise = np.where(totals >= 16, residual_at / NOISE_QUANTILE_SCALE, np.nan)
    known = np.isfinite(noise)
    if not known.any():
        return np.zeros(NOISE_BINS.size)
    index = np.arange(NOISE_BINS.size)
    return np.interp(index, index[known], noise[known])


def _working_copy(frame: np.ndarray) -> _WorkingFrame | None:
    """The frame reduced to about WORK_PIXELS by area averaging, with its clipping mask."""
    image = np.asarray(frame)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[0] < 2 or image.shape[1] < 2 or not 1 <= image.shape[2] <= 4:
        return None
    image = np.ascontiguousarray(image, dtype=np.float32)
    top = float(image.max())
    if not math.isfinite(top):
        image = np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0)
        top = float(image.max())
    top = min(max(top, 0.0), 1.0)
    # Saturation level: the top value if many pixels share it (real clipping), else 1.
    level = top if np.count_nonzero(image >= top - 1e-3) > 1e-3 * image.size else 1.0
    level = max(level, 0.5)
    h, w = image.shape[:2]
    factor = max(1, int(round(math.sqrt(h * w / WORK_PIXELS))))
    levels = 4096
    if factor > 1:
        size = (max(1, w // factor), max(1, h // factor))
        saturated = cv2.threshold(image, CLIP_MARGIN * level, 1.0, cv2.THRESH_BINARY)[1]
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        saturated = cv2.resize(saturated, size, interpolation=cv2.INTER_AREA)
        if image.ndim == 2:
            image, saturated = image[..., None], saturated[..., None]
        # Averaging a saturated pixel with unsaturated neighbours gives a value below
        # saturation that no pixel of another exposure matches: drop such mixed pixels.
        # Wholly saturated ones stay: they fill the top ranks of both histograms.
        clipped = ((saturated > 0) & (saturated < 1)).any(axis=2)
    else:
        sample = image.reshape(-1)[:: max(1, image.size // 4096)]
        # 8-bit frames (untouched by averaging) get one bin per code: no staircase CDF.
        if np.all(np.abs(sample * 255.0 - np.rint(sample * 255.0)) < 1e-3):
            levels = 256
        clipped = np.zeros(image.shape[:2], bool)
    return _WorkingFrame(np.clip(image, 0.0, 1.0), clipped, CLIP_MARGIN * level, levels)


def _histogram(frame: _WorkingFrame, keep: np.ndarray, codes: np.ndarray | None = None
               ) -> _FrameHistogram:
    """Per-channel cumulative histograms of the kept pixels."""
    codes = frame.codes if codes is None else codes
    channels = codes.shape[2]
    mask = keep.astype(np.uint8)
    cdf = np.zeros((channels, frame.levels + 1), np.float64)
    for c in range(channels):
        counts = cv2.calcHist([codes], [c], mask, [frame.levels], [0, frame.levels])
        np.cumsum(counts.reshape(-1), out=cdf[c, 1:])
    cdf /= np.maximum(cdf[:, -1:], 1.0)
    return _FrameHistogram(cdf, frame.edges)


# ---------------------------------------------------------------------------------------------
# Comparametric samples


@dataclass
class _Samples:
    x: np.ndarray  # short-frame values
    y: np.ndarray  # matched long-frame values τ(x)
    log_ratio: np.ndarray  # ln(t_long / t_short)
    weight: np.ndarray


def _transfer_lut(short: _FrameHistogram, long: _FrameHistogram, channel: int) -> np.ndarray:
    """τ sampled at the short frame's bin edges: the long-frame value of equal rank."""
    long_cdf = long.cdf[channel] + np.arange(long.cdf.shape[1]) * 1e-12  # strictly increasing
    return np.interp(short.cdf[channel], long_cdf, long.edges)


def _shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate by whole pixels, filling the uncovered border with edge values."""
    if dy == 0 and dx == 0:
        return image
    h, w = image.shape[:2]
    ys = np.clip(np.arange(h) - dy, 0, h - 1)
    xs = np.clip(np.arange(w) - dx, 0, w - 1)
    return image[ys][:, xs]


def _register(mapped: np.ndarray, target: np.ndarray) -> tuple[int, int]:
    """Whole-pixel translation taking ``mapped`` onto ``target`` (phase correlation), or (0, 0)."""
    a = np.ascontiguousarray(np.sum(mapped, axis=2, dtype=np.float32))
    b = np.ascontiguousarray(np.sum(target, axis=2, dtype=np.float32))
    scale = 2 if min(a.shape) >= 128 else 1  # half resolution is plenty for a motion mask
    if scale > 1:
        size = (a.shape[1] // scale, a.shape[0] // scale)
        a = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
        b = cv2.resize(b, size, interpolation=cv2.INTER_AREA)
    h, w = a.shape
    if min(h, w) < 16 or a.std() < 1e-4 or b.std() < 1e-4:
        return 0, 0
    window = cv2.createHanningWindow((w, h), cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(a, b, window)
    if response < 0.05 or abs(dx) > 0.1 * w or abs(dy) > 0.1 * h:
        return 0, 0
    return int(round(dy * scale)), int(round(dx * scale))


def _pair_samples(short_frame: _WorkingFrame, long_frame: _WorkingFrame, log_ratio: float
                  ) -> _Samples:
    """Sample τ between two frames by matching ranks, keeping only trustworthy points.

    The two frames' histograms are always taken over the *same* pixel positions, so whatever
    is dropped, ranks of the static scene still correspond. Dropped: pixels that averaging
    mixed with saturated ones, the border uncovered by the camera shift, and pixels that still
    disagree after a first transfer function maps the short frame onto the long one (moving
    objects), since those change the histograms without obeying τ.
    """
    empty = _Samples(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0))
    if short_frame.image.shape != long_frame.image.shape:
        return empty
    keep = ~(short_frame.clipped | long_frame.clipped)
    if keep.sum() < 64:
        return empty
    short_codes = short_frame.codes
    # The first transfer function only has to find moving objects: every other pixel will do.
    sparse = np.zeros_like(keep)
    sparse[::2, ::2] = keep[::2, ::2]
    short = _histogram(short_frame, sparse)
    long = _histogram(long_frame, sparse)
    channels = short_codes.shape[2]
    centres = np.arange(short_frame.levels) / (short_frame.levels - 1)
    for _ in range(MOTION_PASSES):
        # τ at every short-frame code, then applied to the frame by lookup.
        mapped = np.empty(short_frame.image.shape, np.float32)
        for c in range(channels):
            table = np.interp(centres, short.edges, _transfer_lut(short, long, c))
            mapped[..., c] = table.astype(np.float32)[short_frame.codes[..., c]]
        dy, dx = _register(mapped, long_frame.image)
        short_codes = _shift(short_frame.codes, dy, dx)
        mapped = _shift(mapped, dy, dx)
        h, w = keep.shape
        border = np.zeros_like(keep)
        border[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = True
        clipped = _shift(short_frame.clipped, dy, dx) | long_frame.clipped
        difference = channel_max(np.abs(mapped - long_frame.image))
        disagreement = cv2.GaussianBlur(difference, (0, 0), 1.0)
        moving = cv2.dilate((disagreement > MOTION_THRESHOLD).astype(np.uint8),
                            np.ones((3, 3), np.uint8)) > 0
        if np.count_nonzero(moving & keep) > MAX_MOVING_FRACTION * np.count_nonzero(keep):
            moving[:] = False
        keep = border & ~clipped & ~moving
        if keep.sum() < 64:
            return empty
        short = _histogram(short_frame, keep, short_codes)
        long = _histogram(long_frame, keep)
    xs, ys, ws = [], [], []
    grid = np.exp(np.linspace(math.log(DARK_LEVEL), math.log(short_frame.clip_level),
                              N_SAMPLES + 1))
    points = np.sqrt(grid[:-1] * grid[1:])
    for c in range(channels):
        rank_edges = np.interp(grid, short.edges, short.cdf[c])
        rank = np.interp(points, short.edges, short.cdf[c])
        mass = np.diff(rank_edges)
        matched = np.interp(points, short.edges, _transfer_lut(short, long, c))
        usable = ((mass > 0) & (rank > TAIL_PROBABILITY) & (rank < 1.0 - TAIL_PROBABILITY)
                  & (matched < long_frame.clip_level) & (matched > points))
        x, y = points[usable], matched[usable]
        # Noise in stops of linear exposure, with the log–log slope of a typical curve (2.2):
        # noisy ranks are biased (the histogram is blurred), so noisy samples count less.
        noise_stops = DEFAULT_GAMMA / math.log(2.0) * np.hypot(short_frame.noise_at(x) / x,
                                                               long_frame.noise_at(y) / y)
        # Texture can make a whole frame read noisy; its quietest samples are still the best.
        limit = max(MAX_NOISE_STOPS, float(np.quantile(noise_stops, 0.3))) if x.size else 0.0
        quiet = noise_stops <= limit
        xs.append(x[quiet])
        ys.append(y[quiet])
        ws.append(np.sqrt(mass[usable][quiet]) / (1.0 + (noise_stops[quiet] / NOISE_STOPS) ** 2))
    x = np.concatenate(xs)
    return _Samples(x, np.concatenate(ys), np.full(x.size, log_ratio), np.concatenate(ws))


def _merge(samples: list[_Samples]) -> _Samples:
    return _Samples(*(np.concatenate([getattr(s, name) for s in samples])
                      for name in ("x", "y", "log_ratio", "weight")))


# ---------------------------------------------------------------------------------------------
# The fit: h = ln g, piecewise linear in ln x, h(1) = 0, increasing


def _nodes(x_min: float) -> np.ndarray:
    """Node positions in ln x, uniform in ln(x + NODE_OFFSET) from x_min to 1."""
    lo = math.log(max(x_min, NODE_FLOOR) + NODE_OFFSET)
    s = np.linspace(lo, math.log(1.0 + NODE_OFFSET), N_NODES)
    return np.log(np.maximum(np.exp(s) - NODE_OFFSET, NODE_FLOOR * 0.5))


def _interp_matrix(log_x: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Rows that evaluate the piecewise-linear h at ``log_x`` from node values (linear ends)."""
    n = nodes.size
    j = np.clip(np.searchsorted(nodes, log_x) - 1, 0, n - 2)
    frac = (log_x - nodes[j]) / (nodes[j + 1] - nodes[j])
    rows = np.zeros((log_x.size, n))
    rows[np.arange(log_x.size), j] = 1.0 - frac
    rows[np.arange(log_x.size), j + 1] = frac
    return rows


def _evaluate(log_x: np.ndarray, nodes: np.ndarray, h: np.ndarray) -> np.ndarray:
    return _interp_matrix(log_x, nodes) @ h


def _curvature_matrix(nodes: np.ndarray) -> np.ndarray:
    """Second divided differences of h in ln x (zero for any power law)."""
    n = nodes.size
    rows = np.zeros((n - 2, n))
    for i in range(1, n - 1):
        left, right = nodes[i] - nodes[i - 1], nodes[i + 1] - nodes[i]
        scale = 2.0 / (left + right)
        rows[i - 1, i - 1] = scale / left
        rows[i - 1, i] = -scale * (1.0 / left + 1.0 / right)
        rows[i - 1, i + 1] = scale / right
    # Scale so a kink of one unit of slope costs about the same wherever the nodes sit.
    return rows * np.mean(np.diff(nodes))


def _fit(samples: _Samples, nodes: np.ndarray, prior_h: np.ndarray | None = None
         ) -> tuple[np.ndarray, np.ndarray]:
    """Node values of h (h[-1] = 0, increasing) and per-sample residuals in natural-log units."""
    n = nodes.size
    design = _interp_matrix(np.log(samples.y), nodes) - _interp_matrix(np.log(samples.x), nodes)
    target = samples.log_ratio
    # h_j = −Σ_{m ≥ j} d_m with d ≥ 0: monotone by construction, h at the last node is 0.
    to_h = np.zeros((n, n - 1))
    for j in range(n - 1):
        to_h[: j + 1, j] = -1.0
    curvature = _curvature_matrix(nodes)
    base_weight = samples.weight / max(samples.weight.sum(), 1e-12)
    robust = np.ones_like(base_weight)
    regular_target = np.zeros(n - 2) if prior_h is None else curvature @ prior_h
    # A weak pull toward the prior's values decides h where no sample reaches (the gap below
    # saturation above all usable samples, and the deep shadows).
    level_weight = 0.0 if prior_h is None else math.sqrt(LEVEL_WEIGHT / n)
    level_target = np.zeros(n) if prior_h is None else prior_h
    h = np.zeros(n)
    for _ in range(3):
        w = np.sqrt(base_weight * robust)
        a = np.vstack([(design @ to_h) * w[:, None],
                       math.sqrt(SMOOTHNESS) * (curvature @ to_h),
                       level_weight * to_h])
        b = np.concatenate([target * w, math.sqrt(SMOOTHNESS) * regular_target,
                            level_weight * level_target])
        h = to_h @ lower_bounded_lstsq(a, b, lower=1e-6)
        residual = design @ h - target
        scaled = np.abs(residual) / (HUBER_STOPS * math.log(2.0))
        robust = np.where(scaled <= 1.0, 1.0, 1.0 / np.maximum(scaled, 1e-12))
    return h, design @ h - target


def _parametric_basis(x: np.ndarray) -> np.ndarray:
    """Columns ln x, (x−1), (x−1)², (x−1)³: all zero at x = 1 (the pin g(1) = 1).

    ln x alone is a power law; the polynomial terms bend it the way toes and shoulders of
    real tone curves do (a log or filmic curve is close to linear in x near the top).
    """
    d = x - 1.0
    return np.stack([np.log(x), d, d * d, d * d * d][:PRIOR_TERMS], axis=-1)


def _parametric_prior(samples: _Samples) -> Prior | None:
    """A smooth few-parameter fit of h as a function of x (see :func:`_parametric_basis`).

    Terms are added one at a time and kept only if they cut the residual clearly: samples
    spanning a narrow range cannot tell a shoulder from a steeper power law, and a wrongly
    chosen shoulder would set the whole curve's level.
    """
    w = np.sqrt(samples.weight / max(samples.weight.sum(), 1e-12))
    design = _parametric_basis(samples.y) - _parametric_basis(samples.x)
    target = samples.log_ratio * w
    best, best_rms = None, math.inf
    for terms in range(1, PRIOR_TERMS + 1):
        ridge = math.sqrt(PRIOR_RIDGE) * np.diag([0.0, 1.0, 1.0, 1.0][:terms])
        a = np.vstack([design[:, :terms] * w[:, None], ridge])
        b = np.concatenate([target, np.zeros(terms)])
        try:
            coefficients = np.linalg.lstsq(a, b, rcond=None)[0]
        except np.linalg.LinAlgError:
            break
        rms = float(np.sqrt(np.sum((design[:, :terms] * w[:, None] @ coefficients - target) ** 2)))
        if best is None or rms < PRIOR_GAIN * best_rms - PRIOR_GAIN_ABS:
            best = np.concatenate([coefficients, np.zeros(PRIOR_TERMS - terms)])
            best_rms = rms
    # Only a curve that rises at black (a power law there) is a usable shape.
    if best is None or not 0.5 <= best[0] <= 5.0:
        return None
    return lambda x: _parametric_basis(x) @ best


Prior = Callable[[np.ndarray], np.ndarray]
"""A prior shape: ln g as a function of encoded x (0 at x = 1)."""

LIBRARY_SIZE = 384
"""Curves drawn from the simulator's response families for the shape prior."""
LIBRARY_EXPONENTS = (0.75, 1.35)
"""Range of the power a library curve may be raised to (g_lib**a) to fit a bracket."""


@functools.cache
def _curve_library() -> np.ndarray:
    """(LIBRARY_SIZE + 10, LUT_SIZE) ln f⁻¹ of camera-like curves on the LUT grid.

    Drawn with a fixed seed from the simulator's response families (and sRGB, plain gammas):
    where a bracket's samples stop, the curve that best explains them decides the shape, so the
    fit continues like a camera curve instead of like a power law. Built on first use (tens
    of ms), never at import."""
    from gmodiff.camera.response import GammaResponse, SRGBResponse, random_response

    rng = np.random.default_rng(20261206)
    grid = np.linspace(0.0, 1.0, LUT_SIZE)
    curves = [SRGBResponse(), *(GammaResponse(g) for g in np.linspace(1.8, 2.6, 9))]
    curves += [random_response(rng) for _ in range(LIBRARY_SIZE)]
    logs = np.log(np.maximum(np.stack([c.inverse(grid) for c in curves]).astype(np.float64),
                             1e-12))
    logs[:, 0] = logs[:, 1] + 4.0 * (logs[:, 1] - logs[:, 2])  # finite at black
    return logs


def _library_prior(samples: _Samples) -> Prior:
    """ln g of the library curve, raised to its best power, that best explains the samples
    (weighted comparametric residual), as a function of x.

    The power absorbs a contrast difference (a camera a little steeper or flatter than the
    nearest drawn curve); its range keeps a poorly sampled bracket from bending a shape into
    something no camera makes."""
    logs = _curve_library()
    position = np.clip(np.stack([samples.x, samples.y]), 0.0, 1.0) * (LUT_SIZE - 1)
    index = np.minimum(position.astype(np.int64), LUT_SIZE - 2)
    frac = position - index
    at = logs[:, index] * (1.0 - frac) + logs[:, index + 1] * frac  # (N, 2, S)
    delta = at[:, 1] - at[:, 0]
    w = samples.weight / max(samples.weight.sum(), 1e-12)
    r = samples.log_ratio
    power = np.sum(w * delta * r, axis=1) / np.maximum(np.sum(w * delta * delta, axis=1), 1e-12)
    power = np.clip(power, *LIBRARY_EXPONENTS)
    rms = np.sum(w * (power[:, None] * delta - r) ** 2, axis=1)
    best = int(np.argmin(rms))
    curve, scale = logs[best], float(power[best])
    grid = np.linspace(0.0, 1.0, LUT_SIZE)
    return lambda x: scale * np.interp(x, grid, curve)


def _rms_stops(residual: np.ndarray, weight: np.ndarray) -> float:
    w = weight / max(weight.sum(), 1e-12)
    return float(math.sqrt(np.sum(w * residual**2)) / math.log(2.0))


def _lut_from_nodes(nodes: np.ndarray, h: np.ndarray, prior: Prior | None) -> np.ndarray:
    """Sample g = exp(h) on the LUT grid; a power law continues it below the first node.

    Its exponent is the prior's log–log slope where the samples end (else the nodes' slope):
    curves change slope slowly toward black, and a longer-range shape would be a guess.
    """
    grid = np.linspace(0.0, 1.0, LUT_SIZE)
    log_grid = np.log(np.maximum(grid, 1e-12))
    log_g = np.interp(log_grid, nodes, h)
    below = (log_grid < nodes[0]) & (grid > 0)
    if prior is not None:  # the prior's log–log slope where the samples end
        step = 0.05
        ends = prior(np.exp(nodes[0] + np.array([0.0, step])))
        slope = (ends[1] - ends[0]) / step
    else:
        span = min(4, nodes.size - 1)
        slope = (h[span] - h[0]) / (nodes[span] - nodes[0])
    slope = float(np.clip(slope, *TOE_SLOPES))
    log_g[below] = h[0] + slope * (log_grid[below] - nodes[0])
    lut = np.exp(log_g)
    lut[0], lut[-1] = 0.0, 1.0
    lut = np.maximum.accumulate(np.clip(lut, 0.0, 1.0))
    return lut.astype(np.float32)


def _lut_log_at(lut: np.ndarray, values: np.ndarray) -> np.ndarray:
    grid = np.linspace(0.0, 1.0, LUT_SIZE)
    return np.log(np.maximum(np.interp(values, grid, lut), 1e-12))


def _hint_residual(lut: np.ndarray, samples: _Samples) -> np.ndarray:
    return _lut_log_at(lut, samples.y) - _lut_log_at(lut, samples.x) - samples.log_ratio


def _curve_error(lut: np.ndarray, samples: _Samples) -> float:
    """RMS residual (stops) of a fixed curve on the samples, comparable with the free fit's."""
    return _rms_stops(_hint_residual(lut, samples), samples.weight)


def _prepare(frames: Sequence[np.ndarray], exposure_times: Sequence[float]
             ) -> tuple[list[_WorkingFrame], np.ndarray] | None:
    """Usable frames and times sorted by time, distinct times only; None if fewer than two."""
    if len(frames) != len(exposure_times) or len(frames) < 2:
        return None
    times = np.asarray([float(t) for t in exposure_times], dtype=np.float64)
    if not np.all(np.isfinite(times)) or np.any(times <= 0):
        return None
    order = np.argsort(times, kind="stable")
    kept_frames, kept_times = [], []
    for i in order:
        image = _working_copy(frames[i])
        if image is None:
            return None
        if kept_times and times[i] <= kept_times[-1] * 1.01:
            continue  # the same exposure twice says nothing about the curve
        kept_frames.append(image)
        kept_times.append(times[i])
    if len(kept_frames) < 2 or len({f.image.shape for f in kept_frames}) != 1:
        return None
    return kept_frames, np.asarray(kept_times)


def estimate_response(frames: Sequence[np.ndarray], exposure_times: Sequence[float],
                      hint: str | None = None) -> ResponseEstimate:
    """Estimate f⁻¹ from a bracket (frames (H, W, 3) in [0, 1], any order, times in any unit).

    ``hint`` ("srgb" or "gamma2.2", from EXIF/ICC) is returned as the answer when it explains the
    bracket about as well as the free fit, and is the fallback when the bracket is uninformative.
    Never raises on valid input: a bracket that carries too little information gives gamma 2.2
    (source ``"fallback-gamma-2.2"``).
    """
    hint = _normalise_hint(hint)
    prepared = _prepare(frames, exposure_times)
    if prepared is None:
        return _fallback(hint)
    images, times = prepared
    pairs = []
    for a in range(len(images)):
        for b in range(a + 1, len(images)):
            pairs.append(_pair_samples(images[a], images[b], math.log(times[b] / times[a])))
    samples = _merge(pairs)
    if samples.x.size < MIN_ROWS or float(np.log(samples.y.max() / samples.x.min())) < 0.2:
        return _fallback(hint)
    nodes = _nodes(float(samples.x.min()))
    # Two priors decide the shape where the samples are thin; the one whose fit explains the
    # samples clearly better wins, else the library's (see _library_prior).
    fits = []
    for prior in (_library_prior(samples), _parametric_prior(samples)):
        prior_h = None if prior is None else prior(np.exp(nodes))
        h, residual = _fit(samples, nodes, prior_h)
        fits.append((_rms_stops(residual, samples.weight), h, prior))
    fit_error, h, prior = fits[0]
    if fits[1][0] * PRIOR_SWITCH[0] + PRIOR_SWITCH[1] < fit_error:
        fit_error, h, prior = fits[1]
    if hint is not None:
        hinted = _fallback(hint)
        hint_error = _curve_error(hinted.inverse_lut, samples)
        if _close_enough(hint_error, fit_error):
            return ResponseEstimate(hinted.inverse_lut, hinted.source, hint_error)
    scored = [(_curve_error(c.inverse_lut, samples), c) for c in _standard_curves(samples)]
    best_error, best = min(scored, key=lambda e: e[0])  # the first listed wins a tie
    if _close_enough(best_error, fit_error):
        return ResponseEstimate(best.inverse_lut, best.source, best_error)
    return ResponseEstimate(_lut_from_nodes(nodes, h, prior), "comparametric", fit_error)


def canonicalise_frames(frames: Sequence[np.ndarray], estimate: ResponseEstimate,
                        gamma: float = DEFAULT_GAMMA) -> list[np.ndarray]:
    """Re-encode frames as f⁻¹(L)**(1/gamma), the encoding spec §1's ``L**2.2 / t`` assumes."""
    return [np.power(estimate.linearise(frame), np.float32(1.0 / gamma)).astype(np.float32)
            for frame in frames]
