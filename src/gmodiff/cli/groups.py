"""``gmodiff reconstruct DIR --group``: a folder of camera files → one HDR file per bracket.

The brackets are found from EXIF (``gmodiff.bracket.groups``) and listed before any work starts
(``--dry-run`` stops there); each is then read, aligned and reconstructed like a bracket given
file by file, and written as ``<reference frame's name>.<format>`` in the ``-o`` folder. Files
that fit no bracket are listed. A bracket that fails is listed at the end and makes the exit
code 1; the others are still written.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import typer

from gmodiff import jobs
from gmodiff.errors import ConfigError, GmodiffError, OutputError, SceneError, display_path
from gmodiff.methods import ReconstructOptions, memory_check

GROUP_FORMATS = (".exr", ".hdr", ".dng", ".jpg")


def group_reference(paths: list[Path], stops: list[float]) -> int:
    """Index (into ``paths``) of the frame the bracket's output is named after: the default
    reference of ``gmodiff.bracket.prepare`` (nearest the middle exposure) from EXIF alone."""
    from gmodiff.bracket.prepare import choose_reference

    order = np.argsort(np.asarray(stops), kind="stable")
    return int(order[choose_reference(np.asarray(stops)[order])])


def output_names(grouping, suffix: str) -> list[str]:
    """One output file name per group, after its reference frame (made unique if needed)."""
    names, used = [], set()
    for paths in grouping.groups:
        stops = [grouping.shots[p].stops for p in paths]
        stem = paths[group_reference(paths, stops)].stem
        name, count = f"{stem}{suffix}", 1
        while name.lower() in used:
            count += 1
            name = f"{stem}_{count}{suffix}"
        used.add(name.lower())
        names.append(name)
    return names


def describe(grouping, names: list[str], out_dir: Path) -> list[str]:
    """The listing shown before the work starts (and all of ``--dry-run``)."""
    lines = [f"found {len(grouping.groups)} bracket(s):"]
    for index, (paths, name) in enumerate(zip(grouping.groups, names), start=1):
        stops = [grouping.shots[p].stops for p in paths]
        reference = group_reference(paths, stops)
        frames = ", ".join(f"{p.name} ({s - stops[reference]:+.1f} EV)"
                           for p, s in zip(paths, stops))
        lines.append(f"  {index}. {display_path(out_dir / name)} ← {frames}")
    if grouping.unplaced:
        lines.append(f"not placed in any bracket ({len(grouping.unplaced)}):")
        lines += [f"  {display_path(p.name)}: {reason}" for p, reason in grouping.unplaced]
    return lines


def reconstruct_groups(folder: Path, out_dir: Path, method: str, options: ReconstructOptions,
                       output_format: str, float_exr: bool, align: str, dry_run: bool,
                       progress: bool) -> None:
    """Group ``folder``'s camera files into brackets, list them, and (unless ``dry_run``)
    reconstruct each into ``out_dir``."""
    from tqdm import tqdm

    from gmodiff.bracket.prepare import BracketOptions, prepare_bracket
    from gmodiff.bracket.groups import group_folder
    from gmodiff.io.paths import check_not_an_input, check_writable_folder

    suffix = "." + output_format.lower().lstrip(".")
    if suffix not in GROUP_FORMATS:
        raise ConfigError(f"unsupported output format {output_format!r} for --group",
                          fix="use exr, hdr, dng or jpg")
    if not folder.is_dir():
        raise SceneError("is not a folder; --group takes the folder holding the camera files",
                         folder)
    grouping = group_folder(folder)
    names = output_names(grouping, suffix)
    for line in describe(grouping, names, out_dir):
        typer.echo(line)
    if not grouping.groups:
        raise SceneError("no bracket found among the files", folder,
                         "brackets need 2+ shots of different exposure taken in quick succession")
    if dry_run:
        return
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError("is a file, but --group writes one file per bracket", out_dir,
                          "pass a folder as the output")
    check_writable_folder(out_dir)
    inputs = [p for paths in grouping.groups for p in paths]
    for name in names:
        check_not_an_input(out_dir / name, inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    failures, written = [], 0
    for paths, name in tqdm(list(zip(grouping.groups, names)), desc="brackets", unit="bracket",
                            file=sys.stderr, leave=False, disable=None if progress else True):
        try:
            prepared = prepare_bracket(paths, BracketOptions(align=align),
                                       run_check=memory_check(method, options))
            jobs.write_reconstruction(prepared.scene, out_dir / name, method, options,
                                      jobs.OutputOptions(float_exr=float_exr),
                                      finish=prepared.finish)
            written += 1
        except GmodiffError as err:
            failures.append(str(err))
        except (MemoryError, RuntimeError, ValueError, OSError, ArithmeticError) as exc:
            failures.append(f"{display_path(paths[0])}: internal error ({type(exc).__name__}: "
                            f"{exc}) — please report it with these files")
    typer.echo(f"wrote {written} of {len(names)} HDR image(s) to {display_path(out_dir)}")
    if failures:
        typer.echo(f"{len(failures)} bracket(s) failed:", err=True)
        for line in failures:
            typer.echo(f"  {line}", err=True)
        raise typer.Exit(1)
