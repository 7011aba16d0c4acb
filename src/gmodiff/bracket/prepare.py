"""Plain exposure brackets (any camera, any number of frames) → a three-frame ``Scene``.

Exposures come from ``times`` (seconds, or any relative unit), else ``ev`` (stops), else
EXIF (exposure time, with ISO and aperture folded in; see :mod:`gmodiff.io.exif`).

Which frames are used (the network takes exactly three: short, reference, long):

1. Frames are sorted by exposure, shortest first.
2. The reference is the frame given by ``reference`` (1-based, in the order the files were
   given), else the frame whose exposure in stops is closest to the middle of the bracket
   (midway between the shortest and longest); a tie goes to the shorter frame, which has fewer
   clipped highlights.
3. On each side of the reference, the frame whose distance from it is closest to
   ``TARGET_GAP_STOPS`` (3 stops, the widest spacing in the training brackets) is used; on a tie
   the farther frame wins, as it adds more dynamic range.
4. A side with no frame (two-frame brackets, or a reference at one end) is filled with the
   reference frame itself: it adds no information but invents none either, and the network
   sees the exposure ordering it was trained on.
5. Frames that are blank (≥ 99% of pixels white, or black) carry nothing to merge: they are
   never picked in steps 2-3 (an explicit ``reference`` is still honoured).
6. Usable frames darker than the chosen short frame or brighter than the chosen long one are
   kept as *extras*: after reconstruction they fill the highlights/shadows the network's frames
   lack (:mod:`gmodiff.bracket.extras`); frames between the chosen ones add nothing and are not
   used. A bracket with a reused slot gets its output level anchored to the reference frame.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gmodiff.bracket.align import ALIGN_METHODS, AlignmentResult, align_frames, align_scene
from gmodiff.bracket.extras import ExtraFrame, anchor_level, extend_range
from gmodiff.channels import channel_max, channel_min
from gmodiff.errors import ConfigError, ExposureError, SceneError
from gmodiff.io.frames import bracket_kind, frame_exposures, read_frame
from gmodiff.io.ldr import check_input_file
from gmodiff.io.memory import RunCheck, check_fits_in_memory
from gmodiff.io.scene import DUPLICATE_TOLERANCE_STOPS, MAX_EXPOSURE_SPAN_STOPS, Scene

TARGET_GAP_STOPS = 3.0
SATURATED_LEVEL = 0.98
BLACK_LEVEL = 0.02
SATURATED_FRACTION = 0.99
"""A frame is "all saturated" when this fraction of its pixels has every channel ≥ the level
(and "all black" when this fraction has every channel ≤ ``BLACK_LEVEL``)."""


@dataclass(frozen=True)
class BracketOptions:
    """How to read a bracket of image files, typed once at the edge (CLI flags, the web form).

    Exposures given here win over EXIF; both lists are in the order the files are given.
    """

    ev: tuple[float, ...] | None = None
    """Exposure of each file in stops (any origin), e.g. ``(-2, 0, 2)``."""
    times: tuple[float, ...] | None = None
    """Exposure time of each file (seconds, or any relative unit)."""
    reference: int | None = None
    """1-based position of the reference frame among the files; None picks the middle one."""
    align: str = "ecc"
    """Alignment of handheld frames: one of :data:`gmodiff.bracket.align.ALIGN_METHODS`."""

    def __post_init__(self) -> None:
        if self.ev is not None and self.times is not None:
            raise ExposureError("give either `ev` or `times`, not both")
        for name in ("ev", "times"):
            values = getattr(self, name)
            if values is None:
                continue
            values = tuple(float(v) for v in values)
            object.__setattr__(self, name, values)
            if not values or not all(math.isfinite(v) for v in values):
                raise ExposureError(f"`{name}` must be finite numbers, got "
                                    f"{','.join(map(str, values)) or 'nothing'}", None,
                                    f"e.g. `{name}=-2,0,2`")
        if self.times is not None and min(self.times) <= 0:
            raise ExposureError("`times` must be positive", None, "give exposure times in seconds")
        if self.align not in ALIGN_METHODS:
            raise ConfigError(f"unknown alignment method '{self.align}'", None,
                              f"use one of: {', '.join(ALIGN_METHODS)}")


@dataclass
class BracketSelection:
    """What was read and which frames feed the network (indices into the sorted list)."""

    paths: list[Path]
    exposures: np.ndarray
    reference: int
    used: tuple[int, int, int]
    exposure_source: str
    blank: tuple[int, ...] = ()
    """Sorted indices of frames skipped as entirely white or black."""
    extra: tuple[int, ...] = ()
    """Sorted indices of usable frames beyond the chosen short/long ones (merged classically)."""

    @property
    def reused(self) -> bool:
        """True when the reference fills a side that has no frame of its own."""
        return self.used[0] == self.reference or self.used[2] == self.reference

    @property
    def stops(self) -> np.ndarray:
        """Sorted exposures in stops relative to the reference."""
        return np.log2(self.exposures / self.exposures[self.reference])

    def describe(self) -> str:
        """One line per used frame, e.g. ``short: a.jpg (-2.0 EV)``."""
        roles = ("short", "reference", "long")
        lines = []
        for role, index in zip(roles, self.used):
            note = " (reference reused: no frame on this side)" if (
                role != "reference" and index == self.reference) else ""
            lines.append(f"{role}: {self.paths[index].name} ({self.stops[index]:+.1f} EV){note}")
        if self.extra:
            lines.append("merged into the result's highlights/shadows: " + ", ".join(
                f"{self.paths[i].name} ({self.stops[i]:+.1f} EV)" for i in self.extra))
        unused = [self.paths[i].name + (" (blank)" if i in self.blank else "")
                  for i in range(len(self.paths)) if i not in self.used and i not in self.extra]
        if unused:
            lines.append(f"not used: {', '.join(unused)}")
        return "\n".join(lines)


def number_list(text: str | None, option: str) -> tuple[float, ...] | None:
    """Comma-separated numbers typed by a person (``-2,0,2``) for the option ``option``, as the
    command line and the web form both take them; None or blank text gives None."""
    if text is None or not text.strip():
        return None
    try:
        values = tuple(float(part) for part in text.replace(" ", "").split(",") if part != "")
    except ValueError:
        raise ExposureError(f"`{option}` must be comma-separated numbers, got '{text}'", None,
                            f"e.g. `{option}=-2,0,2`") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ExposureError(f"`{option}` must be finite numbers, got '{text}'", None,
                            f"e.g. `{option}=-2,0,2`")
    return values


def bracket_exposures(paths: Sequence[Path], options: BracketOptions = BracketOptions()
                      ) -> tuple[np.ndarray, str]:
    """Relative exposure per file (in the given order) and where it came from."""
    name = "times" if options.times is not None else "ev" if options.ev is not None else None
    if name is None:
        return frame_exposures(paths), "exif"
    values = getattr(options, name)
    if len(values) != len(paths):
        raise ExposureError(f"`{name}` has {len(values)} values for {len(paths)} images", None,
                            f"give one `{name}` value per image, in the same order")
    exposures = np.array(values, dtype=np.float64)
    # ev 0,2,2000 overflows and times 1e-320,1 divides to inf: _check_duplicates refuses those
    # spans in one line, so numpy's warnings would only print noise before it.
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if name == "ev":
            exposures = np.exp2(exposures)
        return exposures / exposures.min(), name


def _check_distinct_files(paths: Sequence[Path]) -> None:
    """Every path a regular file (checked by ``stat``: nothing is opened yet, so a FIFO cannot
    hang us) and no file given twice, by any name: a relative path, a symlink, a hard link."""
    seen: dict[tuple[int, int], Path] = {}
    for path in paths:
        check_input_file(path)
        info = os.stat(path)
        first = seen.setdefault((info.st_dev, info.st_ino), path)
        if first is not path:
            raise SceneError(f"is the same file as {first.name} (another name or a hard link to "
                             "it)", path, "pass each frame once")


def _check_duplicates(paths: Sequence[Path], exposures: np.ndarray) -> None:
    order = np.argsort(exposures, kind="stable")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        stops = np.log2(exposures[order])
        gaps = np.diff(stops)
        span = float(stops[-1] - stops[0])
    if not np.all(np.isfinite(stops)) or span > MAX_EXPOSURE_SPAN_STOPS:
        raise ExposureError(f"the exposures span {span:.4g} stops, more than "
                            f"{MAX_EXPOSURE_SPAN_STOPS:g}", None,
                            "check --ev (stops) / --times (seconds) or the files' EXIF")
    for a, b, gap in zip(order[:-1], order[1:], gaps):
        if gap < DUPLICATE_TOLERANCE_STOPS:
            raise ExposureError(
                f"{paths[a].name} and {paths[b].name} have the same exposure ({gap:.2f} stops apart)",
                None, "each frame of a bracket needs its own exposure; drop one or fix --ev/--times")


def choose_reference(stops: np.ndarray, usable: Sequence[bool] | None = None) -> int:
    """Index (into sorted stops) of the usable frame nearest the middle of the bracket; ties →
    shorter. The middle is that of the usable frames."""
    usable = np.ones(len(stops), bool) if usable is None else np.asarray(usable, bool)
    candidates = np.flatnonzero(usable)
    middle = (stops[candidates[0]] + stops[candidates[-1]]) / 2
    distances = np.abs(stops[candidates] - middle)
    return int(candidates[np.flatnonzero(distances <= distances.min() + 1e-9)[0]])


def select_triplet(stops: np.ndarray, reference: int,
                   usable: Sequence[bool] | None = None) -> tuple[int, int, int]:
    """(short, reference, long) indices into sorted ``stops`` by the module's rule."""
    usable = [True] * len(stops) if usable is None else list(usable)

    def pick(candidates: list[int]) -> int:
        if not candidates:
            return reference
        gaps = [abs(abs(stops[i] - stops[reference]) - TARGET_GAP_STOPS) for i in candidates]
        best = min(gaps)
        ties = [i for i, g in zip(candidates, gaps) if g <= best + 1e-9]
        return max(ties, key=lambda i: abs(stops[i] - stops[reference]))

    shorter = [i for i in range(reference) if usable[i]]
    longer = [i for i in range(reference + 1, len(stops)) if usable[i]]
    return pick(shorter), reference, pick(longer)


