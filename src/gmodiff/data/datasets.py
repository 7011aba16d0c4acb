"""Training datasets for DaReg and the refiner.

Three sources, all yielding the same item (a dict of float32 tensors, see :func:`make_item`), so
they mix with ``torch.utils.data.ConcatDataset``:

- :class:`SceneCropDataset`: random crops from full scene folders, with the 8 flip/rotate modes.
- :class:`PrecutCropDataset`: folders of fixed crops written by ``gmodiff data crops``.
- :class:`SimulatedDataset`: brackets simulated on the fly from HDR radiance (spec §6).

Randomness is drawn from a generator seeded by ``(seed, epoch, index)``, so an item depends only
on its index and the epoch: a resumed run sees exactly the data an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from gmodiff.inputs.canonical import CURVE_JITTER
from gmodiff.errors import SceneError
from gmodiff.gainmap import encode_gain_map
from gmodiff.inputs.encode import InputLayout, encode_bracket, network_scene

AUGMENT_MODES = 8
"""4 rotations × optional horizontal flip."""


def augment(image: np.ndarray, mode: int) -> np.ndarray:
    """Apply flip/rotate mode 0..7 to an (H, W, C) array: rotate ``mode % 4`` quarter turns,
    then flip left-right when ``mode >= 4``."""
    out = np.rot90(image, k=mode % 4, axes=(0, 1))
    if mode >= 4:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


def make_item(
    frames: Sequence[np.ndarray],
    exposure_times: Sequence[float],
    ground_truth: np.ndarray,
    reference_index: int = 1,
    layout: InputLayout | None = None,
) -> dict[str, torch.Tensor]:
    """One training item from a bracket (short→long, HxWx3 in [0, 1]) and its HDR ground truth.

    Keys: ``inputs`` (S, 6, h, w) as :func:`gmodiff.inputs.encode.encode_bracket` makes them for
    ``layout``, ``gt_gain_map``, ``gt_hdr``, ``ldr_ref``, ``ldr_short`` (3, h, w),
    ``exposure_times`` (3,). Frames must already be what the network sees (see
    :func:`gmodiff.inputs.encode.network_scene`).
    """
    frames = [np.asarray(f, dtype=np.float32) for f in frames]
    ground_truth = np.asarray(ground_truth, dtype=np.float32)
    ldr_ref = frames[reference_index]
    return {
        "inputs": encode_bracket(frames, exposure_times, layout),
        "gt_gain_map": _chw(encode_gain_map(ground_truth, ldr_ref)),
        "gt_hdr": _chw(ground_truth),
        "ldr_ref": _chw(ldr_ref),
        "ldr_short": _chw(frames[0]),
        "exposure_times": torch.as_tensor(np.asarray(exposure_times, dtype=np.float32)),
    }


def scene_item(scene, top: int = 0, left: int = 0, size: int | None = None, mode: int = 0,
               layout: InputLayout | None = None) -> dict:
    """Item for a crop (``top``, ``left``, ``size``; whole scene when ``size`` is None) of a
    :class:`~gmodiff.io.scene.Scene`, augmented with flip/rotate ``mode``, encoded for ``layout``
    (canonical frames are re-encoded from a response estimated on the crop)."""
    if scene.ground_truth is None:
        raise SceneError("scene has no ground truth (HDRImg.hdr)", scene.root,
                         "training and validation need HDRImg.hdr or label.hdr in each scene")
    height = scene.height if size is None else size
    width = scene.width if size is None else size

    def cut(image: np.ndarray) -> np.ndarray:
        return augment(image[top:top + height, left:left + width], mode)

    crop = dataclasses.replace(
        scene, frames=[cut(f) for f in scene.frames], ground_truth=cut(scene.ground_truth),
        motion_mask=None if scene.motion_mask is None else cut(scene.motion_mask))
    return network_item(network_scene(crop, layout), layout)


def network_item(scene, layout: InputLayout | None = None) -> dict:
    """Item for a whole scene whose frames are already what the network sees."""
    return make_item(scene.frames, scene.exposure_times, scene.ground_truth, scene.reference_index,
                     layout)


def _rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(epoch), int(index)])


class _EpochDataset(Dataset):
    """Base: deterministic per-item randomness that changes with :meth:`set_epoch`."""

    seed: int = 0
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw different crops/augmentations for a new epoch (same ones for the same epoch)."""
        self.epoch = int(epoch)


