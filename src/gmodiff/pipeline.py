"""``GMODiffPipeline``: bracket in, HDR out (DaReg → one-step refiner → gain-map codec).

The pipeline owns its components and saves/loads them as one folder::

    gmodiff_pipeline.json     backbone source, refiner config (with its LoRA target lists)
    dareg/                    DaReg.save_pretrained
    refiner.safetensors       the refiner's weights: everything for a random (tiny/sd21_random)
                              backbone, only what training changes (LoRA, conv_in, projection,
                              DA skips, norm statistics) for a backbone folder

Adapters are written with our own safetensors file and read back with ``load_state_dict`` on the
same peft-wrapped module tree, so keys (``base_layer``/``lora_A.<adapter>``) match one for one —
diffusers' plain ``save_pretrained`` would drop them on reload (the "LoRA save trap").
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gmodiff.errors import CheckpointError, ConfigError, SceneError
from gmodiff.gainmap import decode_gain_map, from_signed, to_signed
from gmodiff.io.atomic import atomic_path
from gmodiff.io.scene import Scene
from gmodiff.models.backbone import BackboneConfig, load_backbone
from gmodiff.models.checkpoints import state_dict_differences
from gmodiff.models.dareg import DaReg, DaRegConfig
from gmodiff.models.refiner import GMRefiner, RefinerConfig, TileOptions

PIPELINE_CONFIG = "gmodiff_pipeline.json"
REFINER_WEIGHTS = "refiner.safetensors"
FORMAT = "gmodiff-pipeline"
MULTIPLE = 32
"""Inputs are padded to a multiple of this (DaReg's total down-sampling)."""
WEIGHTS_DIR = Path(__file__).parent / "weights"
BUNDLED = ("default",)
"""Pipelines shipped inside the package (``gmodiff/weights/<name>``), loadable by name."""


def bundled_pipeline(name: str = "default") -> Path | None:
    """Folder of the bundled pipeline ``name`` if it is installed, else None."""
    folder = WEIGHTS_DIR / name
    return folder if (folder / PIPELINE_CONFIG).is_file() else None


def resolve_weights(weights: str | Path) -> Path:
    """A pipeline folder: a bundled name ("default") unless a folder of that name exists here."""
    path = Path(weights)
    if str(weights) in BUNDLED and not path.is_dir():
        found = bundled_pipeline(str(weights))
        if found is None:
            raise CheckpointError(f"the bundled {weights!r} pipeline is not installed",
                                  WEIGHTS_DIR / str(weights),
                                  "reinstall gmodiff, or train it with `make train-default`")
        return found
    return path


@dataclass
class PipelineOutput:
    """What the pipeline returns for one scene (arrays H×W×C, float32)."""

    hdr: np.ndarray
    """Linear HDR radiance aligned to the reference frame."""
    gain_map: np.ndarray
    """The refined gain map in [0, 1]."""
    mask: np.ndarray | None
    """DaReg's DA mask (H×W) in [0, 1]."""
    coarse_gain_map: np.ndarray
    """DaReg's gain map before refinement."""
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class BatchPrediction:
    """Tensors from :meth:`GMODiffPipeline.predict` (cropped back to the input size)."""

    gain_map: torch.Tensor
    coarse_gain_map: torch.Tensor
    mask: torch.Tensor | None
    timings: dict[str, float]


def pad_to_multiple(x: torch.Tensor, multiple: int = MULTIPLE) -> torch.Tensor:
    """Replicate-pad the last two dims of ``x`` (any leading dims) up to a multiple."""
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    lead = x.shape[:-2]
    flat = x.reshape(1, -1, height, width)
    padded = F.pad(flat, (0, pad_w, 0, pad_h), mode="replicate")
    return padded.reshape(*lead, height + pad_h, width + pad_w)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class GMODiffPipeline:
    """DaReg + refiner + gain-map codec, with save/load, device/dtype moves and tiling."""

    def __init__(self, dareg: DaReg, refiner: GMRefiner, tile: TileOptions | None = None,
                 refine: bool = True):
        self.dareg = dareg.eval()
        self.refiner = refiner.eval()
        self.tile = tile or TileOptions()
        self.refine = refine
        """Default for ``__call__``: run the refiner (True) or return DaReg's gain map. A saved
        pipeline whose refiner does not (yet) beat its DaReg stores False, so it is not worse
        by default; ``refine=True`` still runs it."""
        self.device = next(refiner.parameters()).device
        self.dtype = torch.float32

    # ----- construction -----------------------------------------------------------------------
    @classmethod
    def build(cls, dareg: DaReg | None = None, backbone: BackboneConfig | str | Path = "tiny",
              refiner_config: RefinerConfig | None = None) -> GMODiffPipeline:
        """New pipeline: a DaReg (tiny if None) and a freshly initialised refiner on ``backbone``."""
        dareg = dareg or DaReg(DaRegConfig.tiny())
        token_channels = dareg.config.channels[-1]
        backbone_obj = load_backbone(backbone)
        if refiner_config is None:
            refiner_config = (RefinerConfig.tiny(token_channels) if backbone_obj.config.kind == "tiny"
                              else RefinerConfig(token_channels=token_channels))
        return cls(dareg, GMRefiner(backbone_obj, refiner_config))

    @classmethod
    def tiny(cls, seed: int = 0) -> GMODiffPipeline:
        """A tiny random pipeline (tests, benchmarks, smoke training)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            dareg = DaReg(DaRegConfig.tiny())
        return cls.build(dareg, BackboneConfig(kind="tiny", seed=seed),
                         RefinerConfig.tiny(dareg.config.channels[-1]))

    @classmethod
    def from_official(cls, dareg_path: str | Path, refiner_path: str | Path,
                      backbone: str | Path) -> GMODiffPipeline:
        """The reference release: its DaReg (trained on BGR) and gmodiff.pkl on a local SD-2.1 folder."""
        from gmodiff.models.official import load_official_refiner

        dareg = DaReg.from_pretrained(dareg_path, channel_order="bgr")
        return cls(dareg, load_official_refiner(refiner_path, backbone))

    # ----- persistence ------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the pipeline folder (config JSON, DaReg, refiner safetensors), each file atomically."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        refiner = self.refiner
        embedded = refiner.backbone_config.kind != "folder"
        refiner_config = RefinerConfig.from_dict(refiner.config.to_dict())
        refiner_config.target_modules = refiner.target_modules
        state = refiner.state_dict() if embedded else refiner.trainable_state_dict()
        state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
        self.dareg.save_pretrained(directory / "dareg")
        with atomic_path(directory / REFINER_WEIGHTS) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "model": "gmodiff.GMRefiner",
                                                 "contents": "full" if embedded else "trainable"})
        config = {
            "format": FORMAT,
            "version": 1,
            "backbone": refiner.backbone_config.to_dict(),
            "refiner": refiner_config.to_dict(),
            "refiner_weights": "full" if embedded else "trainable",
            "refine": self.refine,
            "tile": {"latent_tile": self.tile.latent_tile, "latent_overlap": self.tile.latent_overlap,
                     "vae_tile": self.tile.vae_tile, "vae_overlap": self.tile.vae_overlap},
        }
        with atomic_path(directory / PIPELINE_CONFIG) as tmp:
            Path(tmp).write_text(json.dumps(config, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path,
                        backbone: str | Path | None = None) -> GMODiffPipeline:
        """Load a folder written by :meth:`save_pretrained` (or a bundled name such as
        ``"default"``); ``backbone`` overrides the SD folder."""
        from safetensors.torch import load_file

        directory = resolve_weights(directory)
        config_path = directory / PIPELINE_CONFIG
        if not config_path.is_file():
            raise CheckpointError(f"no {PIPELINE_CONFIG} here", directory,
                                  "point at a folder written by GMODiffPipeline.save_pretrained")
        try:
            config = json.loads(config_path.read_text())
            if config.get("format") != FORMAT:
                raise ValueError("wrong format tag")
            backbone_config = BackboneConfig(**config["backbone"])
            refiner_config = RefinerConfig.from_dict(config["refiner"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"unreadable pipeline config ({exc})", config_path,
                                  "re-save the pipeline") from exc
        if backbone is not None:
            backbone_config = BackboneConfig.from_path(backbone)
        dareg = DaReg.from_pretrained(directory / "dareg")
        refiner = GMRefiner(load_backbone(backbone_config), refiner_config)
        weights_path = directory / REFINER_WEIGHTS
        if not weights_path.is_file():
            raise CheckpointError(f"missing {REFINER_WEIGHTS}", directory, "re-save the pipeline")
        state = load_file(str(weights_path))
        load_refiner_state(refiner, state, full=config.get("refiner_weights") == "full",
                           source=weights_path)
        tile = TileOptions(**config.get("tile", {}))
        return cls(dareg, refiner, tile, refine=bool(config.get("refine", True)))

    # ----- device, dtype, speed ---------------------------------------------------------------
    def to(self, device: str | torch.device | None = None,
           dtype: torch.dtype | None = None) -> GMODiffPipeline:
        """Move to ``device``; ``dtype`` fp16/bf16 (refiner only) is allowed on GPU only."""
        device = torch.device(device) if device is not None else self.device
        if dtype in (torch.float16, torch.bfloat16) and device.type == "cpu":
            raise ConfigError(f"{dtype} inference needs a GPU", fix="drop --dtype or use --device cuda")
        self.dareg.to(device)
        self.refiner.to(device=device, dtype=dtype) if dtype else self.refiner.to(device)
        self.device = device
        self.dtype = dtype or self.dtype
        return self

    def fuse_lora(self) -> GMODiffPipeline:
        """Merge every LoRA into its base weights (inference only)."""
        self.refiner.fuse_lora()
        return self

    # ----- inference --------------------------------------------------------------------------
    def predict(self, inputs: torch.Tensor, ldr_short: torch.Tensor, steps: int = 1,
                tile: TileOptions | None = None,
                generator: torch.Generator | None = None) -> BatchPrediction:
        """Refined gain maps for a batch: inputs (B,3,6,H,W), short LDR (B,3,H,W) in [0,1].

        DaReg always runs without gradients (it is frozen in stage 3); the refiner follows the
        caller's grad mode, so training calls this too.
        """
        height, width = inputs.shape[-2:]
        device = self.device
        inputs = pad_to_multiple(inputs.to(device))
        ldr_short = pad_to_multiple(ldr_short.to(device))
        timings: dict[str, float] = {}
        _sync(device)
        start = time.perf_counter()
        with torch.no_grad():
            coarse = self.dareg(inputs)
        _sync(device)
        timings["dareg_s"] = time.perf_counter() - start
        mask = coarse.mask if coarse.mask is not None else torch.zeros_like(coarse.gain_map[:, :1])
        start = time.perf_counter()
        refined = self.refiner(to_signed(coarse.gain_map), to_signed(ldr_short), mask, coarse.tokens,
                               steps=steps, tile=tile, generator=generator)
        _sync(device)
        timings["refiner_s"] = time.perf_counter() - start
        crop = (..., slice(0, height), slice(0, width))
        return BatchPrediction(
            gain_map=from_signed(refined.float())[crop],
            coarse_gain_map=coarse.gain_map[crop],
            mask=coarse.mask[crop] if coarse.mask is not None else None,
            timings=timings,
        )

    @torch.no_grad()
    def predict_coarse(self, inputs: torch.Tensor) -> BatchPrediction:
        """DaReg only (no refiner): its gain map stands in for the refined one."""
        height, width = inputs.shape[-2:]
        _sync(self.device)
        start = time.perf_counter()
        coarse = self.dareg(pad_to_multiple(inputs.to(self.device)))
        _sync(self.device)
        crop = (..., slice(0, height), slice(0, width))
        gain_map = coarse.gain_map[crop]
        return BatchPrediction(gain_map=gain_map, coarse_gain_map=gain_map,
                               mask=coarse.mask[crop] if coarse.mask is not None else None,
                               timings={"dareg_s": time.perf_counter() - start, "refiner_s": 0.0})

    @torch.no_grad()
    def __call__(self, scene: Scene, generator: torch.Generator | None = None, seed: int | None = None,
                 tile: TileOptions | bool | None = True, steps: int = 1,
                 refine: bool | None = None) -> PipelineOutput:
        """Reconstruct one scene.

        ``tile=True`` (default) uses the pipeline's tile options, which only split latents larger
        than the tile (96 latent px); a ``TileOptions`` sets them; None/False never tiles.
        ``refine`` None follows ``self.refine``; False returns DaReg's gain map (no refiner run).
        """
        from gmodiff.data.inputs import stack_inputs

        if len(scene.frames) != 3:
            raise SceneError(f"GMODiff needs 3 frames, got {len(scene.frames)}", scene.root,
                             "give a short, medium and long exposure")
        if steps < 1:
            raise ConfigError(f"steps must be ≥ 1, got {steps}")
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(seed)
        tile_options = self.tile if tile is True else (tile or None)
        start = time.perf_counter()
        inputs = stack_inputs(scene.frames, scene.exposure_times)[None]
        short = torch.from_numpy(np.ascontiguousarray(scene.frames[0].transpose(2, 0, 1)))[None]
        if self.refine if refine is None else refine:
            pred = self.predict(inputs, short.float(), steps=steps, tile=tile_options, generator=generator)
        else:
            pred = self.predict_coarse(inputs)
        gain_map = pred.gain_map[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)
        hdr = decode_gain_map(gain_map, np.asarray(scene.reference, dtype=np.float32))
        timings = dict(pred.timings)
        timings["total_s"] = time.perf_counter() - start
        return PipelineOutput(
            hdr=hdr.astype(np.float32),
            gain_map=gain_map,
            mask=pred.mask[0, 0].cpu().numpy().astype(np.float32) if pred.mask is not None else None,
            coarse_gain_map=pred.coarse_gain_map[0].permute(1, 2, 0).cpu().numpy().astype(np.float32),
            timings=timings,
        )


def load_refiner_state(refiner: GMRefiner, state: dict[str, torch.Tensor], full: bool,
                       source: str | Path | None = None) -> None:
    """Load saved refiner weights, refusing any missing, unexpected or mis-shaped key."""
    expected = refiner.state_dict() if full else refiner.trainable_state_dict()
    missing, unexpected, mismatched = state_dict_differences(expected, state)
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"refiner weights do not fit the model (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}, shape mismatch {mismatched[:3]})",
            source, "load with the backbone and refiner config the weights were trained with")
    refiner.load_state_dict(state, strict=full)


def load_pipeline(weights: str | Path, backbone: str | Path | None = None) -> GMODiffPipeline:
    """A pipeline from a ``save_pretrained`` folder, or from a folder holding the reference
    release (``dareg_mask.pth`` + ``gmodiff.pkl``, which needs ``backbone``: an SD-2.1 folder).
    ``weights`` may also name a bundled pipeline ("default")."""
    weights = resolve_weights(weights)
    if (weights / PIPELINE_CONFIG).is_file():
        return GMODiffPipeline.from_pretrained(weights, backbone=backbone)
    if (weights / "gmodiff.pkl").is_file() and (weights / "dareg_mask.pth").is_file():
        if backbone is None:
            from gmodiff.errors import BackboneError

            raise BackboneError("the reference checkpoints need the SD-2.1 backbone", weights,
                                "pass --backbone PATH to a local stable-diffusion-2-1-base folder")
        return GMODiffPipeline.from_official(weights / "dareg_mask.pth", weights / "gmodiff.pkl", backbone)
    raise CheckpointError("no GMODiff weights here", weights,
                          f"point --weights at a folder with {PIPELINE_CONFIG} (from training) or with "
                          "dareg_mask.pth + gmodiff.pkl (reference release)")


def reconstruct_with_gmodiff(scene: Scene, weights: str | Path | None = None,
                             backbone: str | Path | None = None, steps: int = 1,
                             tile: bool | int | None = None, device: str = "cpu",
                             dtype: str | None = None, fuse_lora: bool = False, seed: int = 0,
                             refine: bool | None = None):
    """The ``gmodiff`` branch of :func:`gmodiff.reconstruct.reconstruct_scene`."""
    from gmodiff.reconstruct import Reconstruction

    if weights is None:
        weights = bundled_pipeline()
    if weights is None:
        raise CheckpointError("method gmodiff needs weights (no bundled default is installed)", None,
                              "pass --weights DIR (a trained pipeline or the reference release)")
    pipe = _cached_pipeline(str(weights), str(backbone) if backbone else None, device, dtype, fuse_lora)
    tile_options: TileOptions | bool | None = True  # automatic: tiles only for large images
    if isinstance(tile, bool):
        tile_options = tile or None
    elif isinstance(tile, int) and tile > 0:
        tile_options = TileOptions(latent_tile=tile, latent_overlap=min(pipe.tile.latent_overlap, tile // 3))
    try:
        out = pipe(scene, seed=seed, tile=tile_options, steps=steps, refine=refine)
    except (MemoryError, torch.OutOfMemoryError) as exc:
        from gmodiff.errors import OutOfMemoryError

        used = tile_options if isinstance(tile_options, TileOptions) else (pipe.tile if tile_options else None)
        padded_side = -(-max(scene.height, scene.width) // MULTIPLE) * MULTIPLE
        latent_side = padded_side // 8  # the VAE's down-sampling
        if tile_options is True and latent_side <= used.latent_tile:
            used = None  # automatic tiling did not split this image
        size = pipe.tile.latent_tile if used is None else max(8, used.latent_tile // 2)
        raise OutOfMemoryError(
            f"out of memory reconstructing {scene.width}x{scene.height} on {device} "
            f"({type(exc).__name__})", scene.root,
            f"retry with --tile {size} (smaller tiles use less memory)") from exc
    timings = {"dareg": out.timings["dareg_s"], "refiner": out.timings["refiner_s"],
               "total": out.timings["total_s"]}
    refined = pipe.refine if refine is None else refine
    name = ("gmodiff" if steps == 1 else f"gmodiff-{steps}step") if refined else "gmodiff-dareg-only"
    return Reconstruction(hdr=out.hdr, gain_map=out.gain_map, mask=out.mask, timings=timings,
                          method=name)


_DTYPES = {None: None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _cached_pipeline(weights: str, backbone: str | None, device: str, dtype: str | None,
                     fuse: bool) -> GMODiffPipeline:
    # Loading an SD-sized pipeline takes seconds to minutes: keep the last one for batch runs.
    key = (weights, backbone, device, dtype, fuse)
    cached = _PIPELINE_CACHE.get(key)
    if cached is None:
        if dtype not in _DTYPES:
            raise ConfigError(f"dtype {dtype!r}", fix="use fp32, fp16 or bf16")
        cached = load_pipeline(weights, backbone).to(device, _DTYPES[dtype])
        if fuse:
            cached.fuse_lora()
        _PIPELINE_CACHE.clear()
        _PIPELINE_CACHE[key] = cached
    return cached


_PIPELINE_CACHE: dict[tuple, GMODiffPipeline] = {}
