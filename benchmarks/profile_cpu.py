"""Where ``gmodiff reconstruct`` spends its time on CPU: per stage, per layer type, and the limit.

For each size (megapixels, 4:3) a synthetic three-JPEG bracket (``memory.write_bracket``) is read,
aligned and reconstructed with the bundled default pipeline exactly as the CLI does (memory plan,
tiles), with every stage wrapped in a timer that books *self* time (a stage's nested stages are
not counted twice). Then:

- import times of the heavy modules, each in a fresh interpreter;
- one DaReg tile and one refiner forward under ``torch.profiler`` (time per operator type, and
  FLOPs of the convolutions and matrix products, per pixel);
- the "limit": measured GFLOP/s of one large 3×3 convolution at the width that dominates
  (the best this CPU does on the same kind of work), and the time the counted FLOPs would take
  at that rate.

Writes ``benchmarks/results/profile.md`` (and ``profile.json``). Not named ``profile.py``: that
would shadow the standard library's ``profile`` (torch imports it through cProfile) for every
benchmark that puts this folder on ``sys.path``.

    nice -n 10 python benchmarks/profile_cpu.py --sizes 1,3
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when loaded by file path
from memory import write_bracket  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "profile.md"
RAW = RESULTS.with_suffix(".json")
IMPORTS = ("numpy", "cv2", "torch", "safetensors.torch", "diffusers", "peft", "gmodiff.cli",
           "gmodiff.methods", "gmodiff.pipeline.pipeline")


def import_seconds(module: str, repeats: int = 3) -> float:
    """Fastest wall time of ``import module`` in a fresh interpreter (its dependencies included)."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                             check=True)
        runs.append(float(out.stdout.strip().splitlines()[-1]))
    return min(runs)


class StageTimer:
    """Books wall time to named stages, self time only: a stage entered inside another pauses it."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list] = []  # [name, started, child seconds]

    def wrap(self, owner, attribute: str, name: str) -> None:
        """Replace ``owner.attribute`` (a function or method) with a timed one."""
        original = getattr(owner, attribute)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            self._stack.append([name, time.perf_counter(), 0.0])
            try:
                return original(*args, **kwargs)
            finally:
                stage, started, children = self._stack.pop()
                total = time.perf_counter() - started
                self.seconds[stage] += total - children
                self.calls[stage] += 1
                if self._stack:
                    self._stack[-1][2] += total

        setattr(owner, attribute, timed)


def instrument(timer: StageTimer) -> None:
    """Wrap the stages of the default road (names as in the report)."""
    import gmodiff.baselines.merge as merge
    import gmodiff.camera.calibration as calibration
    import gmodiff.inputs.canonical as canonical
    import gmodiff.gainmap as gainmap
    import gmodiff.pipeline.pipeline as pipeline
    import gmodiff.inputs.encode as preprocess
    import gmodiff.tiling as tiling
    from gmodiff.models.dareg import DaReg
    from gmodiff.models.refiner import GMRefiner

    timer.wrap(calibration, "estimate_response", "curve estimate")
    timer.wrap(canonical, "canonical_frames", "canonical re-encoding")
    timer.wrap(merge, "plan_deghost", "merge: warps + mappings (once per bracket)")
    timer.wrap(merge, "deghost_merge", "merge: deghost (per tile)")
    timer.wrap(gainmap, "encode_gain_map", "merge: gain-map encode")
    timer.wrap(preprocess, "stack_frames", "input stacking")
    timer.wrap(DaReg, "forward", "DaReg network")
    timer.wrap(tiling.TileBlender, "add", "tile blending")
    timer.wrap(GMRefiner, "context", "refiner: prior projection")
    timer.wrap(GMRefiner, "encode_gain_map", "refiner: GM VAE encoder")
    timer.wrap(GMRefiner, "encode_condition", "refiner: condition VAE encoder")
    timer.wrap(GMRefiner, "_encode_tiled", "refiner: VAE encoders (tiled)")
    timer.wrap(GMRefiner, "predict_noise", "refiner: UNet")
    timer.wrap(GMRefiner, "decode", "refiner: DA decoder")
    timer.wrap(pipeline, "decode_gain_map", "gain-map decode")


def run_stages(paths: list[Path], out_dir: Path) -> dict:
    """Read, align, reconstruct and write one bracket in this process, stage by stage."""
    start = time.perf_counter()
    from gmodiff.bracket.prepare import BracketOptions, load_bracket
    from gmodiff.io.output import write_output
    from gmodiff.methods import GMODiffMethod, ReconstructOptions, clear_loaded
    from gmodiff.bracket.align import align_scene

    timer = StageTimer()
    instrument(timer)
    stages: dict[str, float] = {"imports (gmodiff + torch + diffusers + peft)": time.perf_counter() - start}
    begin = time.perf_counter()
    scene, _ = load_bracket(paths, BracketOptions(ev=[-2.0, 0.0, 2.0]))
    stages["read JPEGs"] = time.perf_counter() - begin
    begin = time.perf_counter()
    scene, _ = align_scene(scene, "ecc")
    stages["alignment (ECC, whole image)"] = time.perf_counter() - begin
    clear_loaded()
    begin = time.perf_counter()
    method = GMODiffMethod(ReconstructOptions())  # CLI defaults: LoRA fused, channels_last
    stages["model build + weights"] = time.perf_counter() - begin
    begin = time.perf_counter()
    result = method.reconstruct(scene, ReconstructOptions())
    reconstruct_s = time.perf_counter() - begin
    stages.update(timer.seconds)
    stages["reconstruct: other (padding, crops, copies)"] = reconstruct_s - sum(timer.seconds.values())
    for suffix in (".jpg", ".exr"):
        begin = time.perf_counter()
        write_output(out_dir / f"out{suffix}", result.hdr)
        stages[f"write {suffix}"] = time.perf_counter() - begin
    import torch

    return {"stages": stages, "calls": dict(timer.calls), "reconstruct_s": reconstruct_s,
            "pixels": scene.height * scene.width, "size": f"{scene.width}×{scene.height}",
            "threads": torch.get_num_threads()}


def operator_profile(side: int) -> dict:
    """One DaReg forward and one refiner forward at side×side under torch.profiler: self CPU time
    and FLOPs per operator type."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from gmodiff.pipeline.pipeline import load_pipeline

    pipe = load_pipeline("default").optimise_for_cpu()  # as the CLI runs it
    g = torch.Generator().manual_seed(0)
    inputs = torch.rand(1, 4, 6, side, side, generator=g)
    results = {}
    with torch.no_grad():
        pipe.dareg(inputs)  # warm-up
        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            out = pipe.dareg(inputs)
        results["DaReg"] = _table(prof, side * side)
        gm = out.gain_map * 2 - 1
        short = torch.rand(1, 3, side, side, generator=g) * 2 - 1
        mask = out.mask
        pipe.refiner(gm, short, mask, out.tokens)
        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            pipe.refiner(gm, short, mask, out.tokens)
        results["refiner"] = _table(prof, side * side)
    return results


