"""``gmodiff eval``: score folders of predicted HDR images against scene ground truths.

The scoring lives in :mod:`gmodiff.evaluation.folder`; this command prints a per-scene table, then the
paper's layout: one row per method with its means (:func:`format_methods_table`) and a line per
optional metric saying what it measured (``--extra cvvdp,flip``: ColorVideoVDP's display model,
HDR-FLIP's version). ``--compare DIR1 DIR2 ...`` scores several methods' folders on the same
scenes, side by side. ``-o`` writes the report as JSON or CSV.
"""

from __future__ import annotations

import math
from pathlib import Path

import typer

from gmodiff.cli import app
from gmodiff.errors import ConfigError, OutputError
from gmodiff.evaluation.folder import (REPORT_SUFFIXES, EvalReport, match_predictions, method_names,
                                metric_label, score_pairs, union_metric_names, write_comparison,
                                write_report)


def _fmt(name: str, value: float) -> str:
    if math.isnan(value):
        return "—"  # a region this scene does not have
    if not math.isfinite(value):
        return "inf" if value > 0 else str(value)
    return f"{value:.2f}" if "psnr" in name or name == "cvvdp_jod" else f"{value:.4f}"


def format_table(report: EvalReport) -> str:
    """A plain-text table: one row per scene, a mean row, then any missing scenes."""
    names = report.metric_names
    mean_label = f"mean ({len(report.rows)})"
    width = max([len(mean_label)] + [len(r["scene"]) for r in report.rows]) + 2
    cols = {n: max(11, len(n) + 2) for n in names}  # region names are longer than 11
    lines = ["scene".ljust(width) + "".join(f"{n:>{cols[n]}}" for n in names)]
    for row in report.rows:
        cells = "".join(f"{_fmt(n, row[n]):>{cols[n]}}" for n in names)
        lines.append(row["scene"].ljust(width) + cells)
    mean = report.mean
    if mean:
        lines.append("-" * len(lines[0]))
        lines.append(mean_label.ljust(width)
                     + "".join(f"{_fmt(n, mean[n]):>{cols[n]}}" for n in names))
    if report.missing:
        lines.append(f"missing predictions ({len(report.missing)}): " + ", ".join(report.missing))
    return "\n".join(lines)


def format_methods_table(reports: dict[str, EvalReport], notes: list[str] | None = None) -> str:
    """The paper's layout: one row per method (its mean over scenes), one column per metric.

    A method lacking a metric shows "-"; each line of ``notes`` (what JOD/FLIP measured) follows.
    """
    names = union_metric_names(reports)
    labels = [metric_label(n) for n in names]
    widths = [max(len(label), 7) + 2 for label in labels]
    first = max([len("method")] + [len(m) for m in reports]) + 2
    lines = ["method".ljust(first) + "".join(f"{lab:>{w}}" for lab, w in zip(labels, widths))
             + "  scenes"]
    for method, report in reports.items():
        mean = report.mean
        cells = "".join(f"{(_fmt(n, mean[n]) if n in mean else '-'):>{w}}"
                        for n, w in zip(names, widths))
        count = f"{len(report.rows)}" + (f" ({len(report.missing)} missing)" if report.missing
                                         else "")
        lines.append(method.ljust(first) + cells + f"  {count}")
    return "\n".join(lines + list(notes or []))


def _pred_folders(pred: Path | None, compare: bool, folders: list[Path] | None) -> list[Path]:
    # --pred P, or --compare DIR1 DIR2 ... (folders are positional so the list reads naturally)
    folders = list(folders or [])
    if folders and not compare:
        raise ConfigError(f"extra arguments {' '.join(map(str, folders))}",
                          fix="pass --compare DIR1 DIR2 ... to compare methods, or --pred DIR")
    if compare and not folders:
        raise ConfigError("--compare needs the prediction folders after it",
                          fix="e.g. gmodiff eval --gt scenes/ --compare out-a/ out-b/")
    dirs = ([pred] if pred is not None else []) + folders
    if not dirs:
        raise ConfigError("no predictions given", fix="pass --pred DIR or --compare DIR1 DIR2 ...")
    return dirs


@app.command("eval")
def eval_command(
    pred: Path | None = typer.Option(None, "--pred",
                                     help="Folder of predictions named <scene>.exr (or .hdr)."),
    gt: Path = typer.Option(..., "--gt",
                            help="A scene folder, or a folder of scene folders with ground truth."),
    folders: list[Path] | None = typer.Argument(None, show_default=False,
                                                help="With --compare: prediction folders, one "
                                                "per method."),
    compare: bool = typer.Option(False, "--compare",
                                 help="Compare methods: --compare DIR1 DIR2 ... (one row each)."),
    output: Path | None = typer.Option(None, "-o", "--output",
                                       help="Write metrics to this .json or .csv file."),
    extra: str | None = typer.Option(None, "--extra", metavar="cvvdp,flip",
                                     help="Also ColorVideoVDP JOD (needs `make metrics-env`) "
                                     "and/or HDR-FLIP: a comma list, or all."),
    allow_missing: bool = typer.Option(False, "--allow-missing",
                                       help="Score the scenes that have predictions, list the "
                                       "rest, and exit with code 1."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    regions: bool | None = typer.Option(None, "--regions/--no-regions",
                                        help="PSNR-μ/l over clipped-reference, DA-unreliable "
                                        "and moving pixels (default: when scenes carry masks)."),
) -> None:
    """Score predicted HDR images against ground truth: PSNR-μ/l, SSIM-μ/l, PU21-PSNR/SSIM, and
    with --extra ColorVideoVDP JOD / HDR-FLIP; --compare puts methods side by side."""
    from gmodiff.metrics import ExtraMetrics, parse_extra

    if output is not None and output.suffix.lower() not in REPORT_SUFFIXES:
        raise OutputError(f"unsupported report extension '{output.suffix}'", output,
                          "use .json or .csv")
    dirs = _pred_folders(pred, compare, folders)
    extra_names = parse_extra(extra)
    # Every folder is checked before any metric runs: a typo fails in a second, not after cvvdp.
    matched = [match_predictions(d, gt, allow_missing) for d in dirs]
    reports: dict[str, EvalReport] = {}
    with ExtraMetrics(extra_names) as metrics:
        for name, (todo, missing) in zip(method_names(dirs), matched):
            reports[name] = score_pairs(todo, missing, extra=metrics if extra_names else False,
                                        progress=progress, regions=regions)
        notes = metrics.notes()
    if len(dirs) == 1:
        typer.echo(format_table(next(iter(reports.values()))))
        typer.echo("")
    typer.echo(format_methods_table(reports, notes))
    if output is not None:
        if len(dirs) == 1:
            write_report(output, next(iter(reports.values())), dirs[0], gt, notes)
        else:
            write_comparison(output, reports, dict(zip(reports, dirs)), gt, notes)
        typer.echo(f"wrote {output}")
    missing_count = sum(len(r.missing) for r in reports.values())
    if missing_count:
        # Still a failure for scripts: the numbers do not cover the whole test set.
        typer.echo(f"warning: {missing_count} scene(s) had no prediction", err=True)
        raise typer.Exit(1)