def _scene_folders(roots: str | Path | Sequence[str | Path]) -> list[Path]:
    from gmodiff.io.scene import find_scenes

    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    folders: list[Path] = []
    for root in roots:
        folders.extend(find_scenes(root))
    if not folders:
        raise SceneError("no scene folders found", roots[0] if roots else None,
                         "point at a folder of Kalantari-layout scenes (input_*.tif + exposure.txt)")
    return folders


class SceneCropDataset(_EpochDataset):
    """Random ``crop_size`` crops from full scene folders, ``crops_per_scene`` per epoch, with a
    random flip/rotate mode. Scenes are loaded once and kept in memory when ``cache`` is set."""

    def __init__(
        self,
        roots: str | Path | Sequence[str | Path],
        crop_size: int = 256,
        crops_per_scene: int = 16,
        augment: bool = True,
        seed: int = 0,
        cache: bool = True,
        layout: InputLayout | None = None,
    ):
        self.folders = _scene_folders(roots)
        self.layout = layout
        self.crop_size = int(crop_size)
        self.crops_per_scene = int(crops_per_scene)
        self.augment = augment
        self.seed = seed
        self.cache = cache
        self._scenes: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.folders) * self.crops_per_scene

    def _scene(self, number: int):
        from gmodiff.io.scene import load_scene

        if number in self._scenes:
            return self._scenes[number]
        scene = load_scene(self.folders[number])
        if scene.height < self.crop_size or scene.width < self.crop_size:
            raise SceneError(f"scene is {scene.height}x{scene.width}, smaller than the "
                             f"{self.crop_size}px crop", self.folders[number], "use a smaller crop_size")
        if self.cache:
            self._scenes[number] = scene
        return scene

    def __getitem__(self, index: int) -> dict:
        scene = self._scene(index // self.crops_per_scene)
        rng = _rng(self.seed, self.epoch, index)
        top = int(rng.integers(0, scene.height - self.crop_size + 1))
        left = int(rng.integers(0, scene.width - self.crop_size + 1))
        mode = int(rng.integers(AUGMENT_MODES)) if self.augment else 0
        return scene_item(scene, top, left, self.crop_size, mode, self.layout)


class PrecutCropDataset(_EpochDataset):
    """Crop folders written by ``gmodiff data crops`` (each one a small Kalantari-layout scene)."""

    def __init__(self, roots: str | Path | Sequence[str | Path], augment: bool = True, seed: int = 0,
                 layout: InputLayout | None = None):
        self.folders = _scene_folders(roots)
        self.augment = augment
        self.seed = seed
        self.layout = layout

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, index: int) -> dict:
        from gmodiff.io.scene import load_scene

        mode = int(_rng(self.seed, self.epoch, index).integers(AUGMENT_MODES)) if self.augment else 0
        return scene_item(load_scene(self.folders[index]), mode=mode, layout=self.layout)


class FullSceneDataset(Dataset):
    """Whole validation scenes, one item per scene folder (no crop, no augmentation)."""

    def __init__(self, roots: str | Path | Sequence[str | Path], layout: InputLayout | None = None):
        self.folders = _scene_folders(roots)
        self.layout = layout

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, index: int) -> dict:
        from gmodiff.io.scene import load_scene

        item = scene_item(load_scene(self.folders[index]), layout=self.layout)
        item["name"] = self.folders[index].name
        return item


RadianceSource = Callable[[np.random.Generator, int, int], np.ndarray]
"""Makes linear HDR radiance (h, w, 3) from a generator and a size."""


