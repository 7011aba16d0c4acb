"""Reconstruction jobs: a scene (or a folder of scenes) in, HDR files out, each written once.

The command line (``gmodiff reconstruct``) and any other front end call these; they check every
output before computing anything, write atomically (a failure leaves no partial file), and in a
batch keep going past a broken scene, listing it once. A batch can be split over processes
(:class:`Shard`, :func:`reconstruct_sharded` under ``accelerate launch``): each process takes
every N-th scene, so each output is written by exactly one process and each failure listed once.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gmodiff.errors import ConfigError, GmodiffError, OutputError, SceneError, display_path
from gmodiff.io.scene import Scene
from gmodiff.methods import ReconstructOptions, memory_check, reconstruct_scene
from gmodiff.result import Reconstruction

BATCH_FORMATS = (".exr", ".hdr")


@dataclass(frozen=True)
class OutputOptions:
    """What a run writes beside the HDR file, typed once at the edge (CLI flags, the web form).

    A batch passes one of these for all its scenes; each scene's preview name comes from the
    batch's preview folder (:meth:`with_preview`), everything else is shared.
    """

    preview: Path | None = None
    """An SDR preview PNG (a single run); None writes none."""
    float_exr: bool = False
    """32-bit float EXR instead of half."""
    debug_maps: bool = False
    """Gain map and DA mask PNGs beside the output (``<stem>.gain_map.png`` / ``.mask.png``)."""
    preview_exposure: str | float = "reference"
    """Exposure of the SDR pictures: "reference", "auto" or stops from the reference."""

    def with_preview(self, preview: Path | None) -> OutputOptions:
        """The same options with another preview file (one scene of a batch)."""
        return dataclasses.replace(self, preview=preview)


@dataclass(frozen=True)
class Shard:
    """This process's share of a batch: scenes ``index``, ``index + count``, ..."""

    index: int = 0
    count: int = 1

    def take(self, items: list) -> list:
        """The items this process handles."""
        return items[self.index::self.count]


@dataclass
class BatchReport:
    """What a batch did: scenes written, and one line per scene that failed."""

    total: int
    written: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    """Position of the scene in the batch → its error line."""
    main_process: bool = True
    """False on the other processes of a sharded batch (the main one reports for all)."""

    @property
    def failures(self) -> list[str]:
        """The error lines, in batch order."""
        return [self.failed[index] for index in sorted(self.failed)]

    @classmethod
    def merge(cls, reports: list[BatchReport]) -> BatchReport:
        """One report for the shards of a batch."""
        merged = cls(total=sum(r.total for r in reports), written=sum(r.written for r in reports))
        for report in reports:
            merged.failed.update(report.failed)
        return merged


def write_maps(result: Reconstruction, gain_map_path: Path, mask_path: Path) -> list[Path]:
    """Write the gain map and DA mask (those the result has) as 8-bit PNGs; return the paths."""
    from gmodiff.io.ldr import write_ldr

    written = []
    if result.gain_map is not None:
        write_ldr(gain_map_path, np.clip(result.gain_map, 0, 1), bit_depth=8)
        written.append(gain_map_path)
    if result.mask is not None:
        write_ldr(mask_path, np.repeat(np.clip(result.mask, 0, 1)[..., None], 3, axis=2), bit_depth=8)
        written.append(mask_path)
    return written


def write_debug_maps(output: Path, result: Reconstruction) -> list[Path]:
    """Write the maps next to ``output`` as ``<output stem>.gain_map.png`` / ``.mask.png``."""
    return write_maps(result, *debug_map_paths(output))


def debug_map_paths(output: Path) -> tuple[Path, Path]:
    """Where :func:`write_debug_maps` puts the gain map and the DA mask for ``output``."""
    base = output.with_suffix("")
    return base.parent / f"{base.name}.gain_map.png", base.parent / f"{base.name}.mask.png"


def check_preview(path: Path | None) -> None:
    """Refuse a preview name that is not a PNG, or a folder we cannot write (before any compute)."""
    if path is not None:
        from gmodiff.io.preview import check_preview_path

        check_preview_path(path)


def check_outputs_spare_inputs(output: Path, preview: Path | None, debug_maps: bool,
                               inputs: list[Path]) -> None:
    """No output of a run (HDR, preview, debug maps) may replace one of its input files, nor
    another of its outputs, by any name (relative path, symlink, hard link). Run before any
    compute."""
    from gmodiff.io.paths import check_distinct_outputs, check_not_an_input

    check_distinct_outputs(run_outputs(output, preview, debug_maps))
    check_not_an_input(output, inputs)
    if preview is not None:
        check_not_an_input(preview, inputs, "preview")
    if debug_maps:
        for path in debug_map_paths(output):
            check_not_an_input(path, inputs, "debug map")


