"""Out-of-distribution benchmark: dark rooms with a lamp, night streets, real HDR photographs.

Scenes never used for training or tuning (benchmarks/ood_scenes.py, docs/data.md), with
statistics unlike the training views (half of them keep 40-70 % of their pixels below 1e-3 of
the peak), bracketed with the spec §6 camera model under 8 conditions: 2 and 3 stops; gamma 2.2,
sRGB and two camera curves outside the simulator's family; read noise ≈ 2e-3 or none; camera shake
and moving objects on the non-reference frames; 16-bit frames, 1000×680. Methods: the default
pipeline's DaReg stage and ``--refine``, deghost, debevec and OpenCV's self-calibrated Debevec
(``debevec-calibrated``, the classical peer). Writes Markdown and a per-scene CSV.

    python benchmarks/ood.py                                  # → benchmarks/results/ood.md (+ .csv)
    python benchmarks/ood.py --weights runs/new/pipeline --out /tmp/ood.md
    python benchmarks/ood.py --scenes 8 --methods default deghost   # quick look
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

import ood_scenes  # same folder: benchmarks run as scripts
from cli_path import PATHS, PlannedPipeline
from gmodiff.errors import GmodiffError
from gmodiff.io.atomic import atomic_path
from gmodiff.metrics import (RADIANCE_BANDS, band_label, band_ratios, dark_fraction, fit_log_gain,
                             psnr_l, psnr_mu, psnr_mu_gain_fitted, pu21_psnr, ssim_mu)
from quality import mean_rows, region_table, table

METHODS = ("default", "refine", "deghost", "debevec", "debevec-calibrated")
METRICS = {"psnr_mu": psnr_mu, "psnr_l": psnr_l, "ssim_mu": ssim_mu, "pu21_psnr": pu21_psnr,
           "psnr_mu_gain_fit": psnr_mu_gain_fitted}
DEFAULT_OUT = Path("benchmarks/results/ood.md")


def fail(message: str) -> None:
    """One line on stderr and exit code 2 (bad option or missing install)."""
    print(f"ood.py: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="default",
                        help="pipeline folder (like src/gmodiff/weights/default) or bundled name")
    parser.add_argument("--path", default="optimised", choices=PATHS,
                        help="run the pipeline as the CLI does (optimised) or plain (reference)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS,
                        help="subset of the methods to run")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="Markdown report; the per-scene CSV goes next to it")
    parser.add_argument("--scenes", type=int, default=None,
                        help="first N scenes only, spread over the conditions (quick run)")
    parser.add_argument("--size", type=int, nargs=2, default=(680, 1000), metavar=("H", "W"))
    parser.add_argument("--cache", type=Path, default=ood_scenes.CACHE_DIR,
                        help="where simulated brackets are cached")
    args = parser.parse_args(argv)
    if args.scenes is not None and args.scenes < 1:
        fail(f"--scenes must be ≥ 1, got {args.scenes}")
    if min(args.size) < 64:
        fail(f"--size {args.size[0]} {args.size[1]} is too small; use at least 64 64")
    if args.out.suffix.lower() != ".md":
        fail(f"--out {args.out}: give a .md path (the CSV is written next to it)")
    if args.out.parent.exists() and not args.out.parent.is_dir():
        fail(f"--out {args.out}: {args.out.parent} is not a folder")
    return args


def selected_specs(count: int | None) -> list[ood_scenes.SceneSpec]:
    """All scenes, or the first ``count`` taken round-robin over the conditions."""
    specs = ood_scenes.scene_specs()
    if count is None or count >= len(specs):
        return specs
    by_condition = [[s for s in specs if s.condition == c] for c in ood_scenes.CONDITIONS]
    order = [group[i] for i in range(max(map(len, by_condition))) for group in by_condition
             if i < len(group)]
    return order[:count]


def load_pipeline(weights: str, path: str = "optimised"):
    """The pipeline at ``weights`` run as the CLI runs it (``path``, see ``cli_path.py``), or
    exit 2 with the loader's one-line reason."""
    if weights != "default" and not Path(weights).is_dir():
        fail(f"--weights {weights}: no such folder; give a pipeline folder like "
             "src/gmodiff/weights/default")
    from gmodiff.pipeline.pipeline import GMODiffPipeline, resolve_weights

    try:
        return PlannedPipeline(GMODiffPipeline.from_pretrained(resolve_weights(weights)), path)
    except GmodiffError as err:
        fail(f"--weights {weights}: {err}")
    except (OSError, ValueError, KeyError) as err:
        fail(f"--weights {weights}: cannot load a pipeline folder ({err}); "
             "give a folder like src/gmodiff/weights/default")


