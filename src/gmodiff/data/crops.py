"""Cutting scene folders into fixed-size training crops (``gmodiff data crops``)."""

from __future__ import annotations

from pathlib import Path

from gmodiff.errors import ConfigError, SceneError


def crop_origins(length: int, size: int, stride: int) -> list[int]:
    """Start offsets of crops of ``size`` every ``stride`` along ``length``, the last one flush
    with the far edge so the whole image is covered."""
    if size <= 0 or stride <= 0:
        raise ConfigError(f"crop size {size} and stride {stride} must be positive")
    if length < size:
        return []
    origins = list(range(0, length - size + 1, stride))
    if origins[-1] != length - size:
        origins.append(length - size)
    return origins


def cut_scene(scene, size: int, stride: int) -> list:
    """All ``size``×``size`` crops of a :class:`~gmodiff.io.scene.Scene` (frames and ground truth)."""
    from gmodiff.io.scene import Scene

    crops = []
    for top in crop_origins(scene.height, size, stride):
        for left in crop_origins(scene.width, size, stride):
            window = (slice(top, top + size), slice(left, left + size))
            crops.append(Scene(
                frames=[f[window] for f in scene.frames],
                exposure_times=scene.exposure_times,
                reference_index=scene.reference_index,
                ground_truth=None if scene.ground_truth is None else scene.ground_truth[window],
                name=f"{scene.name}_{top:05d}_{left:05d}",
                motion_mask=None if scene.motion_mask is None else scene.motion_mask[window],
            ))
    return crops


def make_crops(source: str | Path, destination: str | Path, size: int = 256, stride: int = 128,
               progress: bool = True) -> int:
    """Cut every scene under ``source`` into crops saved as scene folders under ``destination``.

    Returns the number of crops written. Scenes smaller than ``size`` raise a SceneError.
    """
    from tqdm.auto import tqdm

    from gmodiff.io.scene import find_scenes, load_scene, save_scene

    destination = Path(destination)
    folders = find_scenes(source)
    written = 0
    for folder in tqdm(folders, desc="cropping scenes", unit="scene", disable=not progress):
        scene = load_scene(folder)
        if scene.ground_truth is None:
            raise SceneError("scene has no ground truth", folder, "training crops need HDRImg.hdr")
        crops = cut_scene(scene, size, stride)
        if not crops:
            raise SceneError(f"scene is {scene.height}x{scene.width}, smaller than {size}px",
                             folder, "use a smaller --size")
        for crop in crops:
            save_scene(crop, destination / folder.name / crop.name, overwrite=True)
            written += 1
    return written