def run_outputs(output: Path, preview: Path | None, debug_maps: bool) -> list[tuple[str, Path]]:
    """(what, path) of every file one run writes."""
    outputs = [("output", output)]
    if preview is not None:
        outputs.append(("preview", preview))
    if debug_maps:
        outputs += list(zip(("gain map", "DA mask"), debug_map_paths(output)))
    return outputs


def ground_truth_scores(scene: Scene, hdr: np.ndarray) -> dict[str, float]:
    """PSNR-μ and PSNR-l of ``hdr`` against the scene's ground truth, when it has one that fits."""
    if scene.ground_truth is None or scene.ground_truth.shape != hdr.shape:
        return {}
    from gmodiff.metrics import psnr_l, psnr_mu

    return {"psnr_mu": psnr_mu(hdr, scene.ground_truth), "psnr_l": psnr_l(hdr, scene.ground_truth)}


def write_reconstruction(scene: Scene, output: Path, method: str, options: ReconstructOptions,
                         outputs: OutputOptions = OutputOptions(), finish=None) -> dict:
    """Reconstruct a loaded scene and write the HDR (and preview, debug maps); return a summary.

    ``finish(hdr) -> hdr`` post-processes the result (a plain bracket's extra frames); the
    preview and the Ultra HDR SDR picture share one gain (``outputs.preview_exposure``); the
    reference frame's EXIF goes into .jpg/.exr outputs. The files appear together or not at all.
    """
    result = reconstruct_scene(scene, method, options)
    if finish is not None:
        result.hdr = finish(result.hdr)
    if options.progress is not None:
        options.progress.stage(f"writing {output.name}")
    write_s = write_result(scene, result, [output], outputs)
    if options.progress is not None:
        options.progress.close()
    timings = {k: v for k, v in result.timings.items() if k != "total"}
    timings["write"] = write_s
    return {"scene": scene.name, "method": result.method, "seconds": result.timings["total"],
            "timings": timings, **ground_truth_scores(scene, result.hdr)}


def write_result(scene: Scene, result: Reconstruction, paths: list[Path],
                 outputs: OutputOptions = OutputOptions()) -> float:
    """Write a (finished) reconstruction of ``scene`` to every path of ``paths`` (by
    extension), with the preview and the debug maps (beside ``paths[0]``); the reference
    frame's EXIF goes into .jpg/.exr files. All appear together or not at all; returns the
    seconds it took. The one write road of ``gmodiff reconstruct`` and the web page."""
    import time

    from gmodiff.io.atomic import atomic_group
    from gmodiff.io.metadata import read_metadata
    from gmodiff.io.output import write_output
    from gmodiff.io.preview import preview_gain, write_preview

    writing = time.perf_counter()
    gain = preview_gain(result.hdr, outputs.preview_exposure,
                        float(scene.exposure_times[scene.reference_index]))
    reference_path = (scene.frame_paths[scene.reference_index]
                      if len(scene.frame_paths) > scene.reference_index else None)
    metadata = read_metadata(reference_path)
    with atomic_group():  # the HDR, preview and debug maps appear together or not at all
        for path in paths:
            # Files are in reference-white units (1.0 = the reference frame's white), stated in
            # their headers; the scene's own units (what the metrics and ground truth use) stay
            # inside the program.
            write_output(path, result.hdr, float_exr=outputs.float_exr, radiance_scale=gain,
                         metadata=metadata, source=reference_path,
                         exposure=scene.reference_exposure)
        if outputs.preview is not None:
            write_preview(outputs.preview, result.hdr, gain)
        if outputs.debug_maps:
            write_debug_maps(paths[0], result)
    return time.perf_counter() - writing


def reconstruct_one(folder: Path, output: Path, method: str, options: ReconstructOptions,
                    outputs: OutputOptions = OutputOptions()) -> dict:
    """Load one scene folder, reconstruct it and write it; return a summary dict."""
    import time

    from gmodiff.io.scene import load_scene

    start = time.perf_counter()
    # The method's memory plan judges the frames' header sizes before any pixel is decoded.
    scene = load_scene(folder, run_check=memory_check(method, options))
    read_s = time.perf_counter() - start
    summary = write_reconstruction(scene, output, method, options, outputs)
    summary["timings"] = {"read": read_s, **summary["timings"]}
    return summary