def row_names(pipe_refines: bool) -> dict[str, str]:
    """Method → table row; the pipeline's own default (refined or not) is marked as such."""
    return {"default": "gmodiff, DaReg stage" + ("" if pipe_refines else " (default output)"),
            "refine": "gmodiff --refine" + (" (default output)" if pipe_refines else ""),
            "deghost": "deghost", "debevec": "debevec", "debevec-calibrated": "debevec-calibrated"}


def method_functions(methods: list[str], pipe) -> dict[str, callable]:
    """Row name → fn(scene, model_output) -> HDR for the chosen methods. The two model rows
    share one pipeline call per scene (:func:`model_output`): the refined output carries the
    DaReg stage's gain map, the same as a ``refine=False`` run gives."""
    from gmodiff.baselines import CLASSICAL_METHODS

    names = row_names(bool(pipe is not None and pipe.refine))
    functions = {}
    for method in methods:
        if method == "default":
            functions[names[method]] = lambda scene, out: out.coarse_hdr
        elif method == "refine":
            functions[names[method]] = lambda scene, out: out.hdr
        else:
            classical = CLASSICAL_METHODS[method]
            functions[method] = lambda scene, out, fn=classical: fn(scene)
    return functions


@dataclass
class ModelOutput:
    """The pipeline's outputs for one scene: DaReg-stage HDR, refined HDR (None when not run),
    DA mask, and the seconds each took."""

    coarse_hdr: np.ndarray
    hdr: np.ndarray | None
    mask: np.ndarray
    seconds: dict[str, float]


