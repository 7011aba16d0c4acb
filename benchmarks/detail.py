"""Where fine detail (grass, foliage) is lost: a sharpness figure at each stage of the pipeline.

Brackets: those of ``benchmarks/sdr.py`` (simulated from held-out panoramas with ``gmodiff
simulate``, plus the bundled sample) and two "textured" ones: a sunrise and a venice view whose
radiance below the horizon is multiplied by pixel-scale texture (white noise blurred by 0.7 px,
±0.35 stops, like grass) before ``gmodiff simulate`` makes brackets of it. The panorama views
themselves are ~2× upsampled (a 1024-px panorama cut at 70°), so their ground truth has almost
no pixel-scale detail and only the textured brackets can show detail being lost. Default model,
CPU. Two figures on the high-pass ``x − GaussianBlur(x, σ=1 px)``, over the pixels where the
reference frame is well exposed (every channel in 0.1..0.9, eroded 2 px):

- **HF energy ratio**: a stage's high-pass energy over the ground truth's (noise counts too);
- **HF transfer**: the regression slope of the stage's high-pass on the ground truth's, i.e.
  how much of the true fine detail survives (1 = all, 0.5 = half its amplitude; noise, being
  uncorrelated with the truth, does not raise it).

HDR stages are compared on μ-law luminance (μ = 5000, the PSNR-μ domain); the SDR pictures on
their 8-bit luma against the same rendition of the ground truth. Stages:

- ``reference frame``: the reference LDR frame linearised with gamma 2.2 (noise counts as detail);
- ``DaReg``: the regressor's gain map decoded (``--no-refine``);
- ``refined``: the default output (DaReg + one-step refiner behind its residual gate);
- ``Ultra HDR``: the default output written as Ultra HDR JPEG and decoded (the gain-map codec);
- ``SDR old`` / ``SDR new``: the old Reinhard preview and the new rendition, each over the same
  rendition of the ground truth.

Writes ``benchmarks/results/detail.md``. Run: ``python benchmarks/detail.py [--work DIR]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when loaded by file path
from run_info import made_by  # noqa: E402
from sdr import make_brackets, old_reinhard  # noqa: E402

from gmodiff.gainmap import mu_expand  # noqa: E402
from gmodiff.io.tonemap import render_sdr  # noqa: E402
from gmodiff.metrics.quality import psnr_mu  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "detail.md"
LUMA = np.array([0.2126, 0.7152, 0.0722])
STAGES = ("reference frame", "DaReg", "refined", "Ultra HDR", "SDR old", "SDR new")


def _high_pass(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x - cv2.GaussianBlur(x, (0, 0), 1.0)


def _mu_luma(hdr: np.ndarray) -> np.ndarray:
    return np.log1p(5000 * np.clip(hdr, 0, 1)) @ LUMA / np.log1p(5000)


def well_exposed(reference: np.ndarray) -> np.ndarray:
    mask = np.all((reference >= 0.1) & (reference <= 0.9), axis=-1).astype(np.uint8)
    return cv2.erode(mask, np.ones((5, 5), np.uint8)).astype(bool)


def hf_ratio(picture: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """High-frequency energy of ``picture`` over ``truth`` on ``mask`` (2-D arrays)."""
    return float((_high_pass(picture)[mask] ** 2).sum() / max((_high_pass(truth)[mask] ** 2).sum(), 1e-12))


def hf_transfer(picture: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """Slope of the high-pass of ``picture`` regressed on that of ``truth`` over ``mask``."""
    hp_truth, hp_picture = _high_pass(truth)[mask], _high_pass(picture)[mask]
    return float((hp_picture * hp_truth).sum() / max((hp_truth ** 2).sum(), 1e-12))


def textured_brackets(work: Path, folders: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """Brackets simulated from two views' ground truth with grass-like texture below the horizon."""
    import os
    import subprocess

    from gmodiff.io.hdr import read_hdr, write_hdr

    out = []
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for label, folder in [folders[0], folders[3]]:
        name = f"textured_{folder.name}"
        target = work / name
        if not target.is_dir():
            radiance = read_hdr(folder / "HDRImg.hdr")
            rng = np.random.default_rng(7)
            noise = cv2.GaussianBlur(rng.standard_normal(radiance.shape[:2]), (0, 0), 0.7)
            noise *= 0.35 / noise.std()
            ground = np.zeros(radiance.shape[:2])
            ground[int(radiance.shape[0] * 0.45):] = 1.0
            textured = radiance * np.exp2(noise * ground)[..., None]
            source = work / f"{name}.hdr"
            write_hdr(source, textured.astype(np.float32))
            subprocess.run([sys.executable, "-m", "gmodiff", "simulate", str(source), str(target),
                            "--seed", "2", "--no-progress"], check=True, env=env, capture_output=True)
        scene_folder = sorted(p for p in target.iterdir() if p.is_dir())[0]
        out.append((f"{label.split(':')[0]} + grass texture", scene_folder))
    return out


