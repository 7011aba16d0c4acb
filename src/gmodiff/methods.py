"""The method layer: one entry point from a :class:`Scene` to an HDR image, whatever the method.

Each method is a small class in the registry (:func:`methods`); :func:`load_method` builds it from
typed :class:`ReconstructOptions` and keeps the last one loaded, so a batch of scenes loads the
weights once. Every method returns a :class:`~gmodiff.result.Reconstruction`. Classical merges
live in ``gmodiff.baselines``, the networks in ``gmodiff.models``, the scene → tensor step in
``gmodiff.inputs.encode``; nothing below this module imports it.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from gmodiff.errors import CheckpointError, ConfigError, OutOfMemoryError
from gmodiff.io.scene import Scene
from gmodiff.result import Reconstruction

CLASSICAL_ALIAS = "classical"
"""Method name meaning "the best classical baseline" (see ``gmodiff.baselines.BEST_CLASSICAL``)."""
AUTO = "auto"
"""Method name meaning "the bundled GMODiff model when installed (3-frame brackets), else classical"."""
MAX_STEPS = 1000
"""Most refinement steps: the diffusion schedule has 1000 timesteps, and a DDIM chain from the
refiner's timestep (at most 999) with more steps than that only repeats them."""
MAX_SEED = 2 ** 63 - 1
"""Largest seed: torch generators take 64-bit seeds; 0..2**63-1 is one range on every platform."""
DTYPES = ("fp32", "fp16", "bf16")
"""Refiner precisions by name; fp16/bf16 need a GPU."""
_TORCH_DTYPES = dict(zip(DTYPES, ("float32", "float16", "bfloat16")))

__all__ = ["AUTO", "CLASSICAL_ALIAS", "Method", "Reconstruction", "ReconstructOptions",
           "auto_method", "available_methods", "clear_loaded", "load_method", "methods",
           "reconstruct_scene"]