def model_output(pipe, scene, refine: bool) -> ModelOutput:
    """One pipeline call: with ``refine`` the refined HDR too (the DaReg stage is its first part)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    out = pipe(scene, refine=refine)
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    coarse = pipe.decode(out.coarse_gain_map, scene)  # against the reference DaReg saw
    # The DaReg stage's share of the call, by the pipeline's own timer.
    share = out.timings.get("dareg_s", wall) / max(out.timings.get("total_s", wall), 1e-9)
    seconds = {"coarse": wall * share, "coarse_cpu": cpu * share, "refined": wall, "refined_cpu": cpu}
    return ModelOutput(np.asarray(coarse), out.hdr if refine else None, np.asarray(out.mask), seconds)


def score(hdr: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Every metric, the fitted log gain and the per-band median ratios of one prediction."""
    hdr = np.nan_to_num(np.asarray(hdr, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    scores = {name: float(fn(hdr, gt)) for name, fn in METRICS.items()}
    scores["gain"] = fit_log_gain(hdr, gt)
    for band, ratio in zip(RADIANCE_BANDS, band_ratios(hdr, gt)):
        scores[f"ratio {band_label(band)}"] = ratio
    return scores


def run(specs, functions, size, cache, pipe=None, methods=()) -> tuple[list[dict], float]:
    """Per (scene, method) result rows, and the seconds spent building/loading scenes.

    Rows carry region PSNRs (``gmodiff.metrics.regions``: clipped reference, DA-unreliable,
    moving) and, for the model rows and deghost, HDR-FLIP. The DA mask of the regions is the
    default model's, shared by every method of the scene."""
    from gmodiff.metrics.regions import region_masks, region_metrics

    names = row_names(bool(pipe is not None and pipe.refine))
    timed = {names["default"]: ("coarse", "coarse_cpu"), names["refine"]: ("refined", "refined_cpu")}
    rows, build_s = [], 0.0
    for spec in tqdm(specs, desc="ood", unit="scene"):
        start = time.perf_counter()
        scene = ood_scenes.build_scene(spec, size, cache)
        build_s += time.perf_counter() - start
        dark = dark_fraction(scene.ground_truth)
        out = model_output(pipe, scene, "refine" in methods) if pipe is not None else None
        masks = region_masks(reference=scene.reference,
                             da_mask=None if out is None else out.mask, motion_mask=scene.motion_mask)
        for name, fn in functions.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            hdr = fn(scene, out)
            seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
            if name in timed:
                seconds, cpu = (out.seconds[k] for k in timed[name])
            regional = region_metrics(hdr, scene.ground_truth, masks, fractions=True)
            if name in timed or name == "deghost":
                regional["hdr_flip"] = flip_error(hdr, scene.ground_truth)
            rows.append({"scene": spec.name, "kind": spec.kind, "condition": spec.condition.label,
                         "dark_fraction": dark, "method": name, **score(hdr, scene.ground_truth),
                         **regional, "seconds": seconds, "cpu_seconds": cpu})
    return rows, build_s


def flip_error(hdr: np.ndarray, gt: np.ndarray) -> float:
    """Mean HDR-FLIP error, NaN where flip-evaluator is not installed."""
    from gmodiff.metrics import MetricUnavailableError, hdr_flip

    try:
        value = hdr_flip(np.nan_to_num(np.asarray(hdr, np.float32)), gt)
    except MetricUnavailableError:
        value = None
    return float("nan") if value is None else float(value)


# ---------------------------------------------------------------------------------------------
# Report


def _metric_means(rows: list[dict]) -> dict[str, dict[str, float]]:
    by_method: dict[str, list[dict]] = {}
    for row in rows:
        by_method.setdefault(row["method"], []).append(
            {**{k: row[k] for k in METRICS}, "seconds": row["seconds"]})
    return mean_rows(by_method)


def band_table(rows: list[dict]) -> list[str]:
    """Markdown: per method and band, the median over scenes of the per-scene median ratio
    and its range (scenes with under 50 pixels in a band do not vote)."""
    labels = [band_label(b) for b in RADIANCE_BANDS]
    lines = ["| method | " + " | ".join(labels) + " | fitted gain |", "|" + "---|" * (len(labels) + 2)]
    for method in dict.fromkeys(r["method"] for r in rows):
        cells = []
        mine = [r for r in rows if r["method"] == method]
        for label in labels + ["gain"]:
            key = "gain" if label == "gain" else f"ratio {label}"
            values = np.array([r[key] for r in mine], dtype=np.float64)
            values = values[np.isfinite(values)]
            cells.append("–" if not len(values) else
                         f"×{np.median(values):.2f} (×{values.min():.2f}–×{values.max():.2f})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def default_row(pipe_refines: bool, methods: list[str]) -> str | None:
    """Row name of the pipeline's default output, if it was run."""
    wanted = "refine" if pipe_refines else "default"
    return row_names(pipe_refines)[wanted] if wanted in methods else None


def margins(rows: list[dict], ours: str, groups: list[str]) -> list[str]:
    """Markdown: default output minus deghost, PSNR-μ / PSNR-l, overall and per condition."""
    lines = ["| scenes | Δ PSNR-μ | Δ PSNR-l | Δ PSNR-μ gain-fitted | default wins (PSNR-μ) |",
             "|---|---|---|---|---|"]
    for group in ["all"] + groups:
        picked = [r for r in rows if group == "all" or r["condition"] == group]
        a = {r["scene"]: r for r in picked if r["method"] == ours}
        b = {r["scene"]: r for r in picked if r["method"] == "deghost"}
        common = [s for s in a if s in b]
        if not common:
            continue
        deltas = {k: np.mean([a[s][k] - b[s][k] for s in common])
                  for k in ("psnr_mu", "psnr_l", "psnr_mu_gain_fit")}
        wins = sum(a[s]["psnr_mu"] > b[s]["psnr_mu"] for s in common)
        lines.append(f"| {group} | {deltas['psnr_mu']:+.2f} | {deltas['psnr_l']:+.2f} | "
                     f"{deltas['psnr_mu_gain_fit']:+.2f} | {wins}/{len(common)} |")
    return lines


def region_lines(rows: list[dict], names: dict[str, str]) -> list[str]:
    """Markdown: quality.py's region table over the flat OOD rows, refined − DaReg paired by scene."""
    by_method: dict[str, list[dict]] = {}
    for row in rows:
        by_method.setdefault(row["method"], []).append(row)
    return region_table(by_method, list(by_method), pair=(names["default"], names["refine"]))


def write_csv(rows: list[dict], path: Path) -> None:
    """Per (scene, method) rows, atomically."""
    buffer = io.StringIO()
    fields = list(dict.fromkeys(k for row in rows for k in row))  # FLIP: some methods only
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, cwd=ood_scenes.REPO)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def report(args, argv: list[str], rows: list[dict], specs, pipe_refines: bool | None,
           timing: dict[str, float]) -> str:
    """The whole Markdown report."""
    conditions = list(dict.fromkeys(s.condition.label for s in specs))
    kinds = list(dict.fromkeys(s.kind for s in specs))
    darks = {r["scene"]: r["dark_fraction"] for r in rows}
    deep = sum(v >= 0.4 for v in darks.values())
    ours = default_row(bool(pipe_refines), args.methods) if pipe_refines is not None else None
    command = "python benchmarks/ood.py" + "".join(f" {shlex.quote(a)}" for a in argv)
    h, w = args.size
    lines = [
        "# Out-of-distribution benchmark",
        "",
        f"`{command}` (commit {_commit()}, weights `{args.weights}`, {args.path} path"
        + (f"; the pipeline's default output is its {'refined' if pipe_refines else 'DaReg-stage'} "
           "output)" if pipe_refines is not None else ")"),
        "",
        f"{len(specs)} scenes, {w}×{h}, 16-bit frames, 3 per bracket (reference = middle). Content "
        "never used for training or tuning (docs/data.md): real HDR photographs held out by the "
        "data split (@pmndrs/assets dawn, lobby, sunrise, sunset, venice, workshop; blender-data "
        "sunrise, sunset) or found in a registry (Pisa courtyard cube map, npm three-envmap-helper), "
        "and eval-only procedural dark rooms lit by small lamps and night streets "
        "(benchmarks/ood_render.py: a ray-cast 3-D box world with point lights, inverse-square "
        "fall-off, Lambert shading, hard shadows and textured surfaces; its construction differs "
        "from every training generator, which paint 2-D layers onto the image plane). Dark rooms, "
        "streets and the two real interiors are exposed for their lamps (the short frame keeps "
        "them), the real daylight views with the simulator's usual highlight rule.",
        "",
        f"Scenes with ≥ 40 % of pixels below 1e-3 of the peak luminance: **{deep} of {len(specs)}** "
        f"(median over all scenes {np.median(list(darks.values())) * 100:.0f} %). Brackets: spec §6 "
        "camera model (gmodiff.data.simulate) with camera shake and 1-3 moving objects on the "
        "non-reference frames; read noise 1.5-2.5e-3 plus photon noise where noise is on. Camera "
        "curves outside the simulator's family: HLG (ARIB STD-B67) and a LogC3-form cine log curve "
        "(benchmarks/ood_scenes.py). Metrics on HDR relative to the t=1 exposure: PSNR-μ, PSNR-l, "
        "SSIM-μ, PU21-PSNR, and PSNR-μ after dividing the prediction by one gain per image fitted in "
        "log space (median of log(pred/gt) over unclipped pixels; src/gmodiff/metrics/exposure.py).",
        "",
        f"Runtime: {timing['total_s'] / 60:.1f} min wall ({timing['build_s'] / 60:.1f} min building "
        f"or loading scenes), {timing['cpu_s'] / 60:.1f} min CPU time, on {os.cpu_count()} cores "
        f"({platform.machine()}), load average at the end {timing['load']:.1f}. Reruns load the "
        "scenes from the cache (benchmarks/.cache/ood). CPU seconds per scene: "
        + ", ".join(f"{m} {np.mean([r['cpu_seconds'] for r in rows if r['method'] == m]):.1f}"
                    for m in dict.fromkeys(r["method"] for r in rows)) + ".",
        "",
        "## All scenes",
        "",
        *table(_metric_means(rows)),
        "",
    ]
    if ours is not None and "deghost" in args.methods:
        lines += ["### Margin of the default output over deghost (mean over scenes)", "",
                  *margins(rows, ours, conditions), ""]
    lines += ["### Median predicted / true luminance by band of true luminance / peak", "",
              "Cells: median over scenes of each scene's median ratio (range over scenes). "
              "Fitted gain: the per-image gain of the gain-fitted PSNR-μ.", "",
              *band_table(rows), ""]
    if any("psnr_mu_clipped" in r for r in rows):
        lines += ["### Regions (issue #17)", "",
                  "PSNR over pixels clipped in the reference frame, pixels the default model's DA "
                  "mask calls unreliable (≥ 0.5), and pixels covered by a moving object "
                  "(simulator's motion mask ≥ 0.5): mean over the scenes that have at least 64 such "
                  "pixels. HDR-FLIP (flip-evaluator, mean error, lower is better) for the model rows "
                  "and deghost.", "", *region_lines(rows, row_names(bool(pipe_refines))), ""]
    lines += ["## By kind of scene", ""]
    for kind in kinds:
        picked = [r for r in rows if r["kind"] == kind]
        count = len({r["scene"] for r in picked})
        lines += [f"### {kind} ({count} scenes)", "", *table(_metric_means(picked)), "",
                  *band_table(picked), ""]
    lines += ["## By condition", ""]
    for condition in conditions:
        picked = [r for r in rows if r["condition"] == condition]
        names = ", ".join(dict.fromkeys(r["scene"] for r in picked))
        lines += [f"### {condition}", "", f"Scenes: {names}.", "", *table(_metric_means(picked)),
                  "", *band_table(picked), ""]
    lines += [f"Per-scene numbers: `{args.out.with_suffix('.csv').name}`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Parse options, check the sources, run every method on every scene, write the report."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    missing = ood_scenes.missing_sources()
    if missing:
        fail("missing evaluation sources: " + "; ".join(missing))
    needs_pipe = {"default", "refine"} & set(args.methods)
    pipe = load_pipeline(args.weights, args.path) if needs_pipe else None
    specs = selected_specs(args.scenes)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    functions = method_functions(args.methods, pipe)
    rows, build_s = run(specs, functions, tuple(args.size), args.cache, pipe, args.methods)
    timing = {"total_s": time.perf_counter() - start_wall, "build_s": build_s,
              "cpu_s": time.process_time() - start_cpu, "load": os.getloadavg()[0]}
    text = report(args, argv, rows, specs, pipe.refine if pipe is not None else None, timing)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out.with_suffix(".csv"))
    with atomic_path(args.out) as tmp:
        tmp.write_text(text)
    print(text)
    ours = default_row(bool(pipe.refine), args.methods) if pipe is not None else None
    if ours is not None and "deghost" in args.methods:
        print("Default output minus deghost (mean over scenes):")
        print("\n".join(margins(rows, ours, list(dict.fromkeys(s.condition.label for s in specs)))))


if __name__ == "__main__":
    main()
