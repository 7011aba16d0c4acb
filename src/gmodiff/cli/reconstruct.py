"""``gmodiff reconstruct``: scene folder(s) or a plain bracket of image files → HDR image(s).

Two or more image files (JPEG/TIFF/PNG, e.g. straight from a camera) are one bracket: exposures
from EXIF or ``--ev``/``--times``, frames chosen and aligned by ``gmodiff.brackets``.

One scene folder (with ``exposure.txt``) → the ``-o`` file (.hdr, .exr or Ultra HDR .jpg).
A folder of scene folders → ``-o`` is a folder that receives ``<scene name>.<format>`` per scene;
broken scenes are skipped, listed at the end, and make the exit code 1 while the good ones are
still written. Every file is written atomically, so a failure leaves no partial output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from gmodiff.cli import app
from gmodiff.errors import ConfigError, GmodiffError, OutputError, SceneError


def _check_method(method: str) -> None:
    from gmodiff.reconstruct import available_methods

    if method not in available_methods():
        raise ConfigError(f"unknown method {method!r}",
                          fix=f"use one of {', '.join(available_methods())}")


def _method_options(method: str, weights: Path | None, debug_maps: bool, gmodiff: dict) -> dict:
    """reconstruct_scene options for ``method``; --weights/--debug-maps need a learned method."""
    if method in ("gmodiff", "auto"):
        return gmodiff
    if method == "dareg":
        if weights is None:
            raise ConfigError("--method dareg needs --weights",
                              fix="pass a DaReg folder (DaReg.save_pretrained) or dareg_mask.pth")
        return {"weights": weights, "device": gmodiff["device"]}
    if weights is not None or debug_maps:
        raise ConfigError(f"--weights/--debug-maps need a learned method, not {method!r}",
                          fix="add --method dareg or --method gmodiff")
    return {}


def write_debug_maps(output: Path, result) -> list[Path]:
    """Write the gain map and DA mask as 8-bit ``<output stem>.gain_map.png`` / ``.mask.png``."""
    import numpy as np

    from gmodiff.io.ldr import write_ldr

    written = []
    base = output.with_suffix("")
    if result.gain_map is not None:
        written.append(base.parent / f"{base.name}.gain_map.png")
        write_ldr(written[-1], np.clip(result.gain_map, 0, 1), bit_depth=8)
    if result.mask is not None:
        written.append(base.parent / f"{base.name}.mask.png")
        write_ldr(written[-1], np.repeat(np.clip(result.mask, 0, 1)[..., None], 3, axis=2), bit_depth=8)
    return written


def _check_preview(path: Path | None) -> None:
    if path is not None and path.suffix.lower() != ".png":
        raise OutputError(f"previews are PNG, not '{path.suffix}'", path, "use a .png name")


def reconstruct_one(folder: Path, output: Path, method: str, preview: Path | None = None,
                    float_exr: bool = False, options: dict | None = None,
                    debug_maps: bool = False) -> dict:
    """Load one scene, reconstruct it, write the HDR (and preview); return a summary dict."""
    from gmodiff.io.scene import load_scene

    return write_reconstruction(load_scene(folder), output, method, preview, float_exr, options,
                                debug_maps)


def write_reconstruction(scene, output: Path, method: str, preview: Path | None = None,
                         float_exr: bool = False, options: dict | None = None,
                         debug_maps: bool = False) -> dict:
    """Reconstruct a loaded scene, write the HDR (and preview); return a summary dict."""
    from gmodiff.io.output import write_output
    from gmodiff.reconstruct import reconstruct_scene

    result = reconstruct_scene(scene, method, **(options or {}))
    # Ultra HDR: SDR white at the reference exposure, so the base image looks like that photo.
    write_output(output, result.hdr, float_exr=float_exr,
                 radiance_scale=float(scene.exposure_times[scene.reference_index]))
    if preview is not None:
        from gmodiff.io.preview import write_preview

        write_preview(preview, result.hdr)
    if debug_maps:
        write_debug_maps(output, result)
    summary = {"scene": scene.name, "method": result.method, "seconds": result.timings["total"]}
    if scene.ground_truth is not None and scene.ground_truth.shape == result.hdr.shape:
        from gmodiff.metrics import psnr_l, psnr_mu

        summary["psnr_mu"] = psnr_mu(result.hdr, scene.ground_truth)
        summary["psnr_l"] = psnr_l(result.hdr, scene.ground_truth)
    return summary


def _describe(summary: dict, output: Path) -> str:
    text = f"wrote {output} ({summary['method']}, {summary['seconds']:.2f} s"
    if "psnr_mu" in summary:
        text += f"; vs ground truth PSNR-μ {summary['psnr_mu']:.2f} dB, " \
                f"PSNR-l {summary['psnr_l']:.2f} dB"
    return text + ")"


@app.command("reconstruct")
def reconstruct_command(
    inputs: list[Path] = typer.Argument(..., help="A scene folder, a folder of scene folders, "
                                        "or 2+ image files of one bracket (any order)."),
    output: Path = typer.Option(..., "-o", "--output",
                                help="Output .hdr/.exr/.jpg file (one scene) or folder (many)."),
    method: str = typer.Option("auto", "--method",
                               help="auto (the bundled GMODiff model when installed, else "
                               "classical), classical (= deghost), reference, merge, deghost, "
                               "debevec, dareg, gmodiff."),
    preview: Path | None = typer.Option(None, "--preview", help="Also write a tone-mapped PNG "
                                        "(one scene), or a folder of them (many scenes)."),
    output_format: str = typer.Option("exr", "--format",
                                      help="File type per scene when writing a folder: exr or hdr."),
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
                              "one-step model; N>1 runs a DDIM chain from the same start)."),
    tile: int = typer.Option(0, "--tile", min=0, help="gmodiff: latent tile size in latent px "
                             "(e.g. 64); 0 = automatic (96-px tiles, only when the latent is larger)."),
    device: str = typer.Option("cpu", "--device", help="gmodiff: cpu or cuda[:N]."),
    fuse_lora: bool = typer.Option(False, "--fuse-lora", help="gmodiff: merge LoRA weights."),
    refine: bool | None = typer.Option(None, "--refine/--no-refine", help="gmodiff: run the "
                                       "refiner, or return DaReg's gain map; default: what the "
                                       "pipeline's config says (the bundled model's card explains)."),
    seed: int = typer.Option(0, "--seed", help="Seed of gmodiff's VAE posterior sampling (only "
                             "pipelines trained with sample_latents draw; the default takes the "
                             "posterior mode). Other methods have no randomness."),
) -> None:
    """Reconstruct reference-aligned HDR from exposure brackets."""
    from gmodiff.io.output import check_output_path
    from gmodiff.io.scene import find_scenes

    _check_method(method)
    if method == "auto" and weights is not None:
        method = "gmodiff"  # --weights names a GMODiff pipeline
    options = _method_options(method, weights, debug_maps, {
        "weights": weights, "backbone": backbone, "steps": steps, "tile": tile or None,
        "device": device, "fuse_lora": fuse_lora, "seed": seed, "refine": refine})
    if len(inputs) > 1 or inputs[0].is_file():
        _reconstruct_bracket(inputs, output, method, preview, float_exr, ev, times, reference, align,
                             options, debug_maps)
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
        check_output_path(output)
        _check_preview(preview)
        summary = reconstruct_one(scene_dir, output, method, preview, float_exr, options, debug_maps)
        typer.echo(_describe(summary, output))
        if preview is not None:
            typer.echo(f"wrote {preview}")
        return
    _reconstruct_many(scenes, output, method, preview, output_format, float_exr, progress, options,
                      debug_maps)


def _reconstruct_bracket(paths: list[Path], output: Path, method: str, preview: Path | None,
                         float_exr: bool, ev: str | None, times: str | None,
                         reference: int | None, align: str, options: dict | None = None,
                         debug_maps: bool = False) -> None:
    """Several image files: one bracket → one HDR file; every check runs before any write."""
    from gmodiff.brackets import prepare_bracket
    from gmodiff.io.output import check_output_path

    folders = [p for p in paths if p.is_dir()]
    if folders:
        raise SceneError("is a folder; pass either one scene folder or the image files of one "
                         "bracket", folders[0])
    check_output_path(output)
    _check_preview(preview)
    if output.resolve() in {p.resolve() for p in paths}:
        raise OutputError("would overwrite one of the input frames", output, "choose another -o name")
    prepared = prepare_bracket(paths, ev=ev, times=times, reference=reference, align=align)
    typer.echo("\n".join(prepared.selection.describe().splitlines()))
    for warning in prepared.alignment.warnings:
        typer.echo(f"warning: {warning}", err=True)
    summary = write_reconstruction(prepared.scene, output, method, preview, float_exr, options,
                                   debug_maps)
    typer.echo(_describe(summary, output))
    if preview is not None:
        typer.echo(f"wrote {preview}")


def _reconstruct_many(scenes: list[Path], out_dir: Path, method: str, preview_dir: Path | None,
                      output_format: str, float_exr: bool, progress: bool,
                      options: dict | None = None, debug_maps: bool = False) -> None:
    from tqdm import tqdm

    from gmodiff.io.output import check_writable_folder

    suffix = "." + output_format.lower().lstrip(".")
    if suffix not in (".exr", ".hdr"):
        raise ConfigError(f"unsupported --format {output_format!r}", fix="use exr or hdr")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError("is a file, but several scenes need an output folder", out_dir,
                          "pass a folder to -o")
    names: dict[str, Path] = {}
    for folder in scenes:
        if folder.name in names:
            raise SceneError(f"two scenes are named '{folder.name}' ({names[folder.name]})",
                             folder, "rename one: outputs are named after scene folders")
        names[folder.name] = folder
    for folder in (out_dir, preview_dir):
        if folder is not None:
            check_writable_folder(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    if preview_dir is not None:
        preview_dir.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    done = 0
    for folder in tqdm(scenes, desc="reconstruct", unit="scene", file=sys.stderr, leave=False,
                       disable=None if progress else True):
        target = out_dir / f"{folder.name}{suffix}"
        preview = preview_dir / f"{folder.name}.png" if preview_dir is not None else None
        try:
            reconstruct_one(folder, target, method, preview, float_exr, options, debug_maps)
            done += 1
        except GmodiffError as err:
            failures.append(str(err))
        except (MemoryError, RuntimeError, ValueError, OSError, ArithmeticError) as exc:
            # A bug or an unforeseen input in one scene must not cost the rest of the batch.
            failures.append(f"{folder}: internal error ({type(exc).__name__}: {exc}) — please "
                            "report it with this scene")
    typer.echo(f"wrote {done} of {len(scenes)} HDR image(s) to {out_dir}")
    if failures:
        typer.echo(f"{len(failures)} scene(s) failed:", err=True)
        for line in failures:
            typer.echo(f"  {line}", err=True)
        raise typer.Exit(1)