def _table(prof, pixels: int) -> dict:
    rows = []
    for event in prof.key_averages():
        rows.append({"op": event.key, "self_s": event.self_cpu_time_total / 1e6,
                     "calls": event.count, "flops": float(event.flops or 0)})
    rows.sort(key=lambda r: -r["self_s"])
    total = sum(r["self_s"] for r in rows)
    flops = sum(r["flops"] for r in rows)
    return {"rows": rows[:12], "total_s": total, "flops": flops, "flops_per_px": flops / pixels}


def conv_limit(channels: int, side: int, repeats: int = 5) -> dict:
    """GFLOP/s of one 3×3 conv channels→channels at side×side (fp32, and bf16 when it is faster)."""
    import torch

    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).eval()
    x = torch.rand(1, channels, side, side)
    flops = 2 * channels * channels * 9 * side * side
    out = {}
    with torch.inference_mode():
        for name, fn in (("fp32", lambda: conv(x)),
                         ("fp32 channels_last", functools.partial(
                             conv.to(memory_format=torch.channels_last),
                             x.contiguous(memory_format=torch.channels_last)))):
            fn()
            best = min(_seconds(fn) for _ in range(repeats))
            out[name] = flops / best / 1e9
        conv = conv.to(memory_format=torch.contiguous_format)
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                conv(x)
                best = min(_seconds(lambda: conv(x)) for _ in range(repeats))
            out["bf16 autocast"] = flops / best / 1e9
        except RuntimeError:
            pass
    return {"channels": channels, "side": side, "gflops": out}


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def write_report(report: dict) -> None:
    lines = ["# CPU profile of `gmodiff reconstruct` (bundled default pipeline)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other agents "
             f"(load average {report['load']}) — absolute times are noisy and pessimistic; "
             "the split and the ratios are the point. torch threads: "
             f"{report['runs'][0]['threads'] if report['runs'] else '?'}. Commit {report['commit']}.",
             ""]
    lines += ["## Imports (fresh interpreter each, fastest of 3, dependencies included)", "",
              "| module | s |", "|---|---|"]
    lines += [f"| `{m}` | {s:.2f} |" for m, s in report["imports"].items()]
    for run in report["runs"]:
        lines += ["", f"## Stages at {run['size']} ({run['pixels'] / 1e6:.1f} MP), one process",
                  "", "| stage | s | share of reconstruct | calls |", "|---|---|---|---|"]
        for name, seconds in sorted(run["stages"].items(), key=lambda kv: -kv[1]):
            share = (f"{seconds / run['reconstruct_s']:.0%}"
                     if name not in _OUTSIDE and not name.startswith("write") else "")
            lines.append(f"| {name} | {seconds:.2f} | {share} | {run['calls'].get(name, '')} |")
        lines.append(f"| **reconstruct total** | **{run['reconstruct_s']:.2f}** | | |")
    ops = report.get("operators")
    if ops:
        lines += ["", f"## Operators (torch.profiler, one forward at {ops['side']}², self CPU time)"]
        for model in ("DaReg", "refiner"):
            table = ops[model]
            lines += ["", f"### {model}: {table['total_s']:.2f} s, "
                      f"{table['flops'] / 1e9:.1f} GFLOP counted ({table['flops_per_px'] / 1e3:.0f} "
                      f"kFLOP/px)", "", "| operator | self s | share | calls | GFLOP |",
                      "|---|---|---|---|---|"]
            for row in table["rows"]:
                lines.append(f"| `{row['op']}` | {row['self_s']:.3f} | "
                             f"{row['self_s'] / table['total_s']:.0%} | {row['calls']} | "
                             f"{row['flops'] / 1e9:.2f} |")
    limit = report.get("limit")
    if limit:
        lines += ["", f"## Limit: one 3×3 conv {limit['channels']}→{limit['channels']} at "
                  f"{limit['side']}²", "", "| variant | GFLOP/s |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in limit["gflops"].items()]
        best = max(limit["gflops"].values())
        if ops:
            per_px = ops["DaReg"]["flops_per_px"] + ops["refiner"]["flops_per_px"]
            lines += ["", f"DaReg + refiner count {per_px / 1e3:.0f} kFLOP per pixel; at the best "
                      f"conv rate ({best:.0f} GFLOP/s) that is **{per_px * 1e6 / best / 1e9:.2f} s "
                      f"per MP** and {per_px * 12e6 / best / 1e9:.1f} s at 12 MP — the compute "
                      "floor of the network part, before memory traffic."]
    lines += ["", report.get("notes", "")]
    RESULTS.write_text("\n".join(lines).rstrip() + "\n")


_OUTSIDE = ("imports (gmodiff + torch + diffusers + peft)", "read JPEGs",
            "alignment (ECC, whole image)", "model build + weights")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1", help="megapixels, comma-separated")
    parser.add_argument("--op-side", type=int, default=512, help="side of the profiled forward")
    parser.add_argument("--skip-imports", action="store_true")
    parser.add_argument("--notes", default="")
    parser.add_argument("--child", nargs=2, metavar=("SIZE", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    from gmodiff.cli import set_torch_start_settings

    set_torch_start_settings()  # as the CLI runs
    if args.child:
        megapixels, target = float(args.child[0]), Path(args.child[1])
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_bracket(Path(tmp) / "in", megapixels)
            target.write_text(json.dumps(run_stages(paths, Path(tmp))))
        return
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    report = {"load": " / ".join(f"{v:.1f}" for v in os.getloadavg()), "commit": commit,
              "imports": {}, "runs": [], "notes": args.notes}
    if not args.skip_imports:
        report["imports"] = {m: import_seconds(m) for m in IMPORTS}
    for size in args.sizes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / "run.json"
            subprocess.run([sys.executable, __file__, "--child", size, str(target)], check=True,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"})
            report["runs"].append(json.loads(target.read_text()))
            print(f"{size} MP: {report['runs'][-1]['reconstruct_s']:.1f} s", flush=True)
    if args.op_side:
        report["operators"] = {"side": args.op_side, **operator_profile(args.op_side)}
        report["limit"] = conv_limit(16, args.op_side * 2)
    RAW.write_text(json.dumps(report, indent=1))
    write_report(report)
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
