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

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from gmodiff.errors import CheckpointError, ConfigError
from gmodiff.gainmap import decode_gain_map, from_signed, to_signed
from gmodiff.io.atomic import atomic_path
from gmodiff.io.scene import Scene
from gmodiff.models.backbone import BackboneConfig, load_backbone
from gmodiff.models.checkpoints import state_dict_differences
from gmodiff.models.dareg import DaReg, DaRegConfig, DaRegOutput
from gmodiff.models.refiner_config import RefinerConfig, TileOptions
from gmodiff.pipeline.bundled import (BUNDLED, PIPELINE_CONFIG, REFINER_WEIGHTS, WEIGHTS_DIR,  # noqa: F401
                                      bundled_pipeline, read_provenance, resolve_weights,
                                      write_provenance)
from gmodiff.pipeline.folder import FORMAT
from gmodiff.inputs.encode import (FrameEncoder, NetworkInputs, network_encoder, network_scene,
                                   scene_inputs, to_image)
from gmodiff.inputs.padding import crop, pad
from gmodiff.result import Reconstruction

if TYPE_CHECKING:
    from gmodiff.models.refiner import GMRefiner
    from gmodiff.memory import MemoryPlan
    from gmodiff.progress import Progress

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class GMODiffPipeline:
    """DaReg + refiner + gain-map codec, with save/load, device/dtype moves and tiling."""

    def __init__(self, dareg: DaReg, refiner: GMRefiner | Callable[[], GMRefiner],
                 tile: TileOptions | None = None, refine: bool = True):
        self.dareg = dareg.eval()
        # A callable builds the refiner when it is first used (``from_pretrained(lazy=True)``):
        # a DaReg-only run then never imports diffusers (~4 s of start-up on two cores).
        self._refiner: GMRefiner | None = None if callable(refiner) and not isinstance(
            refiner, nn.Module) else refiner.eval()
        self._build_refiner = refiner if self._refiner is None else None
        self._pending: dict[str, object] = {}
        """Moves and optimisations asked for before a lazy refiner was built."""
        self._hooks: tuple | None = None
        """The running call's progress callbacks, for a refiner built during it."""
        self.tile = tile or TileOptions()
        self.refine = refine
        """Default for ``__call__``: run the refiner (True) or return DaReg's gain map. A saved
        pipeline whose refiner does not (yet) beat its DaReg stores False, so it is not worse
        by default; ``refine=True`` still runs it."""
        self.device = next(dareg.parameters()).device
        self.dtype = torch.float32
        self.cpu_bf16 = False
        """Run the networks under bf16 autocast on CPU (set by :meth:`optimise_for_cpu`)."""
        self.cpu_dareg: Callable[..., DaRegOutput] | None = None
        """DaReg's inference forward on CPU when :meth:`optimise_for_cpu` compiled it
        (:mod:`gmodiff.pipeline.openvino_dareg`); None: the module itself."""

    @property
    def refiner(self) -> GMRefiner:
        """The one-step refiner (built now if this pipeline was loaded lazily)."""
        if self._refiner is None:
            # Built outside any bf16 autocast (a run may ask for it mid-way): fusing LoRA is a
            # matmul, and its result must stay fp32.
            with torch.autocast("cpu", enabled=False):
                refiner = self._build_refiner().eval()
                self._build_refiner = None
                dtype = self._pending.get("dtype")
                refiner.to(device=self.device, dtype=dtype) if dtype else refiner.to(self.device)
                if self._pending.get("fuse"):
                    refiner.fuse_lora()
                if self._pending.get("channels_last"):
                    refiner.to(memory_format=torch.channels_last)
            if self._hooks is not None:
                refiner.on_tile, refiner.on_phase = self._hooks
            self._refiner = refiner
        return self._refiner

    @refiner.setter
    def refiner(self, refiner: GMRefiner) -> None:
        self._refiner, self._build_refiner = refiner, None

    @property
    def refiner_loaded(self) -> bool:
        """Whether the refiner exists yet (False until a lazily loaded pipeline first refines)."""
        return self._refiner is not None

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
        from gmodiff.models.refiner import GMRefiner

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
    def from_pretrained(cls, directory: str | Path, backbone: str | Path | None = None,
                        lazy: bool = False, before_build: Callable[[], None] | None = None
                        ) -> GMODiffPipeline:
        """Load a folder written by :meth:`save_pretrained` (or a bundled name such as
        ``"default"``); ``backbone`` overrides the SD folder. ``lazy`` checks the folder now but
        builds the refiner (and imports diffusers) only when it is first used, after calling
        ``before_build`` (the CLI joins its background imports there)."""
        from gmodiff.pipeline.folder import (
            build_refiner,
            check_token_width,
            read_pipeline_config,
            read_refiner_weights,
        )

        directory = resolve_weights(directory)
        config_path = directory / PIPELINE_CONFIG
        if not config_path.is_file():
            raise CheckpointError(f"no {PIPELINE_CONFIG} here", directory,
                                  "point at a folder written by GMODiffPipeline.save_pretrained")
        # Every field is bound-checked before anything is built (see gmodiff.pipeline.folder).
        config = read_pipeline_config(config_path)
        backbone_config = config.backbone
        if backbone is not None:
            backbone_config = BackboneConfig.from_path(backbone)
        weights_path = directory / REFINER_WEIGHTS
        if not weights_path.is_file():
            raise CheckpointError(f"missing {REFINER_WEIGHTS}", directory, "re-save the pipeline")
        dareg = DaReg.from_pretrained(directory / "dareg")
        check_token_width(config.refiner, dareg.config.channels[-1], config_path)

        def refiner() -> GMRefiner:
            if before_build is not None:
                before_build()
            state = read_refiner_weights(weights_path)
            built = build_refiner(load_backbone(backbone_config), config.refiner, config_path)
            load_refiner_state(built, state, full=config.refiner_weights == "full",
                               source=weights_path)
            return built

        return cls(dareg, refiner if lazy else refiner(), config.tile, refine=config.refine)

    # ----- device, dtype, speed ---------------------------------------------------------------
    def to(self, device: str | torch.device | None = None,
           dtype: torch.dtype | None = None) -> GMODiffPipeline:
        """Move to ``device``; ``dtype`` fp16/bf16 (refiner only) is allowed on GPU only."""
        device = torch.device(device) if device is not None else self.device
        if dtype in (torch.float16, torch.bfloat16) and device.type == "cpu":
            raise ConfigError(f"{dtype} inference needs a GPU", fix="use `dtype=fp32` or `device=cuda`")
        self.dareg.to(device)
        if self._refiner is None:
            self._pending["dtype"] = dtype or self._pending.get("dtype")
        else:
            self.refiner.to(device=device, dtype=dtype) if dtype else self.refiner.to(device)
        self.device = device
        self.dtype = dtype or self.dtype
        return self

    def fuse_lora(self) -> GMODiffPipeline:
        """Merge every LoRA into its base weights (inference only)."""
        if self._refiner is None:
            self._pending["fuse"] = True
        else:
            self.refiner.fuse_lora()
        return self

    def optimise_for_cpu(self, bf16: bool | None = None) -> GMODiffPipeline:
        """Inference on CPU only: LoRA fused into its base weights (one conv instead of three
        per adapted layer), both networks in ``channels_last`` (oneDNN's native layout, and
        the channel norms become views) and, where the CPU has AMX (``bf16`` None: detected,
        :func:`gmodiff.devices.cpu_bf16_fast`), bf16 autocast. Outputs match the plain model
        within ~1e-4 in fp32 and ~1e-2 in bf16 (``tests/test_pipeline.py``; the quality cost is
        in ``benchmarks/results/speed.md``); training must start from a freshly loaded pipeline."""
        if self.device.type != "cpu":
            return self
        if bf16 is None:
            from gmodiff.devices import cpu_bf16_fast

            bf16 = cpu_bf16_fast()
        self.cpu_bf16 = bf16
        self.dareg.to(memory_format=torch.channels_last)
        if not bf16:  # where AMX makes bf16 the fast road, PyTorch's bf16 (measured) stays
            from gmodiff.pipeline.openvino_dareg import cpu_runtime

            self.cpu_dareg = cpu_runtime(self.dareg)
        if self._refiner is None:
            self._pending.update(fuse=True, channels_last=True)
            return self
        if not self.refiner.lora_fused:
            self.refiner.fuse_lora()
        self.refiner.to(memory_format=torch.channels_last)
        return self

    # ----- inference --------------------------------------------------------------------------
    def _autocast(self):
        """bf16 autocast for the networks when :meth:`optimise_for_cpu` chose it, else nothing."""
        if self.cpu_bf16 and self.device.type == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def predict(self, batch: NetworkInputs, steps: int = 1, tile: TileOptions | None = None,
                generator: torch.Generator | None = None, refiner: nn.Module | None = None,
                timings: dict[str, float] | None = None) -> tuple[torch.Tensor, DaRegOutput]:
        """Refined gain maps in [0, 1] and DaReg's output for a padded batch, cropped back.

        DaReg always runs without gradients (it is frozen in stage 3); the refiner follows the
        caller's grad mode, so training calls this too, with its (possibly DDP-wrapped)
        ``refiner``. Stage times go into ``timings`` when given.
        """
        coarse = self._coarse(batch, timings)
        mask = coarse.mask if coarse.mask is not None else torch.zeros_like(coarse.gain_map[:, :1])
        short = batch.ldr_short.to(self.device)
        start = time.perf_counter()
        refined = (refiner or self.refiner)(to_signed(coarse.gain_map), to_signed(short), mask,
                                            coarse.tokens, steps=steps, tile=tile, generator=generator)
        _sync(self.device)
        if timings is not None:
            timings["refiner_s"] = time.perf_counter() - start
        return crop(from_signed(refined.float()), batch.size), _cropped(coarse, batch.size)

    @torch.no_grad()
    def predict_coarse(self, batch: NetworkInputs, timings: dict[str, float] | None = None,
                       mask: bool = True) -> DaRegOutput:
        """DaReg only (no refiner), cropped back: its gain map stands in for the refined one.
        ``mask`` False skips the DA-mask head (nothing downstream of a DaReg-only run reads it
        unless its maps are shown or written)."""
        return _cropped(self._coarse(batch, timings, mask), batch.size)

    @torch.no_grad()
    def _coarse(self, batch: NetworkInputs, timings: dict[str, float] | None,
                mask: bool = True) -> DaRegOutput:
        _sync(self.device)
        start = time.perf_counter()
        # One whole-image forward runs in PyTorch: compiling its shape for OpenVINO (about 1 s
        # plus a slow first inference) costs more than the compiled forward saves (1 MP, DaReg
        # stage 9.7 s compiled vs 7.7 s PyTorch, benchmarks/results/speed.md; rechecked with the
        # compiled-shape cache: one 1-MP forward 4.35 s vs 3.88 s); tiles share one
        # compiled shape and take the compiled road (dareg_tiled).
        coarse = self.dareg(batch.inputs.to(self.device), with_mask=mask).float()
        _sync(self.device)
        if timings is not None:
            timings["dareg_s"] = time.perf_counter() - start
            timings["refiner_s"] = 0.0
        return coarse

    @property
    def dareg_forward(self) -> Callable[..., DaRegOutput]:
        """What runs DaReg for inference: the compiled forward of :meth:`optimise_for_cpu`
        while it still wraps this pipeline's DaReg, else the module."""
        compiled = self.cpu_dareg
        if compiled is not None and self.device.type == "cpu" and \
                getattr(compiled, "dareg", compiled) is self.dareg:
            return compiled
        return self.dareg

    def will_refine(self, refine: bool | None, steps: int = 1) -> bool:
        """Whether a call with ``refine`` and ``steps`` runs the refiner: ``refine`` where given,
        else this pipeline's default, or True where ``steps`` > 1 (a DDIM chain refines)."""
        return (self.refine or steps > 1) if refine is None else refine

    @torch.inference_mode()
    def __call__(self, scene: Scene, generator: torch.Generator | None = None, seed: int | None = None,
                 tile: TileOptions | bool | None = True, steps: int = 1,
                 refine: bool | None = None, plan: MemoryPlan | None = None,
                 progress: Progress | None = None, mask: bool = True) -> Reconstruction:
        """Reconstruct one scene.

        ``tile=True`` (default) uses the pipeline's tile options, which only split latents larger
        than the tile (96 latent px); a ``TileOptions`` sets them; None/False never tiles.
        ``refine`` None follows ``self.refine`` (and refines where ``steps`` > 1); False returns
        DaReg's gain map (no refiner run).
        Timings are ``dareg_s``, ``refiner_s`` and ``total_s``. ``plan``
        (:func:`gmodiff.memory.plan_memory`) tiles DaReg too and sets the refiner's tiles when
        ``tile`` is True; ``progress`` (:mod:`gmodiff.progress`) reports stages and tiles.
        ``mask`` False leaves out the DA mask where only it would read it (a DaReg-only run:
        the head costs ~20 % of DaReg's time); the refiner always gets it.
        """
        if steps < 1:
            raise ConfigError(f"steps must be ≥ 1, got {steps}", fix="use `steps=1` (the one-step model)")
        if steps > 1 and refine is False:
            raise ConfigError(f"`steps={steps}` runs the refiner, and `refine=False` turns it off",
                              fix="drop `refine=False`, or use `steps=1`")
        refine = self.will_refine(refine, steps)
        mask = mask or refine  # the refiner's residual gate reads the mask
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(seed)
        tile_options = self.tile if tile is True else (tile or None)
        if plan is not None and tile is True:
            tile_options = TileOptions(latent_tile=plan.latent_tile, latent_overlap=plan.latent_overlap,
                                       vae_tile=plan.vae_tile, vae_overlap=self.tile.vae_overlap,
                                       token_margin=plan.token_margin)
        from gmodiff.progress import SILENT

        progress = progress or SILENT
        start = time.perf_counter()
        tiled = plan is not None and plan.dareg_tile is not None
        # Tiled runs re-encode frames tile by tile: full-size model frames would cost 12 bytes
        # a pixel each, and the scene's own frames are kept by the caller anyway.
        encode = network_encoder(scene, self.dareg.config) if tiled else None
        if not tiled:
            scene = network_scene(scene, self.dareg.config)
        # The DaReg stage includes its input encoding (camera-curve estimate, classical merge).
        prepare = time.perf_counter() - start
        timings: dict[str, float] = {}
        # A lazily loaded refiner is built where it is first used (after DaReg), and not at all
        # on DaReg-only runs; it gets the progress callbacks then.
        self._hooks = (progress.tile, progress.phase) if refine else None
        if refine and self._refiner is not None:
            self._refiner.on_tile, self._refiner.on_phase = self._hooks
        try:
            with self._autocast():  # bf16 convolutions where the CPU has AMX
                if tiled:
                    gain_map, coarse = self._predict_tiled(scene, encode, plan, refine, steps,
                                                           tile_options, generator, progress,
                                                           timings, mask=mask)
                else:
                    progress.stage("DaReg" + (" + refiner" if refine else ""))
                    encode_start = time.perf_counter()
                    batch = scene_inputs(scene, self.dareg.config)
                    prepare += time.perf_counter() - encode_start
                    if refine:
                        gain_map, coarse = self.predict(batch, steps=steps, tile=tile_options,
                                                        generator=generator, timings=timings)
                    else:
                        coarse = self.predict_coarse(batch, timings, mask=mask)
                        gain_map = coarse.gain_map
        finally:
            self._hooks = None
            if self._refiner is not None:
                self._refiner.on_tile = self._refiner.on_phase = None
        if plan is not None:
            from gmodiff.memory import release_freed_memory

            release_freed_memory()
        progress.stage("decoding the gain map")
        gain_map_image = to_image(gain_map)
        reference = encode([scene.reference])[0] if tiled else scene.reference
        hdr = decode_gain_map(gain_map_image, np.asarray(reference, dtype=np.float32))
        timings["dareg_s"] = timings.get("dareg_s", 0.0) + prepare
        timings["total_s"] = time.perf_counter() - start
        name = ("gmodiff" if steps == 1 else f"gmodiff-{steps}step") if refine else "gmodiff-dareg-only"
        return Reconstruction(
            hdr=np.asarray(hdr, dtype=np.float32), gain_map=gain_map_image,
            mask=to_image(coarse.mask) if coarse.mask is not None else None,
            coarse_gain_map=to_image(coarse.gain_map), timings=timings, method=name, refined=refine)

    def decode(self, gain_map: np.ndarray, scene: Scene) -> np.ndarray:
        """HDR of ``scene`` from one of this pipeline's gain maps of it, e.g. a
        :class:`Reconstruction`'s ``coarse_gain_map`` (what ``refine=False`` returns).

        Gain maps are relative to the reference frame the network saw: for ``canonical_inputs``
        models that is the reference re-encoded with the curve estimated from the bracket, not
        the camera's own frame (decoding against that one is off by their ratio). The curve is
        estimated again from ``scene`` (deterministic: the same one the call used)."""
        reference = network_encoder(scene, self.dareg.config)([scene.reference])[0]
        return decode_gain_map(np.asarray(gain_map, dtype=np.float32),
                               np.asarray(reference, dtype=np.float32))

    def _predict_tiled(self, scene: Scene, encode: FrameEncoder, plan: MemoryPlan, refine: bool,
                       steps: int, tile: TileOptions | None, generator: torch.Generator | None,
                       progress: Progress, timings: dict[str, float], mask: bool = True):
        """DaReg over tiles straight from the scene's frames, each tile's crops re-encoded by
        ``encode`` (``gmodiff.pipeline.dareg_tiles``), then the refiner."""
        from gmodiff.pipeline.dareg_tiles import dareg_tiled

        size = (scene.height, scene.width)
        progress.stage(f"DaReg ({plan.dareg_tile}-px tiles)")
        start = time.perf_counter()
        coarse = dareg_tiled(self.dareg, scene.frames, scene.exposure_times, plan.dareg_tile,
                             plan.dareg_overlap, self.dareg.config.multiple, on_tile=progress.tile,
                             encode=encode, mask=mask, network=self.dareg_forward)
        timings["dareg_s"] = time.perf_counter() - start
        timings["refiner_s"] = 0.0
        gain_map = coarse.gain_map
        if refine:
            progress.stage("refiner")
            start = time.perf_counter()
            short = np.ascontiguousarray(encode([scene.frames[0]])[0].transpose(2, 0, 1), np.float32)
            short = pad(torch.from_numpy(short)[None], self.dareg.config).to(self.device)
            mask = coarse.mask if coarse.mask is not None else torch.zeros_like(gain_map[:, :1])
            refined = self.refiner(to_signed(gain_map).to(self.device), to_signed(short),
                                   mask.to(self.device), coarse.tokens.to(self.device), steps=steps,
                                   tile=tile, generator=generator)
            _sync(self.device)
            gain_map = from_signed(refined.float()).cpu()
            timings["refiner_s"] = time.perf_counter() - start
        return crop(gain_map, size), _cropped(coarse, size)


