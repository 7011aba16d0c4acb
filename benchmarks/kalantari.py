"""Kalantari's test protocol: score any method on the 15 test scenes, next to the published peers.

Kalantari & Ramamoorthi (SIGGRAPH 2017) cannot be downloaded here; point ``--root`` at your own
copy of its test set (``Test/`` holds ``EXTRA/`` and ``PAPER/``: 15 scene folders, each with
three 16-bit TIFFs, ``exposure.txt`` and ``HDRImg.hdr``; spec §1). The protocol of the published
PSNR-μ / PSNR-l numbers (spec §5; the peers' own test scripts):

- all 15 scenes at full resolution (1500×1000), no border crop, the medium frame as reference;
- predictions in [0, 1] like the ground truth (the peers' networks end in a sigmoid): this
  script clips predictions to [0, 1] before scoring (``--no-clip`` scores them as they are);
- PSNR-l on linear values, PSNR-μ on T(x) = ln(1 + 5000x) / ln(5001), data range 1;
- each metric computed per scene and averaged over the scenes (PSNRs averaged in dB).

Our other columns (SSIM, PU21, and with ``--extra`` JOD / FLIP) follow ``gmodiff eval``. A run on
anything but 15 scenes says so in the table: its row is then not comparable with the peers'.

    python benchmarks/kalantari.py --root ~/Kalantari/Test                      # bundled model
    python benchmarks/kalantari.py --root ~/Kalantari/Test --method deghost
    python benchmarks/kalantari.py --root ~/Kalantari/Test --pred theirs/ --name "Their method"
    python benchmarks/kalantari.py --root ~/Kalantari/Test --extra cvvdp,flip   # + JOD, FLIP

Writes ``--out`` (Markdown, default benchmarks/results/kalantari.md) and the per-scene CSV beside
it; ``--save-pred DIR`` also keeps the predictions as float EXR for ``gmodiff eval``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from gmodiff.evaluation.folder import (EvalReport, find_prediction, metric_label, read_scene_units,
                                        write_report)
from gmodiff.errors import GmodiffError, SceneError
from gmodiff.io.hdr import write_hdr
from gmodiff.io.scene import (EXPOSURE_FILE, find_ground_truth, find_scenes, load_scene,
                              read_exposure_stops)
from gmodiff.metrics import CORE_METRICS, ExtraMetrics, evaluate_pair, parse_extra

KALANTARI_TEST_SCENES = 15
PEERS: dict[str, tuple[float, float]] = {
    "HDR-Transformer": (44.32, 42.18),
    "SCTNet": (44.49, 42.29),
    "SAFNet": (44.66, 43.18),
    "LF-Diff": (44.76, 42.59),
    "AFUNet": (44.91, 42.59),
}
"""Published (PSNR-μ, PSNR-l) on Kalantari's 15 test scenes, as listed in spec §5."""


def method_options(method: str, weights: Path | None) -> dict:
    """reconstruct_scene options: ``--weights`` goes to the learned methods only."""
    if weights is not None and method not in ("gmodiff", "dareg", "auto"):
        raise GmodiffError(f"--weights needs a learned method, not {method!r}",
                           fix="use --method gmodiff or --method dareg")
    return {"weights": weights} if weights is not None else {}


def predict(folder: Path, method: str | None, options: dict, pred_dir: Path | None
            ) -> tuple[np.ndarray, float]:
    """The prediction for one scene folder (reconstructed, or read from ``pred_dir``), seconds."""
    if pred_dir is not None:
        path = find_prediction(pred_dir, folder.name)
        if path is None:
            raise SceneError(f"no prediction for scene '{folder.name}'", pred_dir,
                             "add <scene>.exr/.hdr for each of the test scenes")
        return read_scene_units(path), float("nan")
    from gmodiff.methods import reconstruct_scene

    scene = load_scene(folder, load_ground_truth=False)
    start = time.perf_counter()
    result = reconstruct_scene(scene, method, **options)
    return result.hdr, time.perf_counter() - start


