"""``gmodiff eval``: score a folder of predicted HDR images against scene ground truths.

The scoring lives in :mod:`gmodiff.evaluation`; this command prints its report as a table and
writes it with ``-o`` as JSON or CSV.
"""

from __future__ import annotations

import math
from pathlib import Path

import typer

from gmodiff.cli import app
from gmodiff.errors import OutputError
from gmodiff.evaluation import REPORT_SUFFIXES, EvalReport, evaluate_folder, write_report


def _fmt(name: str, value: float) -> str:
    if not math.isfinite(value):
        return "inf" if value > 0 else str(value)
    return f"{value:.2f}" if "psnr" in name or name == "cvvdp_jod" else f"{value:.4f}"


def format_table(report: EvalReport) -> str:
    """A plain-text table: one row per scene, a mean row, then any missing scenes."""
    names = report.metric_names
    mean_label = f"mean ({len(report.rows)})"
    width = max([len(mean_label)] + [len(r["scene"]) for r in report.rows]) + 2
    lines = ["scene".ljust(width) + "".join(f"{n:>11}" for n in names)]
    for row in report.rows:
        cells = "".join(f"{_fmt(n, row[n]):>11}" for n in names)
        lines.append(row["scene"].ljust(width) + cells)
    mean = report.mean
    if mean:
        lines.append("-" * len(lines[0]))
        lines.append(mean_label.ljust(width)
                     + "".join(f"{_fmt(n, mean[n]):>11}" for n in names))
    if report.missing:
        lines.append(f"missing predictions ({len(report.missing)}): " + ", ".join(report.missing))
    return "\n".join(lines)


@app.command("eval")
def eval_command(
    pred: Path = typer.Option(..., "--pred",
                              help="Folder of predictions named <scene>.exr (or .hdr)."),
    gt: Path = typer.Option(..., "--gt",
                            help="A scene folder, or a folder of scene folders with ground truth."),
    output: Path | None = typer.Option(None, "-o", "--output",
                                       help="Write metrics to this .json or .csv file."),
    extra: bool = typer.Option(False, "--extra",
                               help="Also run cvvdp (JOD) and HDR-FLIP if installed."),
    allow_missing: bool = typer.Option(False, "--allow-missing",
                                       help="Score the scenes that have predictions, list the "
                                       "rest, and exit with code 1."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Score predicted HDR images against ground truth: PSNR-μ/l, SSIM-μ/l, PU21-PSNR/SSIM."""
    if output is not None and output.suffix.lower() not in REPORT_SUFFIXES:
        raise OutputError(f"unsupported report extension '{output.suffix}'", output,
                          "use .json or .csv")
    report = evaluate_folder(pred, gt, extra=extra, allow_missing=allow_missing, progress=progress)
    typer.echo(format_table(report))
    if output is not None:
        write_report(output, report, pred, gt)
        typer.echo(f"wrote {output}")
    if report.missing:
        # Still a failure for scripts: the numbers do not cover the whole test set.
        typer.echo(f"warning: {len(report.missing)} scene(s) had no prediction", err=True)
        raise typer.Exit(1)