def check_batch(scenes: list[Path], out_dir: Path, preview_dir: Path | None,
                output_format: str, debug_maps: bool = False) -> str:
    """Every check a batch needs before compute; returns the output suffix (".exr"/".hdr")."""
    from gmodiff.io.paths import check_writable_folder

    suffix = "." + output_format.lower().lstrip(".")
    if suffix not in BATCH_FORMATS:
        raise ConfigError(f"unsupported batch output format {output_format!r}",
                          fix="use exr or hdr")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError("is a file, but several scenes need an output folder", out_dir,
                          "pass a folder as the output")
    names: dict[str, Path] = {}
    for folder in scenes:
        if folder.name in names:
            raise SceneError(f"two scenes are named '{folder.name}' ({names[folder.name]})",
                             folder, "rename one: outputs are named after scene folders")
        names[folder.name] = folder
    for folder in (out_dir, preview_dir):
        if folder is not None:
            check_writable_folder(folder)
    from gmodiff.io.paths import check_distinct_outputs
    from gmodiff.io.scene import scene_input_paths

    inputs = [path for folder in scenes for path in scene_input_paths(folder)]
    every_output = []
    for folder in scenes:
        output = out_dir / f"{folder.name}{suffix}"
        preview = preview_dir / f"{folder.name}.png" if preview_dir is not None else None
        check_outputs_spare_inputs(output, preview, debug_maps, inputs)
        every_output += [(f"{what} of {folder.name}", path)
                         for what, path in run_outputs(output, preview, debug_maps)]
    check_distinct_outputs(every_output)  # e.g. scene a's preview = scene "a.gain_map"'s output
    return suffix


def reconstruct_many(scenes: list[Path], out_dir: Path, method: str, options: ReconstructOptions,
                     suffix: str = ".exr", preview_dir: Path | None = None,
                     outputs: OutputOptions = OutputOptions(), shard: Shard = Shard(),
                     progress: bool = True) -> BatchReport:
    """Reconstruct this shard's scenes into ``out_dir/<scene name><suffix>`` (previews, if any,
    into ``preview_dir/<scene name>.png``); a failing scene is recorded in the report and the
    batch goes on. Run :func:`check_batch` first."""
    import sys

    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    if preview_dir is not None:
        preview_dir.mkdir(parents=True, exist_ok=True)
    mine = shard.take(list(enumerate(scenes)))
    report = BatchReport(total=len(mine))
    for index, folder in tqdm(mine, desc="reconstruct", unit="scene", file=sys.stderr, leave=False,
                              disable=None if progress else True):
        target = out_dir / f"{folder.name}{suffix}"
        preview = preview_dir / f"{folder.name}.png" if preview_dir is not None else None
        try:
            reconstruct_one(folder, target, method, options, outputs.with_preview(preview))
            report.written += 1
        except GmodiffError as err:
            report.failed[index] = str(err)
        except (MemoryError, RuntimeError, ValueError, OSError, ArithmeticError) as exc:
            # A bug or an unforeseen input in one scene must not cost the rest of the batch.
            report.failed[index] = (f"{display_path(folder)}: internal error ({type(exc).__name__}: {exc}) — "
                                    "please report it with this scene")
    return report


def launched_processes() -> int:
    """How many processes a launcher (``accelerate launch``, torchrun) started for this job."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def reconstruct_sharded(scenes: list[Path], out_dir: Path, method: str,
                        options: ReconstructOptions, suffix: str = ".exr",
                        preview_dir: Path | None = None, outputs: OutputOptions = OutputOptions(),
                        progress: bool = True) -> BatchReport:
    """:func:`reconstruct_many` over every process of an ``accelerate launch`` (one process when
    not launched): each takes every N-th scene, on its own GPU when ``options.device`` is cuda;
    the main process's report covers the whole batch, the others' say ``main_process=False``."""
    if launched_processes() <= 1:
        return reconstruct_many(scenes, out_dir, method, options, suffix, preview_dir, outputs,
                                progress=progress)
    from accelerate import PartialState
    from accelerate.utils import gather_object

    # On CPU the processes talk over gloo; on GPUs each process takes its own device.
    state = PartialState(cpu=not options.device.startswith("cuda"))
    if options.device.startswith("cuda"):
        options = dataclasses.replace(options, device=str(state.device))
    shard = Shard(state.process_index, state.num_processes)
    report = reconstruct_many(scenes, out_dir, method, options, suffix, preview_dir, outputs,
                              shard, progress=progress and state.is_main_process)
    merged = BatchReport.merge(gather_object([report]))
    merged.main_process = state.is_main_process
    state.wait_for_everyone()
    return merged
