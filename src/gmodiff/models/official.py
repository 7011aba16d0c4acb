"""Loader for the reference code's released refiner checkpoint ``gmodiff.pkl`` (spec §7).

The file is a torch pickle of one dict:

- ``unet_lora_{encoder,decoder,others}_modules``, ``vae_lora_{encoder,decoder}_modules``,
  ``vae_c_lora_encoder_modules``: the module names each LoRA adapter was put on;
- ``rank_unet``, ``rank_vae``, ``rank_vae_c``: LoRA ranks (alpha is not stored: 8);
- ``state_dict_unet`` (LoRA + ``conv_in``), ``state_dict_vae`` (LoRA + ``decoder.skip_conv_k``),
  ``state_dict_vae_c`` (LoRA; plus unused decoder skip convs), ``proj`` (projection state).

Our module tree and adapter names (``default_encoder``/``default_decoder``/``default_others``)
follow the reference, so keys map one for one after a prefix; the adapters are built from the
file's own module lists and ranks. Nothing is downloaded: the SD-2.1 backbone comes from a local
folder and the checkpoint from a local path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gmodiff.errors import CheckpointError
from gmodiff.models.backbone import Backbone, BackboneConfig, load_backbone
from gmodiff.models.checkpoints import state_dict_differences
from gmodiff.models.refiner import GMRefiner, RefinerConfig

OFFICIAL_LORA_ALPHA = 8.0
"""peft's default alpha, which the reference code used without storing it."""

# checkpoint list key → our RefinerConfig.target_modules key
_LISTS = {
    "unet_lora_encoder_modules": "unet_default_encoder",
    "unet_lora_decoder_modules": "unet_default_decoder",
    "unet_lora_others_modules": "unet_default_others",
    "vae_lora_encoder_modules": "vae_default_encoder",
    "vae_lora_decoder_modules": "vae_default_decoder",
    "vae_c_lora_encoder_modules": "vae_cond_default_encoder",
}
# checkpoint state-dict key → our sub-module prefix
_STATES = {"state_dict_unet": "unet.", "state_dict_vae": "vae.", "state_dict_vae_c": "vae_cond.",
           "proj": "proj."}
_RANKS = ("rank_unet", "rank_vae", "rank_vae_c")


def read_official_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read ``gmodiff.pkl`` (tensors, lists and ints only) and check its top-level keys."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint not found", path, "pass the path of the released gmodiff.pkl")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(f"cannot read the checkpoint ({type(exc).__name__})", path,
                              "re-download gmodiff.pkl; it must be the reference refiner checkpoint") from exc
    check_official_layout(payload, path)
    return payload


def check_official_layout(payload: Any, source: str | Path | None = None) -> None:
    """Raise CheckpointError unless ``payload`` has every key of the gmodiff.pkl layout."""
    if not isinstance(payload, dict):
        raise CheckpointError("not a gmodiff.pkl dict", source, "pass the reference refiner checkpoint")
    missing = [k for k in (*_LISTS, *_STATES, *_RANKS) if k not in payload]
    if missing:
        raise CheckpointError(f"not the gmodiff.pkl layout: missing {missing}", source,
                              "pass the reference refiner checkpoint (dareg_mask.pth is DaReg's)")


def _dedupe(names) -> list[str]:
    # The reference builds its lists by substring search, so a module can appear twice.
    return list(dict.fromkeys(str(n) for n in names))


def official_refiner_config(payload: dict[str, Any]) -> RefinerConfig:
    """RefinerConfig matching a checkpoint: ranks, alpha 8, LoRA lists, projection widths."""
    proj = payload["proj"]
    try:
        mid = proj["mask_encoder.1.weight"].shape[0]
        out = proj["mask_encoder.4.weight"].shape[0]
        token_channels = proj["mlp.0.weight"].shape[1] - out
    except KeyError as exc:
        raise CheckpointError(f"projection state lacks {exc}", None,
                              "the checkpoint is not in the gmodiff.pkl layout") from exc
    return RefinerConfig(
        rank_unet=int(payload["rank_unet"]),
        rank_vae=int(payload["rank_vae"]),
        rank_vae_cond=int(payload["rank_vae_c"]),
        lora_alpha=OFFICIAL_LORA_ALPHA,
        token_channels=int(token_channels),
        mask_channels=(int(mid), int(out)),
        target_modules={ours: _dedupe(payload[theirs]) for theirs, ours in _LISTS.items()},
    )


def official_state_dict(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors renamed into our refiner's key space."""
    state: dict[str, torch.Tensor] = {}
    for key, prefix in _STATES.items():
        for name, tensor in payload[key].items():
            if key == "state_dict_vae_c" and "skip" in name:
                continue  # the condition VAE's decoder (and its skips) is never used
            state[prefix + name] = tensor
    return state


def load_official_refiner(checkpoint: str | Path | dict[str, Any],
                          backbone: Backbone | BackboneConfig | str | Path) -> GMRefiner:
    """A refiner on ``backbone`` (normally a local SD-2.1-base folder) with the checkpoint's weights."""
    source = checkpoint if not isinstance(checkpoint, dict) else None
    payload = read_official_checkpoint(checkpoint) if source is not None else checkpoint
    if source is None:
        check_official_layout(payload)
    config = official_refiner_config(payload)
    if not isinstance(backbone, Backbone):
        backbone = load_backbone(backbone)
    try:
        refiner = GMRefiner(backbone, config)
    except ValueError as exc:  # peft: a listed module does not exist in this backbone
        raise CheckpointError(f"checkpoint modules do not fit the backbone ({exc})", source,
                              "use the stable-diffusion-2-1-base backbone the checkpoint was trained on") from exc
    state = official_state_dict(payload)
    expected = refiner.trainable_state_dict()
    missing, unexpected, mismatched = state_dict_differences(expected, state)
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"checkpoint does not fit (missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"shape mismatch {mismatched[:3]} of {len(expected)} keys)", source,
            "use the stable-diffusion-2-1-base backbone and DaReg token width the checkpoint expects")
    refiner.load_state_dict(state, strict=False)
    return refiner.eval()


def export_official_checkpoint(refiner: GMRefiner) -> dict[str, Any]:
    """Our refiner as a gmodiff.pkl-layout dict (for tests and for sharing with the reference code)."""
    targets = refiner.target_modules
    payload: dict[str, Any] = {theirs: list(targets[ours]) for theirs, ours in _LISTS.items()}
    payload.update(rank_unet=refiner.config.rank_unet, rank_vae=refiner.config.rank_vae,
                   rank_vae_c=refiner.config.rank_vae_cond)
    trainable = refiner.trainable_state_dict()
    for key, prefix in _STATES.items():
        payload[key] = {k[len(prefix):]: v.detach().cpu().clone()
                        for k, v in trainable.items() if k.startswith(prefix)}
    return payload