def _check_sizes(paths: Sequence[Path], frames: Sequence[np.ndarray]) -> None:
    h0, w0 = frames[0].shape[:2]
    for path, frame in zip(paths[1:], frames[1:]):
        h, w = frame.shape[:2]
        if (h, w) == (h0, w0):
            continue
        hint = ("orientation differs (EXIF orientation was applied); rotate the frames the same way"
                if (h, w) == (w0, h0) else "all frames of a bracket must have the same size")
        raise SceneError(f"frame is {w}×{h} but {paths[0].name} is {w0}×{h0}", path, hint)


def _saturated(frame: np.ndarray) -> bool:
    return float(np.mean(channel_min(frame) >= SATURATED_LEVEL)) >= SATURATED_FRACTION


def _black(frame: np.ndarray) -> bool:
    return float(np.mean(channel_max(frame) <= BLACK_LEVEL)) >= SATURATED_FRACTION


def load_bracket(paths: Sequence[str | Path], options: BracketOptions = BracketOptions(),
                 run_check: RunCheck | None = None) -> tuple[Scene, BracketSelection]:
    """Read a bracket of image files into a three-frame ``Scene`` (see module doc for the rule).

    ``run_check`` (the reconstruction's memory plan, :func:`gmodiff.methods.memory_check`)
    judges the header sizes before any frame is decoded. Raises ``SceneError``/
    ``ExposureError``/``ImageReadError`` with one-line messages on bad input.
    """
    reference = options.reference
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise SceneError(f"a bracket needs at least 2 frames, got {len(paths)}", paths[0] if paths else None,
                         "pass 2 or more differently exposed images of the same view")
    _check_distinct_files(paths)
    encoding = bracket_kind(paths)  # raw frames: a known, linear curve
    exposures, source = bracket_exposures(paths, options)
    _check_duplicates(paths, exposures)
    if reference is not None and not 1 <= reference <= len(paths):
        raise SceneError(f"`reference={reference}` is out of range", None,
                         f"give a number from 1 to {len(paths)} (the position of the file)")
    check_fits_in_memory(paths, run_check=run_check)  # from the headers, before decoding
    frames = [read_frame(p) for p in paths]
    _check_sizes(paths, frames)
    if all(_saturated(f) for f in frames):
        raise SceneError("every frame is saturated (white)", paths[0],
                         "shoot shorter exposures so highlights keep detail")
    blank = [_saturated(f) or _black(f) for f in frames]
    if all(blank):
        raise SceneError("every frame is black or white", paths[0],
                         "include at least one frame with visible detail")

    order = np.argsort(exposures, kind="stable")
    sorted_paths = [paths[i] for i in order]
    sorted_exposures = exposures[order]
    stops = np.log2(sorted_exposures)
    usable = [not blank[i] for i in order]
    ref = (choose_reference(stops, usable) if reference is None
           else int(np.flatnonzero(order == reference - 1)[0]))
    used = select_triplet(stops, ref, usable)
    skipped = tuple(i for i, ok in enumerate(usable) if not ok)
    extra = tuple(i for i, ok in enumerate(usable)
                  if ok and i not in used and (i < used[0] or i > used[2]))
    selection = BracketSelection(sorted_paths, sorted_exposures, ref, used, source, skipped, extra)

    times_used = sorted_exposures[list(used)]
    scene = Scene(
        frames=[frames[order[i]] for i in used],
        exposure_times=(times_used / times_used.min()).astype(np.float64),
        reference_index=1,
        name=sorted_paths[ref].stem,
        root=sorted_paths[ref].parent,
        frame_paths=[sorted_paths[i] for i in used],
        encoding=encoding,
    )
    return scene, selection