@dataclass(frozen=True)
class ReconstructOptions:
    """How a learned method loads and runs, typed once where options enter (CLI, web page, code).

    Classical merges take no options; ``dareg`` reads ``weights``, ``device`` and
    ``channel_order``; ``gmodiff`` reads all but ``channel_order``.
    """

    weights: Path | None = None
    """A pipeline folder (gmodiff; None: the bundled default) or DaReg weights (dareg)."""
    backbone: Path | None = None
    """A local stable-diffusion-2-1-base folder overriding the pipeline's backbone."""
    tile: int | None = None
    """Latent tile size in latent px; None: automatic (the pipeline's tiles, only when larger)."""
    refine: bool | None = None
    """Run the refiner (True) or return DaReg's gain map (False); None: the pipeline's default,
    or the refiner where ``steps`` > 1."""
    steps: int = 1
    """Refinement steps: 1 is the one-step model, N > 1 a DDIM chain from the same start (so it
    refines)."""
    seed: int = 0
    """Seed of the VAE posterior sampling (only pipelines trained with sample_latents draw)."""
    device: str = "cpu"
    dtype: str = "fp32"
    """Refiner precision: fp32, or fp16/bf16 on a GPU."""
    fuse_lora: bool = True
    """gmodiff on CPU: fuse LoRA and use channels_last (``GMODiffPipeline.optimise_for_cpu``;
    same result within ~1e-4, about a third faster); on a GPU: fuse LoRA only."""
    channel_order: str | None = None
    """DaReg only: override the stored colour order ("bgr" for the reference .pth)."""
    max_memory: int | None = None
    """gmodiff: bytes the run may use (sets DaReg's and the refiner's tiles, ``gmodiff.memory``);
    None: a share of the memory free now."""
    progress: Any = field(default=None, compare=False, repr=False)
    """gmodiff: a :class:`gmodiff.progress.Progress` for stages and tiles; None: silent."""
    da_mask: bool = True
    """gmodiff: return DaReg's DA mask even where the HDR does not need it (the web page shows
    it, ``--debug-maps`` writes it); False skips its head on ``refine=False`` runs, ~20 % of
    DaReg's time. The refiner always computes it (its residual gate reads it)."""

    def __post_init__(self) -> None:
        for name in ("weights", "backbone"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        # Bounded here, where options enter, before any weights are loaded or image decoded.
        if self.steps < 1:
            raise ConfigError(f"steps must be ≥ 1, got {self.steps}", fix="use `steps=1`")
        if self.steps > MAX_STEPS:
            raise ConfigError(f"steps must be at most {MAX_STEPS}, got {_short(self.steps)}",
                              fix=f"use `steps=1` (the one-step model) up to `steps={MAX_STEPS}`")
        if self.steps > 1 and self.refine is False:  # a DDIM chain is refinement
            raise ConfigError(f"`steps={self.steps}` runs the refiner, and `refine=False` turns it off",
                              fix="drop `refine=False`, or use `steps=1`")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or not \
                0 <= int(self.seed) <= MAX_SEED:
            raise ConfigError(f"seed must be a whole number from 0 to {MAX_SEED} (2**63 - 1), got "
                              f"{_short(self.seed)}", fix="use a smaller `seed`, e.g. `seed=0`")
        if self.tile is not None:
            from gmodiff.models.refiner_config import MIN_LATENT_TILE

            if self.tile < MIN_LATENT_TILE:  # tiny tiles multiply the tile count (and run time)
                raise ConfigError(f"tile must be ≥ {MIN_LATENT_TILE} latent px, got {self.tile}",
                                  fix=f"use `tile={MIN_LATENT_TILE}` or more, or leave `tile` "
                                  "automatic")
        if self.device != "cpu":  # checked before any weights are loaded onto it
            from gmodiff.devices import check_device

            check_device(self.device)
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype {self.dtype!r}", fix=f"use `dtype` {', '.join(DTYPES)}")

    @classmethod
    def from_kwargs(cls, **values) -> ReconstructOptions:
        """Options from keyword arguments, refusing unknown names in one line."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown reconstruction options {unknown}",
                              fix=f"use only {', '.join(sorted(known))}")
        return cls(**values)


def _short(value) -> str:
    """A value for a message: a 400-digit number is shown by its first digits and length."""
    text = str(value)
    return text if len(text) <= 24 else f"{text[:20]}… ({len(text)} digits)"


class Method:
    """A reconstruction method: built once from options, then called per scene."""

    name: ClassVar[str]

    def __init__(self, options: ReconstructOptions):
        self.options = options

    @classmethod
    def load_key(cls, options: ReconstructOptions) -> tuple:
        """What identifies a loaded instance: options that change what is loaded, not how it runs."""
        return ()

    def reconstruct(self, scene: Scene, options: ReconstructOptions) -> Reconstruction:
        """Reconstruct one scene; ``options`` carry the per-run settings (tile, steps, seed...)."""
        raise NotImplementedError


class ClassicalMethod(Method):
    """A classical merge from ``gmodiff.baselines`` (no weights, no options)."""

    merge_name: ClassVar[str] = ""

    def reconstruct(self, scene: Scene, options: ReconstructOptions) -> Reconstruction:
        """Merge the bracket."""
        from gmodiff.baselines import CLASSICAL_METHODS

        start = time.perf_counter()
        hdr = CLASSICAL_METHODS[self.merge_name](scene)
        elapsed = time.perf_counter() - start
        return Reconstruction(hdr=np.asarray(hdr, dtype=np.float32),
                              timings={"merge": elapsed, "total": elapsed}, method=self.merge_name)


class DaRegMethod(Method):
    """DaReg alone: its gain map decoded against the reference frame."""

    name = "dareg"

    @classmethod
    def load_key(cls, options: ReconstructOptions) -> tuple:
        """Weights (resolved), device and colour order."""
        weights = options.weights.resolve() if options.weights is not None else None
        return (weights, options.device, options.channel_order)

    def __init__(self, options: ReconstructOptions):
        from gmodiff.models.dareg import DaReg

        super().__init__(options)
        if options.weights is None:
            raise ConfigError("method dareg needs weights",
                              fix="set `weights` to a DaReg folder (save_pretrained) or dareg_mask.pth")
        start = time.perf_counter()
        overrides = {"channel_order": options.channel_order} if options.channel_order else {}
        self.model = DaReg.from_pretrained(options.weights, **overrides).to(options.device).eval()
        if self.model.intro_0.weight.device.type == "cpu":
            import torch

            # oneDNN's native layout, as gmodiff's DaReg (GMODiffPipeline.optimise_for_cpu).
            self.model.to(memory_format=torch.channels_last)
        self.load_seconds = time.perf_counter() - start

    def reconstruct(self, scene: Scene, options: ReconstructOptions) -> Reconstruction:
        """Run DaReg on the padded bracket and crop back."""
        import torch

        from gmodiff.gainmap import decode_gain_map
        from gmodiff.inputs.encode import network_scene, scene_inputs, to_image
        from gmodiff.inputs.padding import crop

        start = time.perf_counter()
        scene = network_scene(scene, self.model.config)
        batch = scene_inputs(scene, self.model.config)
        parameter = next(self.model.parameters())
        with torch.inference_mode():
            out = self.model(batch.inputs.to(parameter.device, parameter.dtype))
        gain_map = to_image(crop(out.gain_map, batch.size))
        mask = to_image(crop(out.mask, batch.size)) if out.mask is not None else None
        hdr = decode_gain_map(gain_map, np.asarray(scene.reference, dtype=np.float32))
        elapsed = time.perf_counter() - start
        # The load time counts once, on the first scene after loading.
        load, self.load_seconds = self.load_seconds, 0.0
        return Reconstruction(hdr=hdr.astype(np.float32), gain_map=gain_map, mask=mask,
                              coarse_gain_map=gain_map, method="dareg",
                              timings={"load": load, "dareg": elapsed, "total": load + elapsed})


class GMODiffMethod(Method):
    """DaReg + one-step refiner (``GMODiffPipeline``), the bundled default when no weights given."""

    name = "gmodiff"

    @classmethod
    def load_key(cls, options: ReconstructOptions) -> tuple:
        """Weights (None: the bundled default, if installed now), backbone, device, precision
        and LoRA fusion: what loading depends on."""
        return (cls.weights(options), options.backbone, options.device, options.dtype,
                options.fuse_lora)

    @staticmethod
    def weights(options: ReconstructOptions) -> Path | None:
        """The pipeline folder ``options`` name: theirs, else the bundled default (or None)."""
        from gmodiff.pipeline.bundled import bundled_pipeline

        return options.weights if options.weights is not None else bundled_pipeline()

    def __init__(self, options: ReconstructOptions):
        import torch

        from gmodiff.pipeline.pipeline import load_pipeline

        super().__init__(options)
        weights = self.weights(options)
        if weights is None:
            raise CheckpointError("method gmodiff needs weights (no bundled default is installed)",
                                  None, "set `weights` to a trained pipeline or the reference release")
        dtype = getattr(torch, _TORCH_DTYPES[options.dtype])
        # The refiner is built where a run first refines, after DaReg, so the background import
        # of diffusers (preload) overlaps DaReg too; --no-refine never builds it. DaReg itself
        # needs torch only, and diffusers' lazy names must not be resolved from two threads.
        self.pipeline = load_pipeline(weights, options.backbone, lazy=True,
                                      before_build=finish_preload).to(options.device, dtype)
        if options.fuse_lora:
            self.pipeline.fuse_lora().optimise_for_cpu()

    def tile_options(self, options: ReconstructOptions):
        """``options.tile`` as the pipeline wants it: True (automatic) or a ``TileOptions``."""
        from gmodiff.models.refiner_config import TileOptions

        if options.tile is None:
            return True
        return TileOptions(latent_tile=options.tile,
                           latent_overlap=min(self.pipeline.tile.latent_overlap, options.tile // 3))

    def reconstruct(self, scene: Scene, options: ReconstructOptions) -> Reconstruction:
        """Run the pipeline; out of memory becomes an error that suggests a tile size."""
        from gmodiff.memory import is_allocation_failure, out_of_memory, plan_memory
        from gmodiff.models.refiner_config import TileOptions

        refine = self.pipeline.will_refine(options.refine, options.steps)
        plan = plan_memory(scene.height, scene.width, options.max_memory, refine=refine,
                           source=scene.root)
        tile = self.tile_options(options)
        if isinstance(tile, TileOptions):
            tile.vae_tile, tile.token_margin = plan.vae_tile, plan.token_margin
        try:
            out = self.pipeline(scene, seed=options.seed, tile=tile, steps=options.steps,
                                refine=refine, plan=plan, progress=options.progress,
                                mask=options.da_mask)
        except Exception as exc:  # every allocation failure (torch's CPU allocator: RuntimeError)
            if not is_allocation_failure(exc):
                raise
            raise out_of_memory(exc, scene.height, scene.width, scene.root, plan, options.device,
                                also=f"`tile={self.smaller_tile(scene, tile)}` (smaller tiles use "
                                     "less memory)") from exc
        out.timings = {"dareg": out.timings["dareg_s"], "refiner": out.timings["refiner_s"],
                       "total": out.timings["total_s"]}
        return out

    def smaller_tile(self, scene: Scene, tile) -> int:
        """A latent tile size worth retrying with after running out of memory at ``tile``."""
        multiple = self.pipeline.dareg.config.multiple
        padded_side = -(-max(scene.height, scene.width) // multiple) * multiple
        latent_side = padded_side // 8  # the VAE's down-sampling
        if tile is True and latent_side <= self.pipeline.tile.latent_tile:
            return self.pipeline.tile.latent_tile  # automatic tiling did not split this image
        used = self.pipeline.tile if tile is True else tile
        from gmodiff.models.refiner_config import MIN_LATENT_TILE

        return max(MIN_LATENT_TILE, used.latent_tile // 2)


def _classical(merge: str) -> type[Method]:
    return type(f"Classical_{merge}", (ClassicalMethod,), {"name": merge, "merge_name": merge})


@functools.cache
def methods() -> dict[str, type[Method]]:
    """The registry: concrete methods by name (``auto`` and ``classical`` resolve to one of these).

    Built on first use, so importing this module (the CLI does) stays light."""
    from gmodiff.baselines import CLASSICAL_METHODS

    return {**{name: _classical(name) for name in CLASSICAL_METHODS},
            DaRegMethod.name: DaRegMethod, GMODiffMethod.name: GMODiffMethod}

_LOADED: dict[tuple, Method] = {}


def load_method(name: str, options: ReconstructOptions | None = None) -> Method:
    """The method ``name`` built from ``options``; the last one loaded is reused (one in memory)."""
    options = options or ReconstructOptions()
    registry = methods()
    if name not in registry:
        raise ConfigError(f"unknown reconstruction method {name!r}",
                          fix=f"use one of {', '.join(available_methods())}")
    cls = registry[name]
    key = (name, *cls.load_key(options))
    if key not in _LOADED:
        method = cls(options)
        _LOADED.clear()  # loading an SD-sized pipeline takes minutes: keep one, not many
        _LOADED[key] = method
    return _LOADED[key]


def clear_loaded() -> None:
    """Forget the loaded method (the next call loads afresh, as a new process would)."""
    _LOADED.clear()


def available_methods() -> list[str]:
    """Method names :func:`reconstruct_scene` accepts."""
    return [AUTO, CLASSICAL_ALIAS, *methods()]


def auto_method(scene: Scene) -> str:
    """What ``auto`` means for ``scene``: gmodiff if a bundled model is installed and the bracket
    has the 3 frames it needs, else the best classical baseline."""
    from gmodiff.pipeline.bundled import bundled_pipeline
    from gmodiff.inputs.encode import FRAMES

    return "gmodiff" if bundled_pipeline() is not None and len(scene.frames) == FRAMES else CLASSICAL_ALIAS


def resolve_method(scene: Scene, method: str) -> str:
    """The concrete method name ``method`` stands for on ``scene`` (``auto``, ``classical``)."""
    from gmodiff.baselines import BEST_CLASSICAL

    if method == AUTO:
        method = auto_method(scene)
    return BEST_CLASSICAL if method == CLASSICAL_ALIAS else method


_PRELOAD = None
"""The thread :func:`preload` started, if any."""


def will_refine(method: str, options: ReconstructOptions) -> bool:
    """Whether ``method`` with ``options`` runs the refiner: ``options.refine`` where set, else
    ``steps`` > 1, else the saved default of the pipeline folder (the bundled one without
    ``weights``). Read from the folder's config, without loading a model."""
    if method not in (AUTO, "gmodiff"):
        return False
    if options.refine is not None:
        return options.refine
    if options.steps > 1:
        return True
    from gmodiff.pipeline.bundled import saved_refine

    return saved_refine(options.weights or "default")


def preload(method: str, refine: bool | None = None) -> None:
    """Start importing the networks' code (torch; diffusers unless ``refine`` is False: ~5 s on
    two cores) in a background thread when ``method`` may need it, so the import overlaps
    reading and aligning the bracket instead of following it. The model itself is still loaded
    by :func:`load_method`; an import error surfaces there, as before."""
    if method not in (AUTO, "gmodiff"):
        return
    import threading

    def load() -> None:
        try:
            import gmodiff.pipeline.pipeline  # noqa: F401
            if refine is not False:
                import gmodiff.models.refiner  # noqa: F401
        except Exception:  # noqa: BLE001 - the caller's own import reports it, with its message
            pass

    global _PRELOAD
    _PRELOAD = threading.Thread(target=load, name="gmodiff-preload", daemon=True)
    _PRELOAD.start()


def finish_preload() -> None:
    """Wait for :func:`preload`'s imports. Whoever builds a model calls this first: diffusers
    resolves its names lazily, and a second thread importing them mid-way fails with
    "cannot import name"."""
    if _PRELOAD is not None:
        _PRELOAD.join()


def memory_check(method: str, options: ReconstructOptions | None = None):
    """The memory plan of ``method`` as a check on header sizes, for the loaders to call before
    any pixel is decoded (``gmodiff.io.memory.check_fits_in_memory``'s ``run_check``); None
    when the method holds no more than the loader's own estimate (the classical merges).

    GMODiff's check is :func:`gmodiff.memory.plan_memory` with the run's budget (the same rule
    it applies once the scene is loaded, refiner or not as :func:`will_refine` says), DaReg's
    is :func:`gmodiff.memory.check_dareg_fits`. ``auto`` plans as GMODiff when a
    bundled model is installed (every scene it loads has the three frames auto needs)."""
    options = options or ReconstructOptions()
    if method == AUTO:
        from gmodiff.pipeline.bundled import bundled_pipeline

        method = "gmodiff" if bundled_pipeline() is not None else CLASSICAL_ALIAS
    if method == "gmodiff":
        from gmodiff.memory import plan_memory

        refine = will_refine(method, options)

        def check(path: Path, height: int, width: int) -> None:
            plan_memory(height, width, options.max_memory, refine=refine, source=path)

        return check
    if method == DaRegMethod.name:
        from gmodiff.memory import check_dareg_fits

        return lambda path, height, width: check_dareg_fits(height, width, path)
    return None


def reconstruct_scene(scene: Scene, method: str = CLASSICAL_ALIAS,
                      options: ReconstructOptions | None = None, **values) -> Reconstruction:
    """Reconstruct the reference-aligned HDR image of ``scene`` with ``method``.

    Give ``options`` as a :class:`ReconstructOptions`, or as its fields by keyword
    (``weights=..., steps=...``), which are typed here, once.
    """
    if values:
        if options is not None:
            raise ConfigError("give options either as a ReconstructOptions or as keywords, not both")
        options = ReconstructOptions.from_kwargs(**values)
    options = options or ReconstructOptions()
    name = resolve_method(scene, method)
    return load_method(name, options).reconstruct(scene, options)
