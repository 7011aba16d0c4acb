"""Training and validation data of a run, shared by every training stage's config.

``TrainDataConfig`` holds the data fields that the DaReg, prior and refiner configs have in
common (each stage's config inherits it, so its YAML keys stay flat); ``build_train_dataset`` /
``build_val_dataset`` turn them into datasets the same way for every stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset

from gmodiff.errors import ConfigError


@dataclass
class TrainDataConfig:
    """Where a run's crops and validation scenes come from (any mix; at least one train source)."""

    train_scenes: list[str] = field(default_factory=list)
    """Folders of full scenes: random crops with flip/rotate."""
    crops_per_scene: int = 16
    train_crops: list[str] = field(default_factory=list)
    """Folders written by ``gmodiff data crops``."""
    simulated_items: int = 0
    """Simulated brackets per epoch (0: none)."""
    simulated_procedural: bool = True
    simulated_panoramas: list[str] = field(default_factory=list)
    """HDR panoramas (paths, "blender:I" for the I-th blender-data panorama, or "pmndrs:NAME" for
    an @pmndrs/assets HDRI) to cut views from."""
    simulated_lamp_rooms: int = 0
    """Sampling weight of procedural rooms lit by small lamps (deep shadows) among the sources:
    the lamp-room source is listed this many times (0: none)."""
    simulated_photos: int = 0
    """Sampling weight of public-domain photographs lifted to radiance (real photographic
    texture, ``gmodiff.data.sources.photo_radiance``), listed this many times (0: none)."""
    canonical_inputs: bool = False
    """Frames re-encoded from their camera response (DaRegConfig.canonical_inputs)."""
    merge_input: bool = False
    """Items carry the classical-merge slot (DaRegConfig.merge_input)."""
    curve_jitter: float | list[float] = 0.06
    """With ``canonical_inputs``: strength of the random bend of the true camera curve that
    linearises simulated items (``gmodiff.inputs.canonical.jittered_inverse``; 0 = exact), or a
    ``[lo, hi]`` range each item draws its strength from."""
    simulation: dict = field(default_factory=dict)
    """SimulationConfig overrides for the simulated training items (lists become (lo, hi)
    ranges), e.g. ``{ev_spacing_stops: [2, 3]}``; empty = the simulator's defaults."""
    val_scenes: list[str] = field(default_factory=list)
    val_simulated: int = 0
    """Number of simulated full validation scenes (from ``val_panoramas`` / procedural)."""
    val_panoramas: list[str] = field(default_factory=list)
    val_procedural: bool = False
    val_size: int = 256
    val_seed: int = 12345
    crop_size: int = 128
    seed: int = 0


def panorama_path(entry: str) -> Path:
    """A panorama entry of a config: a path, "blender:I" for the I-th blender-data panorama, or
    "pmndrs:NAME" for an @pmndrs/assets HDRI module."""
    if entry.startswith("pmndrs:"):
        from gmodiff.data.sources import pmndrs_hdri_path

        return pmndrs_hdri_path(entry.split(":", 1)[1])
    if entry.startswith("blender:"):
        from gmodiff.data.sources import blender_panoramas

        found = blender_panoramas()
        index = int(entry.split(":", 1)[1])
        if index >= len(found):
            raise ConfigError(f"{entry}: only {len(found)} blender-data panoramas installed",
                              fix="install the blender-data package or list panorama files")
        return found[index]
    return Path(entry)


def _sources(procedural: bool, panoramas: list[str], lamp_rooms: int = 0, photos: int = 0):
    from gmodiff.data.datasets import lamp_room_source, panorama_source, photo_source, procedural_source

    sources = [procedural_source()] if procedural else []
    sources += [lamp_room_source()] * int(lamp_rooms)
    sources += [photo_source()] * int(photos)
    sources += [panorama_source(panorama_path(p)) for p in panoramas]
    return sources


def simulation_config(overrides: dict):
    """A SimulationConfig from config overrides; None (simulator defaults) when there are none."""
    if not overrides:
        return None
    from gmodiff.data.simulate import SimulationConfig

    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    try:
        return SimulationConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"invalid simulation settings ({exc})",
                          fix="use SimulationConfig field names, e.g. ev_spacing_stops") from exc


def _jitter(value: float | list[float]) -> float | tuple[float, float]:
    """``curve_jitter`` as the dataset takes it, checked."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) not in (1, 2) or not all(0.0 <= float(v) <= 0.5 for v in values) or values != sorted(values):
        raise ConfigError(f"curve_jitter {value!r}", fix="give a strength in [0, 0.5] or a range [lo, hi]")
    return float(values[0]) if len(values) == 1 else (float(values[0]), float(values[1]))


def input_layout(config: TrainDataConfig):
    """The network input layout the config's data must follow."""
    from gmodiff.inputs.encode import InputLayout

    return InputLayout(config.canonical_inputs, config.merge_input)


def build_train_dataset(config: TrainDataConfig) -> Dataset:
    """The mix of training sources the config names (ConcatDataset)."""
    from gmodiff.data.datasets import PrecutCropDataset, SceneCropDataset, SimulatedDataset

    parts: list[Dataset] = []
    layout = {"layout": input_layout(config)}
    if config.train_scenes:
        parts.append(SceneCropDataset(config.train_scenes, config.crop_size, config.crops_per_scene,
                                      seed=config.seed, **layout))
    if config.train_crops:
        parts.append(PrecutCropDataset(config.train_crops, seed=config.seed, **layout))
    if config.simulated_items:
        sources = _sources(config.simulated_procedural, config.simulated_panoramas,
                           config.simulated_lamp_rooms, config.simulated_photos)
        parts.append(SimulatedDataset(sources, config.simulated_items, config.crop_size, seed=config.seed,
                                      simulation=simulation_config(config.simulation),
                                      curve_jitter=_jitter(config.curve_jitter), **layout))
    if not parts:
        raise ConfigError("no training data", fix="set train_scenes, train_crops or simulated_items")
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def build_val_dataset(config: TrainDataConfig) -> Dataset | None:
    """Full validation scenes: folders and/or simulated held-out scenes; None if neither."""
    from gmodiff.data.datasets import FullSceneDataset, SimulatedDataset

    parts: list[Dataset] = []
    layout = {"layout": input_layout(config)}
    if config.val_scenes:
        parts.append(FullSceneDataset(config.val_scenes, **layout))
    if config.val_simulated:
        sources = _sources(config.val_procedural, config.val_panoramas)
        if not sources:
            raise ConfigError("val_simulated needs val_panoramas or val_procedural: true")
        parts.append(SimulatedDataset(sources, config.val_simulated, config.val_size, seed=config.val_seed,
                                      curve_jitter=_jitter(config.curve_jitter), **layout))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def set_epoch(dataset: Dataset, epoch: int) -> None:
    """Tell every part of a (Concat)Dataset which epoch it is, for per-epoch reseeding."""
    for part in getattr(dataset, "datasets", [dataset]):
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)
