"""Turn a trained stage-3 pipeline into the self-contained folder shipped as ``weights/default``.

A stage-3 run on a backbone *folder* (the tiny prior of stage 0) saves only what stage 3 trained;
loading it needs that folder. The bundled model must load on a fresh install, so the backbone's
weights are embedded: the refiner is saved in full with ``backbone.kind = "tiny"`` (the tiny
backbone's architecture, whose random initial weights the stored ones replace key for key).
"""

from __future__ import annotations

from pathlib import Path

from gmodiff.errors import BackboneError, CheckpointError
from gmodiff.models.backbone import TINY_UNET_CONFIG, TINY_VAE_CONFIG, BackboneConfig
from gmodiff.pipeline.pipeline import GMODiffPipeline, read_provenance, write_provenance


def _tiny_equivalent(pipeline: GMODiffPipeline) -> BackboneConfig | None:
    """The tiny BackboneConfig that rebuilds this pipeline's backbone layout (None: not tiny)."""
    unet_cfg = pipeline.refiner.unet.config
    vae_cfg = pipeline.refiner.vae.config
    widths = tuple(vae_cfg.block_out_channels)
    same_unet = (tuple(unet_cfg.block_out_channels) == tuple(TINY_UNET_CONFIG["block_out_channels"])
                 and unet_cfg.cross_attention_dim == TINY_UNET_CONFIG["cross_attention_dim"])
    same_vae = (vae_cfg.layers_per_block == TINY_VAE_CONFIG["layers_per_block"]
                and vae_cfg.latent_channels == TINY_VAE_CONFIG["latent_channels"])
    if not (same_unet and same_vae):
        return None
    default = widths == tuple(TINY_VAE_CONFIG["block_out_channels"])
    try:  # BackboneConfig knows which widths a tiny VAE may have
        return BackboneConfig(kind="tiny", vae_widths=None if default else widths)
    except BackboneError:
        return None


def bundle_pipeline(source: str | Path, out: str | Path, provenance: dict | None = None,
                    refine: bool | None = None, dareg: str | Path | None = None) -> Path:
    """Save the pipeline at ``source`` to ``out`` with its tiny backbone embedded (one folder).

    ``refine`` (when not None) sets the saved default: False ships a pipeline whose refiner has
    not yet caught up with its DaReg, so by default it returns DaReg's gain map. ``dareg`` (a
    ``save_pretrained`` folder) replaces the pipeline's DaReg by a retrained one of the same
    token width, e.g. one with another input layout.
    """
    pipeline = GMODiffPipeline.from_pretrained(source)
    if dareg is not None:
        from gmodiff.models.dareg import DaReg
        from gmodiff.train.refiner import compatible_dareg

        pipeline.dareg = compatible_dareg(pipeline, DaReg.from_pretrained(dareg))
    if refine is not None:
        pipeline.refine = refine
    tiny = _tiny_equivalent(pipeline)
    if tiny is None:
        raise CheckpointError("only pipelines on the tiny backbone architecture can be bundled",
                              source, "train stage 3 on the tiny prior (configs/default-refiner.yaml)")
    origin = pipeline.refiner.backbone_config.to_dict()
    # Re-bundling a bundle (e.g. to swap its DaReg) keeps where its backbone was trained.
    earlier = read_provenance(source)
    pipeline.refiner.backbone_config = tiny
    out = Path(out)
    pipeline.save_pretrained(out)
    write_provenance(out, {"trained_on_backbone": origin, **earlier, **(provenance or {})})
    for path in out.rglob("*"):  # atomic temp files are 0600; package data must be world-readable
        path.chmod(0o755 if path.is_dir() else 0o644)
    return out