def procedural_source() -> RadianceSource:
    """Procedural radiance (gmodiff.data.sources) as a :data:`RadianceSource`."""
    from gmodiff.data.sources import procedural_radiance

    def make(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        return procedural_radiance(height, width, seed=int(rng.integers(2**31)))

    return make


def lamp_room_source() -> RadianceSource:
    """Procedural rooms lit by small lamps (gmodiff.data.sources) as a :data:`RadianceSource`."""
    from gmodiff.data.sources import lamp_room_radiance

    def make(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        return lamp_room_radiance(height, width, seed=int(rng.integers(2**31)))

    return make


def photo_source() -> RadianceSource:
    """Public-domain photographs lifted to radiance (gmodiff.data.sources.photo_radiance)."""
    from gmodiff.data.sources import photo_radiance, read_photos

    state: dict[str, list[np.ndarray]] = {}

    def make(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        if "photos" not in state:  # read lazily so each DataLoader worker decodes them once
            state["photos"] = read_photos()
        return photo_radiance(height, width, state["photos"], seed=int(rng.integers(2**31)))

    return make


def panorama_source(panorama: str | Path | np.ndarray) -> RadianceSource:
    """Random perspective views of one HDR panorama (path or array) as a :data:`RadianceSource`."""
    from gmodiff.data.sources import perspective_views

    state: dict[str, np.ndarray] = {}

    def make(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        if "pano" not in state:  # read lazily so each DataLoader worker loads it once
            if isinstance(panorama, np.ndarray):
                state["pano"] = panorama
            else:
                if str(panorama).endswith(".exr.js"):
                    from gmodiff.data.sources import read_pmndrs_hdri

                    state["pano"] = read_pmndrs_hdri(panorama)
                else:
                    from gmodiff.io.hdr import read_hdr

                    state["pano"] = read_hdr(panorama)
        views = perspective_views(state["pano"], 1, size=(height, width), rng=rng)
        return np.asarray(views[0], dtype=np.float32)

    return make


class SimulatedDataset(_EpochDataset):
    """Brackets simulated on the fly from radiance sources (spec §6), ``length`` items per epoch.

    Each item picks a source and simulates a scene with :func:`gmodiff.data.simulate.simulate_scene`
    from a generator seeded by ``(seed, epoch, index)``, so it is reproducible.
    """

    def __init__(
        self,
        sources: Sequence[RadianceSource],
        length: int,
        crop_size: int = 128,
        seed: int = 0,
        simulation=None,
        layout: InputLayout | None = None,
        curve_jitter: float | tuple[float, float] = CURVE_JITTER,
    ):
        if not sources:
            raise ValueError("SimulatedDataset needs at least one radiance source")
        self.sources = list(sources)
        self.length = int(length)
        self.crop_size = int(crop_size)
        self.seed = seed
        self.simulation = simulation
        self.layout = layout
        # A (lo, hi) pair draws each item's bend strength from U(lo, hi): mostly small bends,
        # with a tail of large ones that the network can learn to detect from the frames.
        self.curve_jitter = (tuple(float(v) for v in curve_jitter)
                             if isinstance(curve_jitter, (tuple, list)) else float(curve_jitter))

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int):
        """The simulated :class:`~gmodiff.io.scene.Scene` behind item ``index`` (canonical frames
        when the dataset is, linearised with the true response bent slightly at random)."""
        from gmodiff.data.simulate import SimulationConfig, simulate

        rng = _rng(self.seed, self.epoch, index)
        source = self.sources[int(rng.integers(len(self.sources)))]
        radiance = source(rng, self.crop_size, self.crop_size)
        config = self.simulation if self.simulation is not None else SimulationConfig()
        simulation = simulate(radiance, config, rng)
        if not (self.layout and self.layout.canonical_inputs):
            return simulation.scene
        from gmodiff.inputs.canonical import canonicalise_scene, jittered_inverse

        strength = self.curve_jitter
        if isinstance(strength, tuple):
            strength = float(rng.uniform(*strength))
        inverse = jittered_inverse(simulation.response.inverse, rng, strength)
        return canonicalise_scene(simulation.scene, inverse)

    def __getitem__(self, index: int) -> dict:
        return network_item(self.scene(index), self.layout)
