"""Scoring a folder of predicted HDR images against scene ground truths.

Each scene folder under the ground-truth root (found with :func:`gmodiff.io.scene.find_scenes`)
is matched to ``<scene name>.hdr`` or ``<scene name>.exr`` among the predictions. A report holds
per-scene rows and their means, and is written as JSON or CSV (atomically). ``gmodiff eval``
prints it; benchmarks call :func:`evaluate_folder` directly. Several methods' reports, scored on
the same scenes, are written side by side by :func:`write_comparison`. The optional metrics
(``extra``: ColorVideoVDP JOD, HDR-FLIP) come from :class:`gmodiff.metrics.ExtraMetrics`.

Region metrics (PSNR-μ / PSNR-l over clipped-reference, DA-unreliable and moving pixels,
:mod:`gmodiff.metrics.regions`) are added when a scene carries a mask (``motion_mask.png`` in the
scene folder, ``<scene>.mask.png`` beside the prediction) or on request; a region a scene lacks
scores NaN and is left out of the mean.

Files that state an exposure factor in their header (gmodiff writes every .hdr/.exr in
reference-white units and says so: Radiance ``EXPOSURE=``, EXR ``gmodiffExposure``) are divided
by it first, so predictions and ground truths are compared in the scene's units whichever tool
wrote them.

Save predictions as ``.exr`` for evaluation: Radiance RGBE shares one exponent per pixel and keeps
8 mantissa bits, which alone caps PSNR-μ near 40 dB on content with dark channels (float EXR is
lossless, half EXR costs < 0.1 dB at these levels).
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gmodiff.errors import OutputError, SceneError
from gmodiff.io.atomic import write_bytes_atomic
from gmodiff.io.hdr import declared_exposure, read_hdr
from gmodiff.io.scene import GROUND_TRUTH_NAMES, find_ground_truth, find_scenes

PREDICTION_SUFFIXES = (".hdr", ".exr")
REPORT_SUFFIXES = (".json", ".csv")


@dataclass
class EvalReport:
    """Per-scene metric rows, their means, and the scenes that had no prediction."""

    metric_names: list[str]
    rows: list[dict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def mean(self) -> dict[str, float]:
        """Mean of each metric over the evaluated scenes (PSNRs averaged in dB); NaN entries
        (a region the scene does not have) are skipped."""
        from gmodiff.metrics.regions import nan_mean

        if not self.rows:
            return {}
        return {m: nan_mean(r.get(m, math.nan) for r in self.rows) for m in self.metric_names}


def read_scene_units(path: Path):
    """An HDR file with the exposure factor its header states undone: gmodiff's outputs are in
    reference-white units (1.0 = the reference frame's white), ground truths and other tools'
    predictions in the scene's units (the shortest frame's white = 1, as Kalantari's), which
    the metrics expect."""
    pixels = read_hdr(path)
    factor = declared_exposure(path)
    return pixels if factor == 1.0 else pixels / np.float32(factor)


def find_prediction(pred_dir: Path, scene_name: str) -> Path | None:
    """``<scene_name>.hdr`` or ``.exr`` in ``pred_dir``, or None."""
    for suffix in PREDICTION_SUFFIXES:
        candidate = pred_dir / f"{scene_name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def match_predictions(pred_dir: Path, gt_root: Path, allow_missing: bool = False
                      ) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(scene folder, prediction) pairs under ``gt_root`` and the names with no prediction."""
    pred_dir, gt_root = Path(pred_dir), Path(gt_root)
    if not pred_dir.is_dir():
        raise SceneError("prediction folder not found", pred_dir,
                         "pass the folder holding <scene>.hdr/.exr predictions")
    scenes = find_scenes(gt_root)
    if not scenes:
        raise SceneError("no scene folders (with exposure.txt) found", gt_root,
                         "pass a scene folder or a folder of scene folders")
    seen: dict[str, Path] = {}
    for folder in scenes:
        if folder.name in seen:
            raise SceneError(f"two scenes are named '{folder.name}' ({seen[folder.name]})", folder,
                             "rename one: predictions are matched by scene folder name")
        seen[folder.name] = folder
        if find_ground_truth(folder) is None:
            raise SceneError("scene has no ground truth", folder,
                             f"add one of {', '.join(GROUND_TRUTH_NAMES)} or drop the scene")
    pairs = [(folder, find_prediction(pred_dir, folder.name)) for folder in scenes]
    missing = [folder.name for folder, pred in pairs if pred is None]
    if missing and not allow_missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise SceneError(f"{len(missing)} of {len(scenes)} predictions missing ({shown})",
                         pred_dir, "add <scene>.hdr/.exr for each scene, or set `allow_missing=True`")
    return [(folder, pred) for folder, pred in pairs if pred is not None], missing


def evaluate_folder(pred_dir: Path, gt_root: Path, extra=False, allow_missing: bool = False,
                    progress: bool = True, regions: bool | None = None) -> EvalReport:
    """Evaluate every scene under ``gt_root`` against its prediction in ``pred_dir``.

    ``regions``: None adds the region metrics when some scene carries a mask, True/False forces
    them on/off.

    ``extra``: False, True (cvvdp/FLIP where they can run) or a started
    :class:`gmodiff.metrics.ExtraMetrics` (the chosen metrics, required to run).
    """
    todo, missing = match_predictions(pred_dir, gt_root, allow_missing)
    return score_pairs(todo, missing, extra=extra, progress=progress, regions=regions)


def score_pairs(todo: list[tuple[Path, Path]], missing: list[str], extra=False,
                progress: bool = True, regions: bool | None = None) -> EvalReport:
    """Score (scene folder, prediction) pairs from :func:`match_predictions` into a report
    (``regions`` as in :func:`evaluate_folder`)."""
    from tqdm import tqdm

    from gmodiff.evaluation.regions import carries_masks, scene_region_masks
    from gmodiff.metrics import CORE_METRICS, ExtraMetrics, evaluate_pair
    from gmodiff.metrics.regions import region_metrics

    if extra is True:  # one set-up for the whole folder, not one per pair
        with ExtraMetrics(required=False) as session:
            return score_pairs(todo, missing, extra=session, progress=progress, regions=regions)
    if regions is None:
        regions = any(carries_masks(folder, pred) for folder, pred in todo)
    report = EvalReport(metric_names=list(CORE_METRICS), missing=missing)
    if isinstance(extra, ExtraMetrics):
        extra.start()  # a missing metrics environment fails here, before any image is read
    # disable=None: tqdm shows the bar only on a terminal, keeping logs and pipes clean.
    for folder, pred_path in tqdm(todo, desc="eval", unit="scene", file=sys.stderr, leave=False,
                                  disable=None if progress else True):
        gt_path = find_ground_truth(folder)
        gt = read_scene_units(gt_path)
        pred = read_scene_units(pred_path)
        if pred.shape != gt.shape:
            raise SceneError(f"prediction is {pred.shape[1]}x{pred.shape[0]}, ground truth "
                             f"{gt_path.name} is {gt.shape[1]}x{gt.shape[0]}", pred_path,
                             "predict at the ground truth's size")
        scores = evaluate_pair(pred, gt, extra=extra)
        if regions:
            masks = scene_region_masks(folder, pred_path, gt.shape[:2])
            scores.update(region_metrics(pred, gt, masks))
        for name in scores:
            if name not in report.metric_names:
                report.metric_names.append(name)
        report.rows.append({"scene": folder.name, **scores})
    for row in report.rows:  # a region only some scenes have: NaN elsewhere
        for name in report.metric_names:
            row.setdefault(name, math.nan)
    return report


METRIC_LABELS: dict[str, str] = {
    "psnr_mu": "PSNR-μ", "psnr_l": "PSNR-l", "ssim_mu": "SSIM-μ", "ssim_l": "SSIM-l",
    "pu21_psnr": "PU21-PSNR", "pu21_ssim": "PU21-SSIM", "cvvdp_jod": "JOD", "hdr_flip": "FLIP↓",
}
"""Column headings of the paper-layout tables; a metric not listed is headed by its key, so new
metrics (region PSNRs, ...) need no change here to appear."""


def metric_label(name: str) -> str:
    """The paper-style heading of metric ``name`` (its key when it has none)."""
    return METRIC_LABELS.get(name, name)


def union_metric_names(reports: dict[str, EvalReport]) -> list[str]:
    """Every metric any report has, in first-seen order."""
    names: list[str] = []
    for report in reports.values():
        names += [n for n in report.metric_names if n not in names]
    return names


def method_names(pred_dirs: list[Path]) -> list[str]:
    """Row names for prediction folders: the folder name, or the whole path when names clash."""
    short = [Path(d).name or str(d) for d in pred_dirs]
    return [name if short.count(name) == 1 else str(d) for name, d in zip(short, pred_dirs)]


def _json_value(value: float):
    return value if math.isfinite(value) else None  # strict JSON has no Infinity


def write_report(path: Path, report: EvalReport, pred_dir: Path, gt_root: Path,
                 notes: list[str] | None = None) -> None:
    """Write the report as JSON (rows, mean, missing, notes) or CSV (rows, then "mean"); atomic."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        payload = {
            "pred": str(pred_dir), "gt": str(gt_root), "metrics": report.metric_names,
            "scenes": [{k: (_json_value(v) if k != "scene" else v) for k, v in r.items()}
                       for r in report.rows],
            "mean": {k: _json_value(v) for k, v in report.mean.items()},
            "missing": report.missing,
            "notes": list(notes or []),
        }
        data = json.dumps(payload, indent=2).encode("utf-8")
    elif suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["scene", *report.metric_names])
        for row in report.rows:
            writer.writerow([row["scene"], *(repr(float(row[n])) for n in report.metric_names)])
        if report.rows:
            writer.writerow(["mean", *(repr(float(report.mean[n])) for n in report.metric_names)])
        for name in report.missing:
            writer.writerow([name, *("missing" for _ in report.metric_names)])
        data = buffer.getvalue().encode("utf-8")
    else:
        raise OutputError(f"unsupported report extension '{path.suffix}'", path,
                          "use .json or .csv")
    write_bytes_atomic(path, data)


def write_comparison(path: Path, reports: dict[str, EvalReport], pred_dirs: dict[str, Path],
                     gt_root: Path, notes: list[str]) -> None:
    """Write several methods' reports: CSV rows (method, scene, metrics...) and a mean row per
    method, or JSON {methods: {name: {pred, scenes, mean, missing}}, notes}; atomic."""
    path = Path(path)
    names = union_metric_names(reports)
    suffix = path.suffix.lower()
    if suffix == ".json":
        payload = {"gt": str(gt_root), "metrics": names, "notes": notes, "methods": {
            method: {"pred": str(pred_dirs[method]),
                     "scenes": [{k: (_json_value(v) if k != "scene" else v) for k, v in r.items()}
                                for r in report.rows],
                     "mean": {k: _json_value(v) for k, v in report.mean.items()},
                     "missing": report.missing}
            for method, report in reports.items()}}
        data = json.dumps(payload, indent=2).encode("utf-8")
    elif suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["method", "scene", *names])

        def cells(row: dict) -> list[str]:
            return [repr(float(row[n])) if n in row else "" for n in names]

        for method, report in reports.items():  # per method, as write_report: scenes, mean, missing
            for row in report.rows:
                writer.writerow([method, row["scene"], *cells(row)])
            if report.rows:
                writer.writerow([method, "mean", *cells(report.mean)])
            for name in report.missing:
                writer.writerow([method, name, *("missing" for _ in names)])
        data = buffer.getvalue().encode("utf-8")
    else:
        raise OutputError(f"unsupported report extension '{path.suffix}'", path,
                          "use .json or .csv")
    write_bytes_atomic(path, data)