def stages(scene, refine_fn=None) -> dict[str, np.ndarray]:
    """HDR of each stage for one scene, with the default model (``refine_fn`` post-processes
    the refined gain map, for trying a fix)."""
    from gmodiff.io.ultrahdr import encode_ultrahdr, read
    from gmodiff.pipeline.pipeline import bundled_pipeline
    from gmodiff.methods import reconstruct_scene

    result = reconstruct_scene(scene, "gmodiff", weights=bundled_pipeline())
    # Both maps decode against the same reference: H ∝ C⁻¹(GM), so the DaReg stage's HDR is the
    # refined HDR times the ratio of the two expanded maps.
    fine, coarse = mu_expand(result.gain_map.astype(np.float64)), mu_expand(result.coarse_gain_map.astype(np.float64))
    dareg = (result.hdr * coarse / np.maximum(fine, 1e-9)).astype(np.float32)
    gain = float(scene.exposure_times[scene.reference_index])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.jpg"
        path.write_bytes(encode_ultrahdr(result.hdr, gain))
        uhdr = read(path).radiance
    t_ref = float(scene.exposure_times[scene.reference_index]) / float(scene.exposure_times[0])
    reference = (np.asarray(scene.reference, np.float64) ** 2.2 / t_ref).astype(np.float32)
    return {"reference frame": reference, "DaReg": dareg, "refined": result.hdr, "Ultra HDR": uhdr}


def figures(scene, hdrs: dict[str, np.ndarray]) -> dict[str, float]:
    truth = scene.ground_truth
    mask = well_exposed(np.asarray(scene.reference))
    gain = float(scene.exposure_times[scene.reference_index])
    pictures = {name: (_mu_luma(hdrs[name]), _mu_luma(truth)) for name in STAGES[:4]}
    pictures["SDR old"] = (old_reinhard(hdrs["refined"], gain) @ LUMA, old_reinhard(truth, gain) @ LUMA)
    pictures["SDR new"] = (render_sdr(hdrs["refined"], gain) @ LUMA, render_sdr(truth, gain) @ LUMA)
    out = {}
    for name, (picture, reference) in pictures.items():
        out[name] = hf_ratio(picture, reference, mask)
        out[f"transfer {name}"] = hf_transfer(picture, reference, mask)
    for name in ("DaReg", "refined", "Ultra HDR"):
        out[f"psnr {name}"] = psnr_mu(hdrs[name], truth)
    out["mask %"] = float(mask.mean() * 100)
    return out


def main() -> None:
    from gmodiff.io.scene import load_scene

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="keep brackets here")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        folders = make_brackets(work)
        for label, folder in folders + textured_brackets(work, folders):
            scene = load_scene(folder)
            rows[label] = figures(scene, stages(scene))
            print(label, {k: round(v, 3) for k, v in rows[label].items()}, flush=True)
    header = "| bracket | well-exposed % | " + " | ".join(STAGES) + " | PSNR-μ DaReg / refined / Ultra HDR |"
    rule = "|---|---:|" + "---:|" * len(STAGES) + "---|"
    lines = [
        "# Fine detail through the pipeline: high-frequency energy ratio to the ground truth",
        "",
        made_by("`python benchmarks/detail.py`", time.perf_counter() - start),
        "",
        __doc__.split("\n\n", 1)[1].split("Writes")[0].strip(),
        "",
    ]
    for title, prefix in (("HF transfer (1 = all the true fine detail kept)", "transfer "),
                          ("HF energy ratio (noise included)", "")):
        lines += ["", f"**{title}**", "", header, rule]
        for label, f in rows.items():
            lines.append(f"| {label} | {f['mask %']:.0f} | "
                         + " | ".join(f"{f[prefix + s]:.2f}" for s in STAGES)
                         + f" | {f['psnr DaReg']:.2f} / {f['psnr refined']:.2f} / {f['psnr Ultra HDR']:.2f} |")
        means = {s: np.mean([f[prefix + s] for f in rows.values()]) for s in STAGES}
        lines.append("| **mean** | | " + " | ".join(f"**{means[s]:.2f}**" for s in STAGES) + " | |")
    textured = [f for label, f in rows.items() if "texture" in label]

    def mean(key: str) -> float:
        return float(np.mean([f[key] for f in textured]))

    lines += ["", (
        "Reading (textured brackets): the true fine detail's amplitude is "
        f"{mean('transfer reference frame'):.2f} in the reference frame, "
        f"{mean('transfer DaReg'):.2f} after DaReg, {mean('transfer refined'):.2f} after the "
        f"refiner, {mean('transfer Ultra HDR'):.2f} through the Ultra HDR gain-map codec and "
        f"{mean('transfer SDR new'):.2f} in the new SDR rendition (old: "
        f"{mean('transfer SDR old'):.2f}). So detail is lost in the **DaReg stage** (its "
        "full-resolution regression smooths pixel-scale texture along with noise); the refiner's "
        "latent (residual-gated, so DaReg's fine detail passes through), the gain-map codec and "
        "the tone curve lose none. No cheap fix without retraining was made for it: restoring "
        "the reference frame's high frequencies in its well-exposed areas would also restore its "
        "noise and needs the PSNR-μ check on the held-out benchmark.")]
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
