"""``gmodiff train ...``: one sub-command per trainable component.

Each stage's training code lives in ``gmodiff.train.<stage>``; the commands here only parse flags
and call it. To add a stage, add one function decorated with ``@train_app.command("<name>")``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from gmodiff.cli import app

train_app = typer.Typer(help="Train GMODiff components (accelerate: CPU, one or many GPUs).",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")


@train_app.command("dareg")
def train_dareg_command(
    stage: int = typer.Option(..., "--stage", help="1: backbone + GM head; 2: DA-mask head only."),
    config: Path = typer.Option(..., "--config", help="YAML config, e.g. configs/dareg-stage1-tiny.yaml."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from the newest checkpoint."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Override max_steps."),
    out: Path | None = typer.Option(None, "--out", help="Override out_dir."),
    init_weights: Path | None = typer.Option(None, "--init-weights", help="Stage 2: stage-1 weights."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train DaReg (spec §3). Launch with `accelerate launch -m gmodiff train dareg ...` for DDP."""
    from gmodiff.train.dareg import DaRegTrainConfig, train_dareg

    settings = DaRegTrainConfig.from_yaml(
        config, stage=stage, max_steps=max_steps, out_dir=str(out) if out else None,
        init_weights=str(init_weights) if init_weights else None,
    )
    summary = train_dareg(settings, resume=resume, progress=progress)
    typer.echo(f"trained {summary['steps']} steps → {summary['final']}")


@train_app.command("refiner")
def train_refiner_command(
    config: Path = typer.Option(..., "--config", help="YAML config, e.g. configs/refiner-tiny.yaml."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from the newest checkpoint."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Override max_steps."),
    out: Path | None = typer.Option(None, "--out", help="Override out_dir."),
    dareg: Path | None = typer.Option(None, "--dareg", help="Override dareg_weights (frozen DaReg)."),
    backbone: str | None = typer.Option(None, "--backbone", help="tiny, sd21_random or an SD-2.1 folder."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train the one-step refiner (stage 3, spec §4) with DaReg frozen."""
    from gmodiff.train.refiner import RefinerTrainConfig, train_refiner

    settings = RefinerTrainConfig.from_yaml(
        config, max_steps=max_steps, out_dir=str(out) if out else None,
        dareg_weights=str(dareg) if dareg else None, backbone=backbone,
    )
    summary = train_refiner(settings, resume=resume, progress=progress)
    typer.echo(f"trained {summary['steps']} steps (perceptual: {summary['perceptual']}) → {summary['final']}")


@train_app.command("prior")
def train_prior_command(
    config: Path = typer.Option(..., "--config", help="YAML config, e.g. configs/default-prior.yaml."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from the newest checkpoint."),
    out: Path | None = typer.Option(None, "--out", help="Override out_dir."),
    dareg: Path | None = typer.Option(None, "--dareg", help="Override dareg_weights (coarse GMs)."),
    vae_steps: int | None = typer.Option(None, "--vae-steps", help="Override vae_steps."),
    unet_steps: int | None = typer.Option(None, "--unet-steps", help="Override unet_steps."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Stage 0: pretrain the tiny backbone (VAE, then UNet at t=499) into a diffusers folder."""
    from gmodiff.train.prior import PriorTrainConfig, train_prior

    settings = PriorTrainConfig.from_yaml(config, out_dir=str(out) if out else None,
                                          dareg_weights=str(dareg) if dareg else None,
                                          vae_steps=vae_steps, unet_steps=unet_steps)
    summary = train_prior(settings, resume=resume, progress=progress)
    typer.echo(f"trained {summary['steps']} steps → {summary['final']} (a --backbone folder)")


@train_app.command("bundle")
def train_bundle_command(
    pipeline: Path = typer.Option(..., "--pipeline", help="A stage-3 result, e.g. runs/default-refiner/final."),
    out: Path = typer.Option(Path("src/gmodiff/weights/default"), "--out", help="Where to write it."),
    refine: bool | None = typer.Option(None, "--refine/--no-refine", help="Saved default: run the "
                                       "refiner, or return DaReg's gain map (a refiner that does "
                                       "not beat its DaReg yet). Default: as trained (refine)."),
    dareg: Path | None = typer.Option(None, "--dareg", help="Replace the pipeline's DaReg by "
                                      "this one (a stage-2 'final' folder of the same width)."),
) -> None:
    """Write a trained tiny pipeline as one self-contained folder (the bundled default model)."""
    from gmodiff.train.bundle import bundle_pipeline

    typer.echo(f"wrote {bundle_pipeline(pipeline, out, refine=refine, dareg=dareg)}")