def _cropped(output: DaRegOutput, size: tuple[int, int]) -> DaRegOutput:
    """DaReg's output with its maps cut back to ``size`` (tokens stay at the padded size)."""
    mask = crop(output.mask, size) if output.mask is not None else None
    return dataclasses.replace(output, gain_map=crop(output.gain_map, size), mask=mask)


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


def load_pipeline(weights: str | Path, backbone: str | Path | None = None,
                  lazy: bool = False, before_build: Callable[[], None] | None = None
                  ) -> GMODiffPipeline:
    """A pipeline from a ``save_pretrained`` folder, or from a folder holding the reference
    release (``dareg_mask.pth`` + ``gmodiff.pkl``, which needs ``backbone``: an SD-2.1 folder).
    ``weights`` may also name a bundled pipeline ("default"); ``lazy`` and ``before_build``:
    see :meth:`GMODiffPipeline.from_pretrained`."""
    weights = resolve_weights(weights)
    if (weights / PIPELINE_CONFIG).is_file():
        return GMODiffPipeline.from_pretrained(weights, backbone=backbone, lazy=lazy,
                                               before_build=before_build)
    if (weights / "gmodiff.pkl").is_file() and (weights / "dareg_mask.pth").is_file():
        if backbone is None:
            from gmodiff.errors import BackboneError

            raise BackboneError("the reference checkpoints need the SD-2.1 backbone", weights,
                                "set `backbone` to a local stable-diffusion-2-1-base folder")
        if before_build is not None:
            before_build()
        return GMODiffPipeline.from_official(weights / "dareg_mask.pth", weights / "gmodiff.pkl", backbone)
    raise CheckpointError("no GMODiff weights here", weights,
                          f"point `weights` at a folder with {PIPELINE_CONFIG} (from training) or with "
                          "dareg_mask.pth + gmodiff.pkl (reference release)")
