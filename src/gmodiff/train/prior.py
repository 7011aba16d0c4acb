"""Stage 0: a tiny diffusion prior, trained here, for the CPU-sized default model.

GMODiff refines gain maps with a *pretrained* backbone (SD-2.1). SD-2.1 cannot ship inside the
package or train on a CPU, and a randomly initialised tiny backbone is no prior at all: its VAE
does not even reconstruct its input, so stage 3 cannot beat DaReg on it. This stage makes the tiny
backbone a real (small) prior before stage 3, in two phases over one resumable run:

1. **VAE** (``vae_steps``): the tiny ``AutoencoderKL`` learns to autoencode signed gain maps and
   short/reference LDR frames (the condition VAE starts as a copy of it), with
   ``L1(x̂, x) + L1(T(Ĥ), T(H)) + kl_weight·KL`` (T the μ=5000 curve, Ĥ decoded from the
   reconstructed gain map).
2. **UNet** (``unet_steps``, VAE frozen): the tiny UNet is trained at the refiner's timestep
   (t = 499) so that the scheduler's x0 estimate from an input latent ``x_t`` is the clean
   gain-map latent z0, i.e. ε target ``(x_t − √ᾱ·z0)/√(1−ᾱ)``. ``x_t`` is a mix of the standard
   forward-noised latent ``√ᾱ·z0 + √(1−ᾱ)·ε`` (a plain diffusion prior) and the latent of a
   coarse gain map: DaReg's prediction when ``dareg_weights`` is given, else a blurred/noisy copy
   of the ground truth. The second is exactly the one-step use of stage 3 (x_t := z_G).

The result is saved as a diffusers folder (``unet/``, ``vae/``, ``scheduler/``) that
``--backbone``/``load_backbone`` reads like a local SD-2.1 copy: same code path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from gmodiff.errors import ConfigError
from gmodiff.gainmap import decode_gain_map, from_signed, to_signed, tonemap
from gmodiff.models.backbone import BackboneConfig, load_backbone, save_backbone_folder
from gmodiff.train.data import TrainDataConfig
from gmodiff.train.loop import RunConfig, Stage, load_yaml_config, run_stage


@dataclass
class PriorTrainConfig(TrainDataConfig, RunConfig):
    """One stage-0 run (a YAML file under ``configs/``). Paths are relative to the cwd."""

    # -- training data (the other data fields come from TrainDataConfig) --
    simulated_items: int = 2000
    val_simulated: int = 4
    # -- what is trained --
    seed: int = 0
    """Seed of the tiny backbone's initialisation and of the data order."""
    dareg_weights: str | None = None
    """DaReg whose gain maps are the UNet's coarse inputs (None: degraded ground truth only)."""
    vae_widths: list[int] | None = None
    """The tiny VAE's four level widths (None: the tiny default 16, 16, 32, 32)."""
    vae_steps: int = 1500
    unet_steps: int = 1500
    kl_weight: float = 1.0e-6
    noise_fraction: float = 0.3
    """Share of UNet batches that use the forward-noised latent instead of a coarse gain map."""
    # -- optimisation --
    lr: float = 5.0e-4
    grad_clip: float = 1.0
    checkpoint_every: int = 100
    keep_last: int = 2
    out_dir: str = "runs/prior"

    def __post_init__(self) -> None:
        if self.vae_steps < 0 or self.unet_steps < 0 or self.vae_steps + self.unet_steps == 0:
            raise ConfigError("vae_steps and unet_steps must be ≥ 0 and not both 0")
        if not 0.0 <= self.noise_fraction <= 1.0:
            raise ConfigError(f"noise_fraction must be in [0, 1], got {self.noise_fraction}")
        if self.crop_size % 32:
            raise ConfigError(f"crop_size must be a multiple of 32, got {self.crop_size}")

    @property
    def max_steps(self) -> int:
        """Both phases."""
        return self.vae_steps + self.unet_steps

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> PriorTrainConfig:
        """Load from YAML; non-None ``overrides`` (CLI flags) win."""
        return load_yaml_config(cls, path, **overrides)


class TinyPrior(nn.Module):
    """The trained pieces (VAE + UNet) as one module, for checkpoints."""

    def __init__(self, seed: int = 0, vae_widths: tuple[int, ...] | None = None):
        super().__init__()
        backbone = load_backbone(BackboneConfig(kind="tiny", seed=seed, vae_widths=vae_widths))
        self.vae = backbone.vae
        self.unet = backbone.unet
        self.scheduler = backbone.scheduler

    def save_folder(self, path: str | Path) -> Path:
        """Write the diffusers folder ``load_backbone`` reads (unet/, vae/, scheduler/)."""
        from gmodiff.models.backbone import Backbone

        backbone = Backbone(self.unet, self.vae, self.vae, self.scheduler, BackboneConfig(kind="tiny"))
        return save_backbone_folder(backbone, path)


