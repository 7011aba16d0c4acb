"""Split a folder of camera files (a memory card's worth) into exposure brackets, from EXIF.

The rule, in order:

1. Files are read for their capture time (DateTimeOriginal + SubSecTimeOriginal), exposure
   (time × ISO / f-number², in stops) and, where the camera writes them, the standard bracket
   tags: ``ExposureMode = 2`` (auto bracket) and ``ExposureBiasValue``. A file without an
   exposure time cannot be placed. When a raw file and a JPEG/TIFF share a name (RAW+JPEG
   shooting) the raw file is used and its twin is listed as not placed.
2. Shots are sorted by capture time (then by name: cameras number files in shooting order,
   and many record whole seconds only), and split into *runs* wherever the time between the
   end of one exposure and the start of the next exceeds ``MAX_GAP_SECONDS``.
3. In a run whose shots carry bracket tags, the tagged shots form the brackets (their bias
   values are the sequence) and untagged shots are single shots.
4. Brackets shot back to back are split by their exposure sequence, which repeats: the
   sequence of relative exposures (stops from the bracket's first frame, so a bracket whose
   metering moved still matches), 2 to ``MAX_FRAMES`` distinct exposures, that starts over
   at least twice and covers most shots of the run is the bracket; the run is scanned for it
   and shots that do not start or complete it are single shots (not placed). A run where no
   sequence repeats is one bracket when its exposures all differ (else its longest stretch
   of different exposures is).

Groups are listed in capture order; choosing the reference and the frames is ``gmodiff.bracket.prepare``' job.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from gmodiff.errors import GmodiffError, SceneError
from gmodiff.io.ldr import LDR_SUFFIXES
from gmodiff.io.raw import RAW_SUFFIXES, is_raw, parse_exif_datetime

MAX_GAP_SECONDS = 2.0
"""A longer pause between shots (end of one exposure → start of the next) starts a new run."""
MAX_FRAMES = 9
"""Longest bracket looked for (cameras offer 2-9 frames)."""
SAME_STOPS = 0.2
"""Exposures this close (stops) count as the same step of a bracket sequence."""


@dataclass(frozen=True)
class Shot:
    """What grouping needs to know about one file."""

    path: Path
    captured: datetime | None
    stops: float | None
    """log2 of time × ISO/100 / f-number² (None: no exposure time)."""
    exposure_seconds: float | None = None
    auto_bracket: bool = False
    """EXIF ExposureMode = 2."""
    bias_ev: float | None = None


@dataclass
class Grouping:
    """Brackets found (paths in capture order) and the files that fit none, with the reason."""

    groups: list[list[Path]] = field(default_factory=list)
    unplaced: list[tuple[Path, str]] = field(default_factory=list)
    shots: dict[Path, Shot] = field(default_factory=dict)
    """What was read of each grouped file."""


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def image_files(folder: str | Path) -> list[Path]:
    """The image and raw files directly in ``folder`` (not hidden), in name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SceneError("folder not found", folder, "pass the folder holding the camera files")
    suffixes = set(LDR_SUFFIXES) | set(RAW_SUFFIXES)
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
             and p.suffix.lower() in suffixes]
    return sorted(files, key=_natural_key)


def _float(value) -> float | None:
    if isinstance(value, (tuple, list)):
        if len(value) == 2 and all(isinstance(v, int) for v in value):
            value = value[0] / value[1] if value[1] else float("nan")
        elif value:
            value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) else None


def _stops(seconds, iso, f_number) -> float | None:
    if seconds is None or seconds <= 0:
        return None
    light = seconds * ((iso / 100.0) if iso and iso > 0 else 1.0)
    if f_number and f_number > 0:
        light /= f_number ** 2
    return math.log2(light)


def read_shot(path: str | Path) -> Shot:
    """Capture time, exposure and bracket tags of one file; ``GmodiffError`` if unreadable."""
    path = Path(path)
    if is_raw(path):
        from gmodiff.io.raw import read_raw_info

        info = read_raw_info(path)
        exposure = info.exposure
        return Shot(path, info.timestamp,
                    _stops(exposure.exposure_time_seconds, exposure.iso, exposure.f_number),
                    exposure.exposure_time_seconds, info.auto_bracket, info.bias_ev)
    from PIL import Image

    from gmodiff.io.exif import read_exif

    exposure = read_exif(path)  # raises ImageReadError for files that are no image
    merged: dict = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                exif = im.getexif()
                merged = {**dict(exif), **dict(exif.get_ifd(0x8769))}
    except Exception:  # corrupt EXIF: no time, no bracket tags
        merged = {}
    captured = parse_exif_datetime(merged.get(0x9003) or merged.get(0x0132), merged.get(0x9291))
    return Shot(path, captured,
                _stops(exposure.exposure_time_seconds, exposure.iso, exposure.f_number),
                exposure.exposure_time_seconds, merged.get(0xA402) == 2,
                _float(merged.get(0x9204)))


def _runs(shots: list[Shot]) -> list[list[Shot]]:
    """Consecutive shots split at pauses longer than ``MAX_GAP_SECONDS`` (step 2)."""
    runs: list[list[Shot]] = []
    for shot in shots:
        if runs:
            last = runs[-1][-1]
            if shot.captured is None or last.captured is None:
                pause = 0.0  # no times at all: one run, split by the sequence alone
            else:
                pause = ((shot.captured - last.captured).total_seconds()
                         - (last.exposure_seconds or 0.0))
            if pause <= MAX_GAP_SECONDS:
                runs[-1].append(shot)
                continue
        runs.append([shot])
    return runs


