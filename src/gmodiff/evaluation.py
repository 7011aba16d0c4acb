"""Scoring a folder of predicted HDR images against scene ground truths.

Each scene folder under the ground-truth root (found with :func:`gmodiff.io.scene.find_scenes`)
is matched to ``<scene name>.hdr`` or ``<scene name>.exr`` among the predictions. A report holds
per-scene rows and their means, and is written as JSON or CSV (atomically). ``gmodiff eval``
prints it; benchmarks call :func:`evaluate_folder` directly.

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

from gmodiff.errors import OutputError, SceneError
from gmodiff.io.atomic import write_bytes_atomic
from gmodiff.io.hdr import read_hdr
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
        """Mean of each metric over the evaluated scenes (PSNRs averaged in dB)."""
        if not self.rows:
            return {}
        return {m: sum(r[m] for r in self.rows) / len(self.rows) for m in self.metric_names}


def find_prediction(pred_dir: Path, scene_name: str) -> Path | None:
    """``<scene_name>.hdr`` or ``.exr`` in ``pred_dir``, or None."""
    for suffix in PREDICTION_SUFFIXES:
        candidate = pred_dir / f"{scene_name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def evaluate_folder(pred_dir: Path, gt_root: Path, extra: bool = False,
                    allow_missing: bool = False, progress: bool = True) -> EvalReport:
    """Evaluate every scene under ``gt_root`` against its prediction in ``pred_dir``."""
    from tqdm import tqdm

    from gmodiff.metrics import CORE_METRICS, evaluate_pair

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
    report = EvalReport(metric_names=list(CORE_METRICS), missing=missing)
    todo = [(folder, pred) for folder, pred in pairs if pred is not None]
    # disable=None: tqdm shows the bar only on a terminal, keeping logs and pipes clean.
    for folder, pred_path in tqdm(todo, desc="eval", unit="scene", file=sys.stderr, leave=False,
                                  disable=None if progress else True):
        gt_path = find_ground_truth(folder)
        gt = read_hdr(gt_path)
        pred = read_hdr(pred_path)
        if pred.shape != gt.shape:
            raise SceneError(f"prediction is {pred.shape[1]}x{pred.shape[0]}, ground truth "
                             f"{gt_path.name} is {gt.shape[1]}x{gt.shape[0]}", pred_path,
                             "predict at the ground truth's size")
        scores = evaluate_pair(pred, gt, extra=extra)
        for name in scores:
            if name not in report.metric_names:
                report.metric_names.append(name)
        report.rows.append({"scene": folder.name, **scores})
    return report


def _json_value(value: float):
    return value if math.isfinite(value) else None  # strict JSON has no Infinity


def write_report(path: Path, report: EvalReport, pred_dir: Path, gt_root: Path) -> None:
    """Write the report as JSON (rows, mean, missing) or CSV (rows, then "mean"); atomic."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        payload = {
            "pred": str(pred_dir), "gt": str(gt_root), "metrics": report.metric_names,
            "scenes": [{k: (_json_value(v) if k != "scene" else v) for k, v in r.items()}
                       for r in report.rows],
            "mean": {k: _json_value(v) for k, v in report.mean.items()},
            "missing": report.missing,
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