# -- phase 1: VAE ------------------------------------------------------------------------------


def vae_loss(vae, batch: dict, kl_weight: float, generator: torch.Generator | None = None):
    """Autoencoding loss on signed gain maps and LDR frames; returns (loss, parts)."""
    gm = to_signed(batch["gt_gain_map"])
    ldr = to_signed(torch.cat([batch["ldr_short"], batch["ldr_ref"]], 0))
    images = torch.cat([gm, ldr], 0)
    posterior = vae.encode(images).latent_dist
    recon = vae.decode(posterior.sample(generator)).sample
    l1 = F.l1_loss(recon, images)
    gm_recon = from_signed(recon[: gm.shape[0]].clamp(-1, 1))
    hdr = decode_gain_map(gm_recon, batch["ldr_ref"])
    l1_mu = F.l1_loss(tonemap(hdr), tonemap(batch["gt_hdr"]))
    kl = posterior.kl().mean()
    return l1 + l1_mu + kl_weight * kl, {"l1": l1.item(), "l1_mu": l1_mu.item(), "kl": kl.item()}


# -- phase 2: UNet -----------------------------------------------------------------------------


def degrade_gain_map(gm: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A coarse stand-in for a regressor's gain map: blur plus noise (values in [0, 1])."""
    batch = gm.shape[0]
    sigma = torch.rand(batch, 1, 1, 1, generator=generator) * 0.05
    blurred = F.avg_pool2d(gm, 5, stride=1, padding=2, count_include_pad=False)
    amount = torch.rand(batch, 1, 1, 1, generator=generator)
    noisy = gm + (blurred - gm) * amount + sigma * torch.randn(gm.shape, generator=generator)
    return noisy.clamp(0, 1)


def _alpha_bar(scheduler, timestep: int) -> float:
    return float(scheduler.alphas_cumprod[timestep])


def unet_loss(prior: TinyPrior, batch: dict, coarse: torch.Tensor, noise_fraction: float,
              generator: torch.Generator, timestep: int = 499):
    """MSE between the UNet's ε and the ε that makes the x0 estimate the clean GM latent."""
    scale = prior.vae.config.scaling_factor
    with torch.no_grad():
        z0 = prior.vae.encode(to_signed(batch["gt_gain_map"])).latent_dist.mode() * scale
        z_coarse = prior.vae.encode(to_signed(coarse)).latent_dist.mode() * scale
    a = _alpha_bar(prior.scheduler, timestep)
    noised = math.sqrt(a) * z0 + math.sqrt(1 - a) * torch.randn(z0.shape, generator=generator)
    use_noise = (torch.rand(z0.shape[0], 1, 1, 1, generator=generator) < noise_fraction).float()
    x_t = use_noise * noised + (1 - use_noise) * z_coarse
    target = (x_t - math.sqrt(a) * z0) / math.sqrt(1 - a)
    context = _null_context(prior, x_t)
    t = torch.full((x_t.shape[0],), timestep, dtype=torch.long)
    eps = prior.unet(x_t, t, encoder_hidden_states=context).sample
    loss = F.mse_loss(eps, target)
    return loss, {"mse_eps": loss.item()}


def _null_context(prior: TinyPrior, latent: torch.Tensor) -> torch.Tensor:
    # No conditioning yet: zero tokens (one per 32×32 image px, as the refiner's projection gives).
    tokens = max(1, (latent.shape[-2] // 4) * (latent.shape[-1] // 4))
    return torch.zeros(latent.shape[0], tokens, prior.unet.config.cross_attention_dim)


def one_step(prior: TinyPrior, gm: torch.Tensor, timestep: int = 499) -> torch.Tensor:
    """The prior alone as a one-step refiner: GM in [0, 1] → encode → x0 estimate → decode."""
    scale = prior.vae.config.scaling_factor
    z = prior.vae.encode(to_signed(gm)).latent_dist.mode() * scale
    t = torch.full((z.shape[0],), timestep, dtype=torch.long)
    eps = prior.unet(z, t, encoder_hidden_states=_null_context(prior, z)).sample
    a = _alpha_bar(prior.scheduler, timestep)
    x0 = (z - math.sqrt(1 - a) * eps) / math.sqrt(a)
    return from_signed(prior.vae.decode(x0 / scale).sample.clamp(-1, 1))


@torch.no_grad()
def validate(prior: TinyPrior, dataset: Dataset, dareg=None) -> dict:
    """PSNR-μ of HDR decoded from: VAE-reconstructed GT gain maps, and (with DaReg) DaReg alone
    vs DaReg + the prior's one step."""
    from gmodiff.metrics import psnr_mu

    was = prior.training
    prior.eval()
    totals: dict[str, float] = {}

    def add(key: str, gm: torch.Tensor, item: dict) -> None:
        hdr = decode_gain_map(gm.float(), item["ldr_ref"][None])[0].permute(1, 2, 0).numpy()
        gt = item["gt_hdr"].permute(1, 2, 0).numpy()
        totals[key] = totals.get(key, 0.0) + float(psnr_mu(hdr, gt))

    for index in range(len(dataset)):
        item = dataset[index]
        gt_gm = item["gt_gain_map"][None]
        recon = from_signed(prior.vae.decode(
            prior.vae.encode(to_signed(gt_gm)).latent_dist.mode()).sample.clamp(-1, 1))
        add("vae_psnr_mu", recon, item)
        if dareg is not None:
            coarse = dareg(item["inputs"][None]).gain_map
            add("dareg_psnr_mu", coarse, item)
            add("one_step_psnr_mu", one_step(prior, coarse), item)
    prior.train(was)
    return {k: v / max(len(dataset), 1) for k, v in totals.items()}


# -- the loop ----------------------------------------------------------------------------------


def _load_dareg(path: str | None):
    if not path:
        return None
    from gmodiff.models.dareg import DaReg

    dareg = DaReg.from_pretrained(path)
    return dareg.requires_grad_(False).eval()


class PriorStage(Stage):
    """Stage 0 for :func:`run_stage`: the tiny VAE, then the tiny UNet at t = 499."""

    description = "tiny prior (stage 0)"

    def __init__(self, config: PriorTrainConfig):
        self.config = config

    def build(self, device: torch.device) -> None:
        """The tiny backbone, the optional DaReg, Adam and a private noise generator."""
        self.module = TinyPrior(self.config.seed, self.config.vae_widths)
        self.dareg = _load_dareg(self.config.dareg_weights)
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=self.config.lr)
        # A private generator for the noise/degradations, saved in checkpoints: exact resume.
        self.generators = {"noise": torch.Generator().manual_seed(self.config.seed + 1)}

    def prepare(self, accelerator) -> None:
        """One process only: the losses call the VAE and UNet directly, not through DDP."""
        if accelerator.num_processes > 1:
            raise ConfigError("the tiny prior trains on one process",
                              fix="run `gmodiff train prior` without accelerate launch")
        super().prepare(accelerator)

    def phase(self, step: int) -> str:
        """"vae" for the first ``vae_steps`` steps, then "unet"."""
        return "vae" if step < self.config.vae_steps else "unet"

    def train_step(self, batch: dict, step: int, accelerator) -> tuple[torch.Tensor, dict]:
        """The phase's loss on the batch, a clipped Adam step."""
        generator = self.generators["noise"]
        prior = self.train_module
        if self.phase(step) == "vae":
            loss, parts = vae_loss(prior.vae, batch, self.config.kl_weight, generator)
        else:
            if self.dareg is not None:
                with torch.no_grad():
                    coarse = self.dareg(batch["inputs"]).gain_map
            else:
                coarse = degrade_gain_map(batch["gt_gain_map"], generator)
            loss, parts = unet_loss(prior, batch, coarse, self.config.noise_fraction, generator)
        self.optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_([p for p in self.module.parameters() if p.grad is not None],
                                    self.config.grad_clip)
        self.optimizer.step()
        return loss, parts

    def validate(self, dataset: Dataset, step: int, device: torch.device) -> dict:
        """VAE reconstruction PSNR, and DaReg vs DaReg + one step once the UNet trains."""
        return validate(self.module, dataset, self.dareg if step > self.config.vae_steps else None)

    def boundary(self, step: int) -> bool:
        """The switch from the VAE phase to the UNet phase."""
        return step == self.config.vae_steps

    def log_extra(self, step: int) -> dict:
        """The phase of the step about to run."""
        return {"phase": self.phase(step)}

    def checkpoint_extra(self, step: int) -> dict:
        """The phase of the last step run."""
        return {"phase": self.phase(step - 1)}

    def save_final(self, path: Path) -> None:
        """A diffusers folder (unet/, vae/, scheduler/) that ``--backbone`` reads."""
        self.module.eval()
        self.module.save_folder(path)


def train_prior(config: PriorTrainConfig, resume: bool = False,
                train_dataset: Dataset | None = None, val_dataset: Dataset | None = None,
                progress: bool = True) -> dict:
    """Run (or resume) stage 0; writes ``<out_dir>/final`` (a diffusers backbone folder)."""
    return run_stage(PriorStage(config), resume, train_dataset, val_dataset, progress)