def _distinct(values: list[float]) -> bool:
    ordered = sorted(values)
    return all(b - a >= SAME_STOPS for a, b in zip(ordered, ordered[1:]))


def _matches(values: list[float], start: int, pattern: list[float], relative: bool) -> bool:
    if start + len(pattern) > len(values):
        return False
    base = values[start] if relative else 0.0
    return all(abs(values[start + k] - base - p) < SAME_STOPS for k, p in enumerate(pattern))


def _scan(values: list[float], pattern: list[float], relative: bool) -> list[tuple[int, int]]:
    """(start, end) of each occurrence of ``pattern``, scanning left to right."""
    found, index = [], 0
    while index < len(values):
        if _matches(values, index, pattern, relative):
            found.append((index, index + len(pattern)))
            index += len(pattern)
        else:
            index += 1
    return found


def _min_gap(values: list[float]) -> float:
    ordered = sorted(values)
    return min(b - a for a, b in zip(ordered, ordered[1:]))


def _repeats(values: list[float], found: list[tuple[int, int]]) -> bool:
    """Do the occurrences show a sequence that really starts over? Two back-to-back occurrences
    that together still look like one bracket (a ramp -2, -1, 0, +1 "repeats" +1 steps) don't:
    their exposures must come back to within half the sequence's own smallest step."""
    if len(found) < 2:
        return False
    tolerance = _min_gap(values[found[0][0]:found[0][1]]) / 2
    for (a, b), (c, d) in zip(found, found[1:]):
        if b == c:
            merged = sorted(values[a:d])
            if all(y - x >= tolerance for x, y in zip(merged, merged[1:])):
                return False
    return True


def _split_sequence(values: list[float], relative: bool) -> list[tuple[int, int]]:
    """The brackets of one run (step 4): a sequence that repeats, covering most shots; else the
    longest bracket-like stretch (the run itself when its exposures are all different)."""
    repeated: tuple[int, list] = (0, [])
    single: tuple[int, list] = (0, [])
    for size in range(2, min(MAX_FRAMES, len(values)) + 1):
        tried = set()
        for start in range(len(values) - size + 1):
            window = values[start:start + size]
            if not _distinct(window):
                continue
            pattern = [v - (window[0] if relative else 0.0) for v in window]
            key = tuple(round(p / SAME_STOPS) for p in pattern)
            if key in tried:
                continue
            tried.add(key)
            found = _scan(values, pattern, relative)
            cover = sum(b - a for a, b in found)
            # more shots explained wins; on a tie the shorter sequence (found first)
            if _repeats(values, found):
                if cover > repeated[0]:
                    repeated = (cover, found)
            elif cover > single[0]:
                single = (cover, found[:1] if len(found) > 1 else found)
    return repeated[1] or single[1]


def _place(run: list[Shot], grouping: Grouping) -> None:
    tagged = [s for s in run if s.auto_bracket]
    if tagged:  # step 3: the camera said which shots are its bracket
        for shot in run:
            if not shot.auto_bracket:
                grouping.unplaced.append((shot.path, "single shot (no bracket tag)"))
        use_bias = all(s.bias_ev is not None for s in tagged)
        values = [s.bias_ev if use_bias else s.stops for s in tagged]
        _place_sequence(tagged, values, relative=not use_bias, grouping=grouping)
        return
    _place_sequence(run, [s.stops for s in run], relative=True, grouping=grouping)


def _place_sequence(shots: list[Shot], values: list[float], relative: bool,
                    grouping: Grouping) -> None:
    found = _split_sequence(values, relative) if len(shots) > 1 else []
    placed = set()
    for start, end in found:
        grouping.groups.append([s.path for s in shots[start:end]])
        placed.update(range(start, end))
    for index, shot in enumerate(shots):
        if index not in placed:
            reason = ("single shot (no other exposure close in time)" if len(shots) == 1
                      else "does not fit the bracket sequence around it")
            grouping.unplaced.append((shot.path, reason))


def group_shots(shots: list[Shot]) -> Grouping:
    """Brackets among ``shots`` by the module's rule; every shot is placed or listed once."""
    grouping = Grouping(shots={shot.path: shot for shot in shots})
    usable = []
    for shot in shots:
        if shot.stops is None:
            grouping.unplaced.append((shot.path, "no EXIF exposure time"))
        else:
            usable.append(shot)
    timed = [s for s in usable if s.captured is not None]
    if timed and len(timed) < len(usable):
        for shot in usable:
            if shot.captured is None:
                grouping.unplaced.append((shot.path, "no EXIF capture time"))
        usable = timed
    usable.sort(key=lambda s: (s.captured or datetime.min, _natural_key(s.path)))
    for run in _runs(usable):
        _place(run, grouping)
    return grouping


def group_folder(folder: str | Path) -> Grouping:
    """Read every image/raw file of ``folder`` and group them (unreadable files are listed)."""
    files = image_files(folder)
    raw_stems = {p.stem.lower() for p in files if is_raw(p)}
    shots, grouping_unplaced = [], []
    for path in files:
        if not is_raw(path) and path.stem.lower() in raw_stems:
            grouping_unplaced.append((path, "JPEG/TIFF twin of a raw file (the raw file is used)"))
            continue
        try:
            shots.append(read_shot(path))
        except GmodiffError as err:
            grouping_unplaced.append((path, f"unreadable: {err}"))
    grouping = group_shots(shots)
    grouping.unplaced = sorted(grouping_unplaced + grouping.unplaced,
                               key=lambda item: _natural_key(item[0]))
    return grouping