def run(root: Path, method: str | None, options: dict, pred_dir: Path | None, clip: bool,
        extra: ExtraMetrics | None, save_pred: Path | None) -> tuple[EvalReport, list[float]]:
    """Score every scene under ``root``: the per-scene report and seconds per scene."""
    from tqdm import tqdm

    scenes = find_scenes(root)
    if not scenes:
        raise SceneError("no scene folders (with exposure.txt) found", root,
                         "pass Kalantari's Test/ folder (EXTRA/ and PAPER/ inside)")
    report = EvalReport(metric_names=list(CORE_METRICS))
    seconds = []
    for folder in tqdm(scenes, desc="kalantari", unit="scene", file=sys.stderr, leave=False,
                       disable=None):
        gt_path = find_ground_truth(folder)
        if gt_path is None:
            raise SceneError("scene has no ground truth", folder, "add HDRImg.hdr")
        gt = read_scene_units(gt_path)
        hdr, elapsed = predict(folder, method, options, pred_dir)
        if hdr.shape != gt.shape:
            raise SceneError(f"prediction is {hdr.shape[1]}x{hdr.shape[0]}, ground truth is "
                             f"{gt.shape[1]}x{gt.shape[0]}", folder, "predict at full size")
        if save_pred is not None:
            save_pred.mkdir(parents=True, exist_ok=True)
            stops = read_exposure_stops(folder / EXPOSURE_FILE)  # reference-white units, stated
            write_hdr(save_pred / f"{folder.name}.exr", hdr, half=False,
                      exposure=float(2.0 ** (stops[1] - stops.min())))
        scored = np.clip(hdr, 0.0, 1.0) if clip else hdr
        scores = evaluate_pair(scored, gt, extra=extra if extra is not None else False)
        report.metric_names += [n for n in scores if n not in report.metric_names]
        report.rows.append({"scene": folder.name, **scores})
        seconds.append(elapsed)
    return report, seconds


def _cell(name: str, value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:.2f}" if "psnr" in name or name == "cvvdp_jod" else f"{value:.4f}"


def markdown(report: EvalReport, name: str, seconds: list[float], root: Path, clip: bool,
             notes: list[str]) -> str:
    """The comparison table (peers' published rows, then this run) and the protocol notes."""
    names = report.metric_names
    mean = report.mean
    count = len(report.rows)
    caveat = ("" if count == KALANTARI_TEST_SCENES else
              f" (**not** Kalantari's {KALANTARI_TEST_SCENES} test scenes: this row is not "
              "comparable with the published ones)")
    clipping = "clipped to [0, 1]" if clip else "scored unclipped (--no-clip)"
    lines = [f"# Kalantari test protocol: {name}", "",
             f"{count} scenes under `{root}`{caveat}. Full resolution, no crop; predictions "
             f"{clipping}; μ = 5000; data range 1; each metric averaged over scenes. Peer rows: "
             "published PSNR-μ / PSNR-l (spec §5); they report no other column here.", ""]
    headings = " | ".join(metric_label(n) for n in names)
    lines.append(f"| method | {headings} | s/scene | source |")
    lines.append("|" + "---|" * (len(names) + 3))
    for peer, (mu, linear) in PEERS.items():
        known = {"psnr_mu": mu, "psnr_l": linear}
        lines.append(f"| {peer} | " + " | ".join(_cell(n, known.get(n)) for n in names)
                     + " | - | published |")
    timed = [s for s in seconds if np.isfinite(s)]
    per_scene = f"{np.mean(timed):.2f}" if timed else "-"
    lines.append(f"| **{name}** | " + " | ".join(_cell(n, mean.get(n)) for n in names)
                 + f" | {per_scene} | this run |")
    lines.append("")
    lines += [f"- {note}" for note in notes]
    lines.append("- Reproduce: `python benchmarks/kalantari.py --root PATH` (see its docstring).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Parse flags, score the scenes, write the Markdown table and per-scene CSV."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True,
                        help="Kalantari's Test/ folder (or any folder of Kalantari-layout scenes)")
    parser.add_argument("--method", default="auto",
                        help="gmodiff reconstruct method (auto, gmodiff, dareg, deghost, ...)")
    parser.add_argument("--weights", type=Path, help="weights for --method gmodiff/dareg")
    parser.add_argument("--pred", type=Path,
                        help="score these predictions (<scene>.exr/.hdr) instead of reconstructing")
    parser.add_argument("--name", help="row name (default: the method or the --pred folder)")
    parser.add_argument("--extra", default="", help="also cvvdp,flip (or all)")
    parser.add_argument("--no-clip", dest="clip", action="store_false",
                        help="score predictions as they are, not clipped to [0, 1]")
    parser.add_argument("--save-pred", type=Path, help="also write predictions here (float EXR)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/kalantari.md"))
    args = parser.parse_args(argv)
    try:
        extra_names = parse_extra(args.extra)
        options = method_options(args.method, args.weights) if args.pred is None else {}
        name = args.name or (args.pred.name if args.pred is not None else args.method)
        with ExtraMetrics(extra_names) as extra:
            extra.start()  # a missing metrics environment fails before any reconstruction
            report, seconds = run(args.root, None if args.pred else args.method, options,
                                  args.pred, args.clip, extra if extra_names else None,
                                  args.save_pred)
            notes = extra.notes()
        text = markdown(report, name, seconds, args.root, args.clip, notes)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        csv_path = args.out.with_suffix(".csv")
        write_report(csv_path, report, args.pred or Path(args.method), args.root, notes)
        from gmodiff.io.atomic import write_bytes_atomic

        write_bytes_atomic(args.out, text.encode("utf-8"))
    except GmodiffError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(text)
    print(f"wrote {args.out} and {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
