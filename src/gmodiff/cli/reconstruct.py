"""``gmodiff reconstruct``: scene folder(s) or a plain bracket of image files → HDR image(s).

Two or more image files (JPEG/TIFF/PNG or camera raw files, e.g. straight from a camera) are
one bracket: exposures from EXIF or ``--ev``/``--times``, frames chosen and aligned by
``gmodiff.bracket.prepare``. ``DIR --group`` finds the brackets in a folder of camera files
(``gmodiff.cli.groups``).

One scene folder (with ``exposure.txt``) → the ``-o`` file (.hdr, .exr or Ultra HDR .jpg).
A folder of scene folders → ``-o`` is a folder that receives ``<scene name>.<format>`` per scene;
broken scenes are skipped, listed at the end, and make the exit code 1 while the good ones are
still written. Every file is written atomically, so a failure leaves no partial output. Under
``accelerate launch -m gmodiff reconstruct scenes/ -o out/`` the scenes are shared out over the
processes (GPUs, machines); the main process prints the summary for all.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from gmodiff import jobs
from gmodiff.cli import app
from gmodiff.errors import ConfigError, SceneError, as_flags, display_path, printable
from gmodiff.methods import DTYPES, ReconstructOptions, memory_check, preload, will_refine


def _check_method(method: str) -> None:
    from gmodiff.methods import available_methods

    if method not in available_methods():
        raise ConfigError(f"unknown method {method!r}",
                          fix=f"use one of {', '.join(available_methods())}")


def _check_learned_flags(method: str, options: ReconstructOptions, debug_maps: bool) -> None:
    """--weights/--debug-maps need a learned method, --steps the refiner; dareg needs --weights."""
    if method == "dareg" and options.weights is None:
        raise ConfigError("--method dareg needs --weights",
                          fix="pass a DaReg folder (DaReg.save_pretrained) or dareg_mask.pth")
    if method not in ("gmodiff", "auto", "dareg") and (options.weights is not None or debug_maps):
        raise ConfigError(f"--weights/--debug-maps need a learned method, not {method!r}",
                          fix="add --method dareg or --method gmodiff")
    if method not in ("gmodiff", "auto") and options.steps > 1:
        raise ConfigError(f"--steps {options.steps} refines, and --method {method} has no refiner",
                          fix="add --method gmodiff --refine, or drop --steps")


def _describe(summary: dict, output: Path) -> str:
    from gmodiff.progress import command_seconds, describe_timings

    # The whole command's wall time (interpreter start-up and imports included), with a split.
    wall = command_seconds()
    if wall is None:
        text = f"wrote {display_path(output)} ({summary['method']}, {summary['seconds']:.2f} s"
    else:
        timings = dict(summary.get("timings", {}))
        startup = max(wall - sum(timings.values()), 0.0)
        text = (f"wrote {display_path(output)} ({summary['method']}, "
                f"{describe_timings(wall, {'start-up': startup, **timings})}")
    if "psnr_mu" in summary:
        text += f"; vs ground truth PSNR-μ {summary['psnr_mu']:.2f} dB, " \
                f"PSNR-l {summary['psnr_l']:.2f} dB"
    return text + ")"


@app.command("reconstruct")
def reconstruct_command(
    inputs: list[Path] = typer.Argument(..., help="A scene folder, a folder of scene folders, "
                                        "or 2+ image files of one bracket (any order)."),
    output: Path = typer.Option(..., "-o", "--output",
                                help="Output .hdr/.exr/.jpg/.dng file (one scene) or folder "
                                "(many, or --group)."),
    method: str = typer.Option("auto", "--method",
                               help="auto (the bundled GMODiff model when installed, else "
                               "classical), classical (= deghost), reference, merge, deghost, "
                               "debevec, dareg, gmodiff."),
    preview: Path | None = typer.Option(None, "--preview", help="Also write a tone-mapped PNG "
                                        "(one scene), or a folder of them (many scenes)."),
    output_format: str = typer.Option("exr", "--format",
                                      help="File type per scene when writing a folder: exr or "
                                      "hdr (with --group also dng or jpg)."),
    group: bool = typer.Option(False, "--group", help="The input is a folder of camera files "
                               "(raw/JPEG/TIFF): find the brackets in it from EXIF and write "
                               "one output per bracket into the -o folder, named after its "
                               "reference frame."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --group: list the brackets "
                                 "found (and the files placed in none), write nothing."),
    float_exr: bool = typer.Option(False, "--float", "--float-exr",
                                   help="Write 32-bit float EXR, not half."),
    ev: str | None = typer.Option(None, "--ev", help="Image files: exposure per file in stops, "
                                  "e.g. -2,0,2 (overrides EXIF)."),
    times: str | None = typer.Option(None, "--times", help="Image files: exposure time per file "
                                     "in seconds, e.g. 0.004,0.016,0.064 (overrides EXIF)."),
    reference: int | None = typer.Option(None, "--reference", help="Image files: the K-th file "
                                         "(1-based) is the reference; default the middle exposure."),
    align: str = typer.Option("ecc", "--align", help="Image files: ecc (homography, default), "
                              "mtb (translation) or none."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    weights: Path | None = typer.Option(None, "--weights", help="gmodiff: a trained pipeline "
                                        "folder, or one holding dareg_mask.pth + gmodiff.pkl; "
                                        "dareg: a DaReg folder or dareg_mask.pth."),
    debug_maps: bool = typer.Option(False, "--debug-maps", help="dareg/gmodiff: also write the "
                                    "gain map and DA mask as <output>.gain_map.png / .mask.png."),
    backbone: Path | None = typer.Option(None, "--backbone", help="gmodiff: local "
                                         "stable-diffusion-2-1-base diffusers folder."),
    steps: int = typer.Option(1, "--steps", min=1, help="gmodiff: refinement steps (1 = the "
                              "one-step model; N>1 runs a DDIM chain from the same start; at "
                              "most 1000)."),
    tile: int = typer.Option(0, "--tile", min=0, help="gmodiff: latent tile size in latent px "
                             "(e.g. 64); 0 = automatic (from the memory plan, see --max-memory)."),
    device: str = typer.Option("cpu", "--device", help="dareg/gmodiff: cpu or cuda[:N]."),
    dtype: str = typer.Option("fp32", "--dtype", help=f"gmodiff: refiner precision, one of "
                              f"{', '.join(DTYPES)} (fp16/bf16 need a GPU)."),
    fuse_lora: bool = typer.Option(True, "--fuse-lora/--no-fuse-lora", help="gmodiff: merge "
                                   "LoRA weights into the base layers (and, on CPU, use the "
                                   "channels_last layout): faster, same result within 1e-4."),
    refine: bool | None = typer.Option(None, "--refine/--no-refine", help="gmodiff: run the "
                                       "refiner, or return DaReg's gain map; default: what the "
                                       "pipeline's config says (the bundled model's card explains)."),
    max_memory: str | None = typer.Option(None, "--max-memory", help="gmodiff: memory the run "
                                          "may use, e.g. 6G; it picks the tile sizes of DaReg "
                                          "and the refiner (64M to 1024T). Default: 60% of the "
                                          "memory free now."),
    preview_exposure: str = typer.Option("reference", "--preview-exposure", help="Exposure of "
                                         "the SDR pictures (--preview PNG and the Ultra HDR "
                                         "JPEG's SDR image, one rendition): reference (default: "
                                         "like the reference frame), auto (brightest 1% near "
                                         "white), or stops from the reference, e.g. +1."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output (stages and "
                               "tiles on stderr: a bar on a terminal, plain lines otherwise)."),
    seed: int = typer.Option(0, "--seed", help="Seed of gmodiff's VAE posterior sampling (only "
                             "pipelines trained with sample_latents draw; the default takes the "
                             "posterior mode; 0 to 2**63-1). Other methods have no randomness."),
) -> None:
    """Reconstruct reference-aligned HDR from exposure brackets."""
    from gmodiff.io.paths import check_output_path
    from gmodiff.io.scene import find_scenes

    from gmodiff.io.preview import parse_preview_exposure
    from gmodiff.memory import parse_size
    from gmodiff.progress import Progress

    outputs = jobs.OutputOptions(preview=preview, float_exr=float_exr, debug_maps=debug_maps,
                                 preview_exposure=parse_preview_exposure(preview_exposure))
    _check_method(method)
    if method == "auto" and weights is not None:
        method = "gmodiff"  # --weights names a GMODiff pipeline
    if len(inputs) == 1:
        inputs = _bracket_in_folder(inputs[0]) or inputs
    single = len(inputs) > 1 or inputs[0].is_file() or (inputs[0] / "exposure.txt").is_file()
    options = ReconstructOptions(weights=weights, backbone=backbone, tile=tile or None,
                                 refine=refine, steps=steps, seed=seed, device=device, dtype=dtype,
                                 fuse_lora=fuse_lora,
                                 max_memory=parse_size(max_memory) if max_memory else None,
                                 progress=Progress(quiet=quiet or not progress) if single else None,
                                 da_mask=debug_maps)
    _check_learned_flags(method, options, debug_maps)
    # The networks' imports run while the bracket is read and aligned (diffusers only if it refines).
    preload(method, will_refine(method, options))
    if group or dry_run:
        if not group:
            raise ConfigError("--dry-run lists the brackets that --group finds",
                              fix="add --group (and pass the folder of camera files)")
        if len(inputs) != 1 or ev is not None or times is not None or reference is not None:
            raise ConfigError("--group takes one folder, with exposures from EXIF",
                              fix="pass only the folder (no --ev/--times/--reference)")
        from gmodiff.cli.groups import reconstruct_groups

        reconstruct_groups(inputs[0], output, method, options, output_format, float_exr, align,
                           dry_run, progress and not quiet)
        return
    if len(inputs) > 1 or inputs[0].is_file():
        _reconstruct_bracket(inputs, output, method, options, outputs, ev, times, reference, align)
        return
    if ev is not None or times is not None or reference is not None:
        raise ConfigError("--ev/--times/--reference apply to image files, not scene folders",
                          fix="scene folders take exposures from exposure.txt")
    scene_dir = inputs[0]
    scenes = find_scenes(scene_dir)
    if not scenes:
        raise SceneError("no scene folders (with exposure.txt) found", scene_dir,
                         "pass a scene folder or a folder of scene folders")
    if scenes == [scene_dir]:
        from gmodiff.io.scene import scene_input_paths

        check_output_path(output)
        jobs.check_preview(preview)
        jobs.check_outputs_spare_inputs(output, preview, debug_maps, scene_input_paths(scene_dir))
        summary = jobs.reconstruct_one(scene_dir, output, method, options, outputs)
        typer.echo(_describe(summary, output))
        if preview is not None:
            typer.echo(f"wrote {display_path(preview)}")
        return
    _reconstruct_many(scenes, output, method, options, outputs, output_format, progress)


def _bracket_in_folder(folder: Path) -> list[Path] | None:
    """The image files of a plain folder that is no scene folder and holds none (e.g. a card's
    JPEGs): a bracket whose exposures come from EXIF, like the files given one by one."""
    from gmodiff.io.scene import EXPOSURE_FILE, find_scenes, scene_frame_paths

    if not folder.is_dir() or (folder / EXPOSURE_FILE).is_file() or find_scenes(folder):
        return None
    frames = scene_frame_paths(folder)
    return frames if len(frames) >= 2 else None


def _reconstruct_bracket(paths: list[Path], output: Path, method: str, options: ReconstructOptions,
                         outputs: jobs.OutputOptions, ev: str | None, times: str | None,
                         reference: int | None, align: str) -> None:
    """Several image files: one bracket → one HDR file; every check runs before any write."""
    from gmodiff.bracket.prepare import BracketOptions, number_list, prepare_bracket
    from gmodiff.io.paths import check_output_path

    folders = [p for p in paths if p.is_dir()]
    if folders:
        raise SceneError("is a folder; pass either one scene folder or the image files of one "
                         "bracket", folders[0])
    check_output_path(output)
    jobs.check_preview(outputs.preview)
    jobs.check_outputs_spare_inputs(output, outputs.preview, outputs.debug_maps, paths)
    reading = time.perf_counter()
    prepared = prepare_bracket(paths, BracketOptions(ev=number_list(ev, "ev"),
                                                     times=number_list(times, "times"),
                                                     reference=reference, align=align),
                               run_check=memory_check(method, options))
    read_s = time.perf_counter() - reading
    for line in prepared.selection.describe().splitlines():  # file names: escapes shown
        typer.echo(printable(line))
    for warning in prepared.alignment.warnings:
        typer.echo(printable(f"warning: {warning}"), err=True)
    summary = jobs.write_reconstruction(prepared.scene, output, method, options, outputs,
                                        finish=prepared.finish)
    summary["timings"] = {"read + align": read_s, **summary["timings"]}
    typer.echo(_describe(summary, output))
    if outputs.preview is not None:
        typer.echo(f"wrote {display_path(outputs.preview)}")


def _reconstruct_many(scenes: list[Path], out_dir: Path, method: str, options: ReconstructOptions,
                      outputs: jobs.OutputOptions, output_format: str, progress: bool) -> None:
    """A folder of scene folders → one file per scene; broken scenes listed, exit code 1.
    ``outputs.preview`` names the batch's preview folder."""
    preview_dir = outputs.preview
    suffix = jobs.check_batch(scenes, out_dir, preview_dir, output_format, outputs.debug_maps)
    report = jobs.reconstruct_sharded(scenes, out_dir, method, options, suffix, preview_dir,
                                      outputs.with_preview(None), progress=progress)
    if not report.main_process:  # under accelerate launch, the main process reports for all
        raise typer.Exit(1 if report.failures else 0)
    typer.echo(f"wrote {report.written} of {report.total} HDR image(s) to {display_path(out_dir)}")
    if report.failures:
        typer.echo(f"{len(report.failures)} scene(s) failed:", err=True)
        for line in report.failures:
            typer.echo(f"  {as_flags(line)}", err=True)
        raise typer.Exit(1)