@dataclass
class PreparedBracket:
    """A bracket ready for reconstruction: the aligned scene and what was done to get it."""

    scene: Scene
    selection: BracketSelection
    alignment: AlignmentResult
    extras: list = field(default_factory=list)
    """:class:`gmodiff.bracket.extras.ExtraFrame` per frame beyond the network's three."""

    def finish(self, hdr: np.ndarray) -> np.ndarray:
        """The reconstruction with the extras merged in and, after a reused slot, its level
        anchored to the reference frame (see :mod:`gmodiff.bracket.extras`)."""
        if self.selection.reused:
            hdr = anchor_level(hdr, self.scene)
        return extend_range(hdr, self.scene, self.extras)

    def messages(self) -> list[str]:
        """Lines for the user: which frames were used, and any alignment warnings."""
        return [*self.selection.describe().splitlines(),
                *(f"warning: {w}" for w in self.alignment.warnings)]


def prepare_bracket(paths: Sequence[str | Path], options: BracketOptions = BracketOptions(),
                    run_check: RunCheck | None = None) -> PreparedBracket:
    """:func:`load_bracket`, then align the non-reference frames to the reference."""
    align = options.align  # checked (BracketOptions) before any image is read
    scene, selection = load_bracket(paths, options, run_check=run_check)
    aligned, alignment = align_scene(scene, align)
    extras = []
    unit = float(selection.exposures[selection.used[0]])  # the scene's shortest frame is 1
    t_ref = float(aligned.exposure_times[aligned.reference_index])
    for index in selection.extra:
        exposure = float(selection.exposures[index]) / unit
        pair = align_frames([aligned.reference, read_frame(selection.paths[index])],
                            [t_ref, exposure], 0, align)
        alignment.warnings.extend(w.replace("frame 2", selection.paths[index].name)
                                  for w in pair.warnings)
        extras.append(ExtraFrame(pair.frames[1], exposure, selection.paths[index]))
    return PreparedBracket(aligned, selection, alignment, extras)
