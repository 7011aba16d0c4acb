"""Classical exposure-merging baselines on a :class:`Scene` (no learning).

Each function returns float32 (H, W, 3) linear HDR relative to the t=1 exposure, aligned to the
reference frame — the ground truth's convention (spec §1). Frames are linearised with an inverse
camera response ``inverse`` (encoded → linear, both in [0, 1]) when one is given, else with the
gamma 2.2 the networks assume (``L**2.2 / t``). The registry in ``gmodiff.baselines`` passes the
response estimated from the bracket (``gmodiff.camera.calibration``): real JPEGs are not gamma 2.2, and
a gamma-2.2 merge of them crushed shadows ×0.13 (issue #28). Canonical frames (already gamma 2.2,
``gmodiff.inputs.canonical``) are merged with the default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from gmodiff.camera.radiance import GAMMA
from gmodiff.channels import channel_all, channel_mean
from gmodiff.io.scene import Scene
from gmodiff.pixelmath import owned, power, uniform_lookup

Inverse = Callable[[np.ndarray], np.ndarray]
"""An inverse camera response: encoded values in [0, 1] → linear values in [0, 1]."""
WEIGHT_FLOOR = 1e-4
"""Smallest weight a frame keeps, so a fully rejected pixel still has a defined merge."""


def linearise(ldr: np.ndarray, exposure_time: float, inverse: Inverse | None = None) -> np.ndarray:
    """Non-linear LDR in [0, 1] → linear radiance relative to t=1: ``inverse(L) / t``
    (``L**2.2 / t`` without an inverse response)."""
    encoded = np.clip(ldr, 0.0, 1.0)
    linear = power(encoded, GAMMA) if inverse is None else np.asarray(inverse(encoded), np.float32)
    if owned(linear, ldr):
        linear /= np.float32(exposure_time)  # a fresh array: no tile-sized copy
        return linear
    return (linear / np.float32(exposure_time)).astype(np.float32, copy=False)


def triangle_weight(ldr: np.ndarray, shortest: bool = False, longest: bool = False) -> np.ndarray:
    """Hat weight ``1 − |2L − 1|``: trust mid-tones, distrust clipped blacks and whites.

    The shortest frame keeps full weight on bright values and the longest on dark values:
    nothing better exists there, so the bracket's ends must carry them.
    """
    ldr = np.asarray(ldr)
    # ``1 − |2L − 1|`` operation by operation in one buffer, in L's float type: the same numbers
    # as the expression, without its temporaries (a 12-MP frame: 0.8 → 0.1-0.4 s).
    weight = np.multiply(ldr, 2.0)
    weight -= 1.0
    np.abs(weight, out=weight)
    np.subtract(1.0, weight, out=weight)
    if shortest:
        np.copyto(weight, 1.0, where=ldr > 0.5)
    if longest:
        np.copyto(weight, 1.0, where=ldr < 0.5)
    return np.maximum(weight, 0.0, out=weight).astype(np.float32, copy=False)


def reference_only(scene: Scene, inverse: Inverse | None = None) -> np.ndarray:
    """The reference frame linearised; its clipped highlights stay clipped."""
    return linearise(scene.reference, float(scene.exposure_times[scene.reference_index]), inverse)


class _WeightedSum:
    """Σ w·linearise(frame) / Σ w, added one frame at a time so a merge holds one frame's
    temporaries, not all of them (12-MP deghost peaked at 2.6 GB holding every frame's)."""

    def __init__(self, shape: tuple[int, ...], inverse: Inverse | None):
        # float32 sums of three terms lose nothing that matters (float64 doubled the
        # accumulators' memory: 0.6 GB at 12 MP).
        self.numerator = np.zeros(shape, dtype=np.float32)
        self.denominator = np.zeros(shape, dtype=np.float32)
        self.inverse = inverse

    def add(self, frame: np.ndarray, time: float, weight: np.ndarray) -> None:
        linear = linearise(frame, float(time), self.inverse)
        linear *= weight
        self.numerator += linear
        self.denominator += weight

    def result(self, fallback: np.ndarray) -> np.ndarray:
        # In the accumulators' own buffers (the sums are not read again): two 12-MP copies less.
        empty = self.denominator <= 1e-8
        np.maximum(self.denominator, np.float32(1e-12), out=self.denominator)
        merged = np.divide(self.numerator, self.denominator, out=self.numerator)
        np.copyto(merged, np.asarray(fallback, np.float32), where=empty)
        return merged


def triangle_merge(scene: Scene, inverse: Inverse | None = None) -> np.ndarray:
    """Per-channel triangle-weighted average of all linearised frames (ghosts where things move)."""
    last = len(scene.frames) - 1
    total = _WeightedSum(scene.reference.shape, inverse)
    for index, (frame, time) in enumerate(zip(scene.frames, scene.exposure_times, strict=True)):
        total.add(frame, time, triangle_weight(frame, shortest=index == 0, longest=index == last))
    return total.result(reference_only(scene, inverse))


# ---------------------------------------------------------------------------------------------
# Reference-guided deghosting


QUANTILE_SAMPLES = 1 << 20
"""Histogram matching reads at most this many pixels of a frame (a regular subsample): the
quantiles of 12 M pixels and of 1 M of them differ by far less than one 8-bit level, and the
full sort was the merge's slowest step at camera resolution."""
MAPPING_TABLE = 4097
"""Grid points of a :class:`ChannelMapping`'s lookup table."""
ALIGN_MAX_SIDE = 1024
"""The merge's ECC fit runs on frames downscaled to at most this long side (the translation is
scaled back), so its cost stops growing with the photo's size."""


@dataclass(frozen=True)
class ChannelMapping:
    """A monotone map from one frame's values into the reference's exposure, per channel."""

    source: np.ndarray
    """(C, Q) quantiles of the frame."""
    target: np.ndarray
    """(C, Q) matching quantiles of the reference."""
    _tables: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """The map through its lookup table (:meth:`tables`): for full-size frames."""
        mapped = np.empty_like(image, dtype=np.float32)
        for c, table in enumerate(self.tables()):
            mapped[..., c] = uniform_lookup(image[..., c], table)
        return mapped

    def exact(self, image: np.ndarray) -> np.ndarray:
        """The map through the quantiles themselves. The alignment fit reads this: ECC on
        a mapped frame moved by 0.1 px when the map moved by 3e-4 (a 1-MP bracket)."""
        mapped = np.empty_like(image, dtype=np.float32)
        for c in range(image.shape[2]):
            # Flat runs (clipped regions) make the source quantiles non-strictly increasing;
            # np.interp takes the last matching value, which is fine for a monotone map.
            mapped[..., c] = np.interp(image[..., c], self.source[c], self.target[c])
        return mapped

    def tables(self) -> np.ndarray:
        """(C, MAPPING_TABLE) the map on an even grid over [0, 1]: looking a value up there is
        12× faster than ``np.interp`` over the quantiles, and differs from it by at most 3e-4
        (the map's kinks fall between grid points; it only feeds the rejection's blurred
        difference and the alignment fit)."""
        if self._tables is None:
            grid = np.linspace(0.0, 1.0, MAPPING_TABLE)
            object.__setattr__(self, "_tables", np.stack(
                [np.interp(grid, s, t) for s, t in zip(self.source, self.target)]).astype(np.float32))
        return self._tables


def fit_mapping(source: np.ndarray, target: np.ndarray) -> ChannelMapping:
    """Histogram matching of ``source`` onto ``target``, per channel (see :func:`intensity_mapping`)."""
    quantiles = np.linspace(0.0, 1.0, 1025)
    channels = source.shape[2]
    src, dst = _subsample(source), _subsample(target)
    return ChannelMapping(np.stack([_quantiles(src[..., c], quantiles) for c in range(channels)]),
                          np.stack([_quantiles(dst[..., c], quantiles) for c in range(channels)]))


def intensity_mapping(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Map ``source`` into ``target``'s exposure by per-channel histogram matching.

    The intensity mapping function between two exposures of one scene is monotone, so matching
    cumulative histograms recovers it without knowing the camera response (Grossberg & Nayar);
    a few moving pixels barely move the histograms.
    """
    return fit_mapping(source, target)(source)


def _subsample(image: np.ndarray) -> np.ndarray:
    """Every k-th row and column, k the smallest keeping at most ``QUANTILE_SAMPLES`` pixels."""
    step = max(1, math.ceil(math.sqrt(image.shape[0] * image.shape[1] / QUANTILE_SAMPLES)))
    return image[::step, ::step] if step > 1 else image


def _quantiles(values: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """``np.quantile`` (linear method) of many quantiles at once: one sort instead of a
    partition per quantile."""
    ordered = np.sort(values, axis=None).astype(np.float64)
    position = quantiles * (ordered.size - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, ordered.size - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _grey(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(channel_mean(np.asarray(image, np.float32)))


def estimate_alignment(frame: np.ndarray, reference: np.ndarray,
                       max_side: int = ALIGN_MAX_SIDE) -> np.ndarray:
    """2×3 Euclidean warp taking reference pixel coordinates into ``frame`` (ECC, identity on failure).

    ``frame`` should already be exposure-matched to ``reference``. The fit runs on copies
    downscaled to ``max_side``; the warp is for the full-size frames.
    """
    h, w = frame.shape[:2]
    scale, size = _fit_size(h, w, max_side)
    frame, reference = _grey(frame), _grey(reference)
    if scale < 1.0:
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        reference = cv2.resize(reference, size, interpolation=cv2.INTER_AREA)
    return _checked(_rescale_warp(_fit_euclidean(frame, reference), scale), h, w)


def _fit_size(h: int, w: int, max_side: int = ALIGN_MAX_SIDE) -> tuple[float, tuple[int, int]]:
    """(scale, (width, height)) of the copy an ECC fit of an h×w frame runs on."""
    scale = min(1.0, max_side / max(h, w))
    return scale, (max(1, round(w * scale)), max(1, round(h * scale)))


def _fit_euclidean(moving: np.ndarray, template: np.ndarray) -> np.ndarray:
    """ECC fit of grey images; the identity when it fails or barely beats no motion."""
    identity = np.eye(2, 3, dtype=np.float32)
    # Clipped and black pixels are masked out so they do not pull the fit.
    usable = ((template > 0.03) & (template < 0.97) & (moving > 0.03) & (moving < 0.97))
    if usable.mean() < 0.05:
        return identity
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-5)
    mask = usable.astype(np.uint8)
    try:
        still = cv2.computeECC(template, moving, mask)
        fitted, warp = cv2.findTransformECC(template, moving, identity.copy(),
                                            cv2.MOTION_EUCLIDEAN, criteria, mask, 5)
    except cv2.error:
        return identity
    # Noisy or nearly clipped frames give fits that barely beat "no motion": keep the identity
    # unless the warp explains the frame clearly better.
    return identity if fitted - still < 0.01 else warp.astype(np.float32)


def _rescale_warp(warp: np.ndarray, scale: float) -> np.ndarray:
    """A warp fitted on images downscaled by ``scale``, for the full-size images."""
    if scale >= 1.0:
        return warp
    # A Euclidean warp keeps its rotation; with pixel centres x_full = (x_small + 0.5)/s − 0.5
    # the translation becomes t/s + c − R·c, c = 0.5/s − 0.5.
    rotation = warp[:, :2]
    centre = np.full(2, 0.5 / scale - 0.5, np.float32)
    shift = warp[:, 2] / scale + centre - rotation @ centre
    return np.concatenate([rotation, shift[:, None]], axis=1).astype(np.float32)


MIN_SHIFT_PX = 0.5
"""Fitted warps that move no corner this far are taken as no motion (see :func:`_checked`)."""


def _checked(warp: np.ndarray, h: int, w: int) -> np.ndarray:
    """``warp``, or the identity when it moves a corner implausibly far or not measurably."""
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], np.float32)
    displacement = np.abs(corners @ warp.T - corners[:, :2]).max()
    # A fit that wanders far is a failure, not camera shake. A sub-half-pixel one is what the
    # interpolation's blur alone can buy: on a static noise-free 64×96 bracket ECC returned a
    # 0.45-px shift that raised its correlation by 0.0101, just over the 0.01 bar on one CPU and
    # under it on another; resampling for it only blurs the frame.
    if displacement > 0.1 * max(h, w) or displacement < MIN_SHIFT_PX:
        return np.eye(2, 3, dtype=np.float32)
    return warp


def warp_to_reference(frame: np.ndarray, warp: np.ndarray) -> np.ndarray:
    """Resample ``frame`` onto the reference grid with a warp from :func:`estimate_alignment`."""
    h, w = frame.shape[:2]
    aligned = cv2.warpAffine(frame, warp, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REPLICATE)
    return np.clip(aligned, 0.0, 1.0)


def consistency(frame: np.ndarray, reference: np.ndarray, low: float = 0.06,
                high: float = 0.15, blur_sigma: float = 1.5, grow_px: int = 3,
                mapping: ChannelMapping | None = None) -> np.ndarray:
    """Per-pixel trust in ``frame`` (H, W) in [0, 1]: 1 where it agrees with the reference.

    ``frame`` is mapped into the reference's exposure; where the reference is clipped the
    mapping saturates too, so a short frame is only rejected there if it is darker than the
    clipping level allows (and a long frame only if brighter in the reference's blacks).
    The blurred disagreement ramps from ``low`` to ``high``; rejections grow by ``grow_px``
    so ghost edges do not leak. ``mapping`` (fitted on the whole frame) is fitted here when None.
    """
    mapped = (mapping or fit_mapping(frame, reference))(frame)  # a fresh float32 array
    np.subtract(mapped, reference, out=mapped)  # in place: 12-MP temporaries cost seconds
    difference = channel_mean(np.abs(mapped, out=mapped))
    # Where the frame itself is clipped it gets (almost) no merge weight anyway; rejecting it
    # there would only grow rejections into good neighbouring pixels.
    informative = channel_all((frame > 0.02) & (frame < 0.98))
    difference = np.where(informative, difference, np.float32(0.0)).astype(np.float32, copy=False)
    difference = cv2.GaussianBlur(difference, (0, 0), blur_sigma)
    trust = np.subtract(np.float32(high), difference, out=difference)
    trust /= np.float32(high - low)
    trust = np.clip(trust, 0.0, 1.0, out=trust)
    if grow_px > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow_px + 1, 2 * grow_px + 1))
        trust = cv2.erode(trust, kernel)
    return trust


@dataclass(frozen=True)
class DeghostPlan:
    """What the deghost merge fits on whole frames: each frame's warp onto the reference and
    its intensity mapping into the reference's exposure (None for the reference itself).

    Fitted once per bracket (:func:`plan_deghost`), it lets a tiled run merge tile by tile
    with the whole image's warps and mappings (:meth:`cropped`), so every tile agrees."""

    warps: tuple[np.ndarray | None, ...]
    mappings: tuple[ChannelMapping | None, ...]

    def cropped(self, y0: int, x0: int) -> DeghostPlan:
        """The plan for crops whose top-left corner is (y0, x0) in the whole frames."""
        offset = np.array([x0, y0], np.float32)
        warps = []
        for warp in self.warps:
            if warp is not None:
                # crop coords u → frame coords A(u + o) + b, minus the crop's own offset o
                warp = warp.copy()
                warp[:, 2] += warp[:, :2] @ offset - offset
            warps.append(warp)
        return DeghostPlan(tuple(warps), self.mappings)


def plan_deghost(frames: Sequence[np.ndarray], reference_index: int, align: bool = True,
                 encode: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None) -> DeghostPlan:
    """Fit the merge's warps and mappings on whole ``frames`` (short → long).

    ``encode`` (e.g. the canonical re-encoding) is applied to the small copies the fits read
    (a regular subsample for the mappings, an area-downscaled copy for ECC), so the frames may
    be the scene's own and no full-size re-encoded copy is made."""
    encode = encode or list
    samples = encode([_subsample(np.asarray(f, np.float32)) for f in frames])
    h, w = frames[0].shape[:2]
    scale, size = _fit_size(h, w)
    small = encode([cv2.resize(np.asarray(f, np.float32), size, interpolation=cv2.INTER_AREA)
                    if scale < 1.0 else np.asarray(f, np.float32) for f in frames])
    warps, mappings = [], []
    for index in range(len(frames)):
        if index == reference_index:
            warps.append(None)
            mappings.append(None)
            continue
        mapping = fit_mapping(samples[index], samples[reference_index])
        warp = np.eye(2, 3, dtype=np.float32)
        if align:
            fitted = _fit_euclidean(_grey(mapping.exact(small[index])), _grey(small[reference_index]))
            warp = _checked(_rescale_warp(fitted, scale), h, w)
        warps.append(warp)
        mappings.append(mapping)
    return DeghostPlan(tuple(warps), tuple(mappings))


def deghost_merge(scene: Scene, align: bool = True, inverse: Inverse | None = None,
                  plan: DeghostPlan | None = None) -> np.ndarray:
    """Reference-guided merge: align each frame globally, drop pixels that disagree, then merge.

    Non-reference frames are registered to the reference (ECC, Euclidean) to undo camera
    shake; pixels whose exposure-matched value still disagrees with the reference (moving
    objects) lose their weight, so the reference alone speaks there. ``plan`` (fitted on the
    whole frames when the scene is a crop of them) is fitted on the scene's frames when None.
    """
    ref_index = scene.reference_index
    reference = scene.reference
    last = len(scene.frames) - 1
    plan = plan or plan_deghost(scene.frames, ref_index, align)
    total = _WeightedSum(reference.shape, inverse)
    for index, frame in enumerate(scene.frames):
        weight = triangle_weight(frame, shortest=index == 0, longest=index == last)
        if index == ref_index:
            weight = np.maximum(weight, WEIGHT_FLOOR)
        else:
            warp = plan.warps[index]
            if align and warp is not None and not np.array_equal(warp, np.eye(2, 3, dtype=np.float32)):
                frame = warp_to_reference(frame, warp)
            weight *= consistency(frame, reference, mapping=plan.mappings[index])[..., None]
        total.add(frame, scene.exposure_times[index], weight)
    return total.result(reference_only(scene, inverse))
