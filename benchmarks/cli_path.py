"""The pipeline as ``gmodiff reconstruct`` runs it, for the quality benchmarks.

``optimised`` (the CLI's default on CPU): LoRA fused, channels_last, bf16 autocast where the CPU
has AMX, and the memory plan's tiles (UNet tiles seeing the prior tokens near them). ``reference``:
the plain PyTorch pipeline with its own tile defaults, the path the speed levers are measured
against (issue 25: quality within 0.05 dB PSNR-μ of it).
"""

from __future__ import annotations

PATHS = ("optimised", "reference")


class PlannedPipeline:
    """A ``GMODiffPipeline`` called with the CLI's memory plan (``optimised``) or as is."""

    def __init__(self, pipe, path: str = "optimised"):
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        if path == "optimised":
            pipe.fuse_lora().optimise_for_cpu()
        self.pipe, self.path = pipe, path
        self.refine = pipe.refine

    def __call__(self, scene, refine: bool | None = None, **kwargs):
        if self.path == "reference":
            return self.pipe(scene, refine=refine, **kwargs)
        from gmodiff.memory import plan_memory

        refine = self.pipe.refine if refine is None else refine
        plan = plan_memory(scene.height, scene.width, refine=refine)
        return self.pipe(scene, refine=refine, plan=plan, **kwargs)

    def decode(self, gain_map, scene):
        """:meth:`GMODiffPipeline.decode`: a gain map of ``scene`` against the network's reference."""
        return self.pipe.decode(gain_map, scene)
