"""GPU check of the full GMODiff pipeline with SD-2.1-sized random weights (no download).

One script, sized to finish in under 8 minutes on one H200-class GPU. It builds the paper-sized
pipeline (paper DaReg + SD-2.1-base-shaped refiner, random weights; ``backbone.py``'s
``sd21_random``) and measures, each in its own ``try`` so one failure never hides the others:

- fp16 and fp32: one-step refinement vs the 50-step DDIM chain from the same start at 1000×1500
  (W×H), and their ratio (the paper's headline is ~100× over multi-step LDM methods);
- peak GPU memory of each measurement (``torch.cuda.max_memory_allocated``);
- a tiled 4000×3000 reconstruction (latent tiles 96/32 plus VAE tiles);
- one forward of the paper-sized DaReg alone at 1000×1500.

Every row is written to ``benchmarks/results/gpu.md`` as soon as it is measured (atomically), so
a run killed from outside still leaves the rows it finished. A time budget (``--budget-s``,
default 420 s for the measurements) is checked before each one: a chain that would not fit runs
fewer steps and is extrapolated (and says so); a measurement that cannot start in time is
written as skipped.

    python benchmarks/gpu_check.py --device cuda                     # → benchmarks/results/gpu.md
    python benchmarks/gpu_check.py --tiny --device cpu --out /tmp/g.md  # tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when loaded by file path
from toy_bracket import toy_scene  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "gpu.md"
DEFAULT_BUDGET_S = 420.0
"""Seconds for the measurements; model build and imports come on top (≈ 1 min on an H200 host)."""


@dataclass
class Sizes:
    """Input sizes (height, width) and tiling of one run: the real ones or the tiny CPU ones."""

    main: tuple[int, int]
    large: tuple[int, int]
    dareg: tuple[int, int]
    latent_tile: int
    latent_overlap: int
    vae_tile: int
    vae_overlap: int


REAL = Sizes(main=(1000, 1500), large=(3000, 4000), dareg=(1000, 1500),
             latent_tile=96, latent_overlap=32, vae_tile=128, vae_overlap=8)
# Tiny: small enough for a CPU test, large enough that both latent and VAE tiling really split.
TINY = Sizes(main=(64, 96), large=(96, 128), dareg=(64, 96),
             latent_tile=8, latent_overlap=4, vae_tile=8, vae_overlap=2)


@dataclass
class Row:
    """One line of the report."""

    name: str
    dtype: str
    size: str
    seconds: float | None = None
    peak_gib: float | None = None
    note: str = ""


@dataclass
class Report:
    """Header facts plus the rows so far; rewritten to ``path`` after every row."""

    path: Path
    command: str
    device_name: str
    tiny: bool
    budget_s: float
    steps: int = 50
    rows: list[Row] = field(default_factory=list)
    ratios: dict[str, str] = field(default_factory=dict)
    facts: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        """Append a row, print it and rewrite the file."""
        self.rows.append(row)
        print(f"{row.name} [{row.dtype}, {row.size}]: {_fmt_s(row.seconds)} s, "
              f"peak {_fmt_gib(row.peak_gib)} GiB {row.note}", flush=True)
        self.write()

    def write(self) -> None:
        """Write the Markdown report atomically."""
        from gmodiff.io.atomic import atomic_path

        lines = [
            "# GPU check: one-step vs 50-step, fp16/fp32, memory, tiling" + (" (tiny, CPU)" if self.tiny else ""),
            "",
            f"- command: `{self.command}`",
            f"- device: {self.device_name}; torch {torch.__version__}"
            + (f", CUDA {torch.version.cuda}" if torch.version.cuda else "")
            + f"; Python {platform.python_version()}",
            f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
            f"measurement budget {self.budget_s:.0f} s",
            "- model: " + ("tiny random pipeline (tests only)" if self.tiny else
                           "paper DaReg + SD-2.1-base-shaped refiner, random weights "
                           "(`sd21_random`): timings and memory are real, outputs are not"),
            *[f"- {fact}" for fact in self.facts],
            "",
            "| measurement | dtype | input (W×H) | seconds | peak GPU memory (GiB) | note |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            lines.append(f"| {r.name} | {r.dtype} | {r.size} | {_fmt_s(r.seconds)} | "
                         f"{_fmt_gib(r.peak_gib)} | {r.note.replace('|', '/')} |")
        if self.ratios:
            lines += ["", f"## {self.steps}-step DDIM / one step (same start x_t = z_G, t = 499)", ""]
            lines += [f"- {k}: {v}" for k, v in self.ratios.items()]
        lines += [
            "",
            "Times: fastest of the timed runs after a warm-up, CUDA-synchronised, whole pipeline "
            "call (DaReg + both VAE encoders + UNet + DA decoder + gain-map decode) unless the row "
            "says otherwise. Peak memory is `torch.cuda.max_memory_allocated` during the row "
            "(weights included), reset before each row.",
        ]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            Path(tmp).write_text("\n".join(lines) + "\n")


def _fmt_s(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _fmt_gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


class Budget:
    """Wall-clock budget of the measurements."""

    def __init__(self, seconds: float):
        self.limit = seconds
        self.start = time.perf_counter()

    def remaining(self) -> float:
        """Seconds left (negative when spent)."""
        return self.limit - (time.perf_counter() - self.start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def time_call(fn: Callable[[], object], device: torch.device, repeats: int, budget: Budget,
              warmup: bool = True) -> tuple[float, int]:
    """Fastest of up to ``repeats`` synchronised runs (after one warm-up run); stops early when
    the next run would overrun the budget. Returns (seconds, runs timed)."""
    def once() -> float:
        _sync(device)
        begin = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - begin

    times = []
    first = once() if warmup else None
    if first is not None and budget.remaining() < first:
        return first, 0  # no time for a timed run: report the warm-up (flagged by the caller)
    for _ in range(repeats):
        times.append(once())
        if budget.remaining() < times[-1]:
            break
    return min(times), len(times)


def measure(report: Report, name: str, dtype: str, size: str, budget: Budget,
            device: torch.device, body: Callable[[Row], None], min_seconds: float = 0.0) -> Row:
    """Run ``body(row)`` (which fills seconds/note) with peak-memory tracking, never raising."""
    row = Row(name, dtype, size)
    if budget.remaining() < min_seconds:
        row.note = f"skipped: {max(budget.remaining(), 0):.0f} s of the budget left, needs ~{min_seconds:.0f} s"
        report.add(row)
        return row
    try:
        _reset_peak(device)
        body(row)
        row.peak_gib = _peak_gib(device)
    except Exception as exc:  # a broken measurement is a result too; keep going
        row.peak_gib = _peak_gib(device)
        row.note = (row.note + " " if row.note else "") + f"ERROR {type(exc).__name__}: {str(exc)[:300]}"
        traceback.print_exc()
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report.add(row)
    return row


def build_pipeline(tiny: bool):
    """The pipeline under test, on CPU in fp32."""
    from gmodiff.models.backbone import BackboneConfig
    from gmodiff.models.dareg import DaReg, DaRegConfig
    from gmodiff.pipeline.pipeline import GMODiffPipeline

    if tiny:
        return GMODiffPipeline.tiny(seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        dareg = DaReg(DaRegConfig.paper())
    return GMODiffPipeline.build(dareg, BackboneConfig(kind="sd21_random", seed=0))


def chain(pipe, scene, steps: int, device: torch.device, budget: Budget, one_step_s: float | None,
          row: Row) -> float:
    """Seconds of a ``steps``-step DDIM call; a shorter chain extrapolated when the full one
    would not fit the budget."""
    if one_step_s is not None and steps > 2:
        # Each extra step costs at most one more UNet pass, which is less than a whole one-step call.
        estimate = one_step_s * steps
        if estimate > 0.8 * budget.remaining():
            short = max(2, min(steps - 1, int(0.8 * budget.remaining() / one_step_s)))
            seconds, _ = time_call(lambda: pipe(scene, steps=short, tile=None, refine=True),
                                   device, 1, budget, warmup=False)
            per_step = max(seconds - one_step_s, 0.0) / (short - 1)
            row.note = f"extrapolated from a {short}-step run (budget)"
            return one_step_s + per_step * (steps - 1)
    seconds, _ = time_call(lambda: pipe(scene, steps=steps, tile=None, refine=True), device, 1,
                           budget, warmup=False)
    row.note = "one run (the one-step row warmed these shapes up)"
    return seconds


def run_checks(args: argparse.Namespace, report: Report) -> None:
    """Every measurement, in order of importance (fp16 headline first)."""
    from gmodiff.models.refiner import TileOptions
    from gmodiff.inputs.encode import scene_inputs

    device = torch.device(args.device)
    sizes = TINY if args.tiny else REAL
    budget = Budget(args.budget_s)
    holder: dict[str, object] = {}

    def build(row: Row) -> None:
        begin = time.perf_counter()
        pipe = build_pipeline(args.tiny)
        built = time.perf_counter() - begin
        pipe.to(device)
        _sync(device)
        row.seconds = time.perf_counter() - begin
        counts = pipe.refiner.parameter_counts()
        row.note = (f"build {built:.1f} s on CPU + move; refiner {counts['total'] / 1e6:.1f} M params "
                    f"({counts['trainable'] / 1e6:.1f} M trainable), DaReg "
                    f"{pipe.dareg.num_parameters() / 1e6:.1f} M")
        holder["pipe"] = pipe

    h, w = sizes.main
    main_size = f"{w}×{h}"
    measure(report, "build pipeline + move to device", "fp32", "—", budget, device, build)
    pipe = holder.get("pipe")
    if pipe is None:  # keep every row in the report, saying why it is empty
        big_label = "fp16" if device.type == "cuda" else "fp32"
        for name, label, size in [
            ("one step (full pipeline)", "fp16", main_size),
            (f"{args.steps}-step DDIM (full pipeline)", "fp16", main_size),
            ("one step (full pipeline)", "fp32", main_size),
            (f"{args.steps}-step DDIM (full pipeline)", "fp32", main_size),
            ("one step, tiled", big_label, f"{sizes.large[1]}×{sizes.large[0]}"),
            ("DaReg forward (paper size)" if not args.tiny else "DaReg forward (tiny)", "fp32",
             f"{sizes.dareg[1]}×{sizes.dareg[0]}"),
        ]:
            report.add(Row(name, label, size, note="not run: building the pipeline failed (first row)"))
        return
    scene = toy_scene(h, w)
    for label, dtype in (("fp16", torch.float16), ("fp32", torch.float32)):
        one: dict[str, float] = {}
        if dtype == torch.float16 and device.type == "cpu":
            # GMODiffPipeline.to refuses fp16 on CPU; keep the rows so every report has them all.
            for name in ("one step (full pipeline)", f"{args.steps}-step DDIM (full pipeline)"):
                report.add(Row(name, label, main_size, note="skipped: fp16 needs a GPU"))
            report.ratios[label] = "not measured (fp16 needs a GPU)"
            continue

        def one_step(row: Row, dtype=dtype, one=one) -> None:
            pipe.to(device, dtype)
            seconds, runs = time_call(lambda: pipe(scene, steps=1, tile=None, refine=True), device,
                                      args.repeats, budget)
            row.seconds = one["s"] = seconds
            out = pipe(scene, steps=1, tile=None, refine=True)
            finite = bool(np.isfinite(out.hdr).all())
            row.note = (f"best of {runs} after a warm-up" if runs else "warm-up run only (budget)") + (
                "" if finite else "; output not finite (random weights in this dtype)")
            row.note += f"; refiner {out.timings['refiner_s']:.3f} s, DaReg {out.timings['dareg_s']:.3f} s"

        def multi(row: Row, one=one) -> None:
            row.seconds = one["multi"] = chain(pipe, scene, args.steps, device, budget, one.get("s"), row)

        measure(report, "one step (full pipeline)", label, main_size, budget, device, one_step,
                min_seconds=5.0)
        measure(report, f"{args.steps}-step DDIM (full pipeline)", label, main_size, budget, device,
                multi, min_seconds=max(5.0, 3 * one.get("s", 1.0)))
        if "s" in one and "multi" in one:
            report.ratios[label] = (f"{one['multi'] / one['s']:.1f}× ({one['multi']:.2f} s / "
                                    f"{one['s']:.3f} s)")
        else:
            report.ratios[label] = "not measured (see the rows above)"
        report.write()

    big_h, big_w = sizes.large
    tile = TileOptions(latent_tile=sizes.latent_tile, latent_overlap=sizes.latent_overlap,
                       vae_tile=sizes.vae_tile, vae_overlap=sizes.vae_overlap)
    big_dtype = ("fp16", torch.float16) if device.type == "cuda" else ("fp32", torch.float32)

    def tiled(row: Row) -> None:
        pipe.to(device, big_dtype[1])
        big = toy_scene(big_h, big_w, seed=1)
        seconds, runs = time_call(lambda: pipe(big, steps=1, tile=tile, refine=True), device,
                                  1, budget, warmup=budget.remaining() > 120)
        row.seconds = seconds
        row.note = (f"latent tiles {tile.latent_tile}/{tile.latent_overlap}, VAE tiles "
                    f"{tile.vae_tile}/{tile.vae_overlap} latent px; "
                    + ("after a warm-up" if runs else "single run, first-call overheads included"))

    one_main = max([r.seconds or 0.0 for r in report.rows if r.name.startswith("one step")] or [1.0])
    measure(report, "one step, tiled", big_dtype[0], f"{big_w}×{big_h}", budget, device, tiled,
            min_seconds=max(5.0, 10 * one_main))

    def dareg(row: Row) -> None:
        dareg_scene = toy_scene(*sizes.dareg, seed=2)
        # The same padded network input the pipeline builds (preprocess owns padding and encoding).
        inputs = scene_inputs(dareg_scene, pipe.dareg.config).inputs.to(device)
        with torch.no_grad():
            seconds, runs = time_call(lambda: pipe.dareg(inputs), device, args.repeats, budget)
        row.seconds = seconds
        row.note = (f"{'paper' if not args.tiny else 'tiny'} DaReg alone, padded to "
                    f"{inputs.shape[-1]}×{inputs.shape[-2]}; best of {runs} after a warm-up")

    measure(report, "DaReg forward (paper size)" if not args.tiny else "DaReg forward (tiny)",
            "fp32", f"{sizes.dareg[1]}×{sizes.dareg[0]}", budget, device, dareg, min_seconds=2.0)
    report.facts.append(f"measurements took {args.budget_s - budget.remaining():.0f} s of the "
                        f"{args.budget_s:.0f} s budget")
    report.write()


def device_name(device: torch.device) -> str:
    """Human name of the device."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run every check, write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny model and sizes (CPU test)")
    parser.add_argument("--steps", type=int, default=50, help="steps of the DDIM chain")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be ≥ 2 (it is the multi-step chain)")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"error: --device {args.device} but torch {torch.__version__} sees no CUDA GPU; "
              "run on a GPU machine or pass --tiny --device cpu", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    command = "python benchmarks/gpu_check.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    report = Report(path=args.out, command=command.strip(), device_name=device_name(device),
                    tiny=args.tiny, budget_s=args.budget_s, steps=args.steps)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        report.facts.append(f"GPU memory {props.total_memory / 2**30:.0f} GiB; TF32 matmul "
                            f"{torch.backends.cuda.matmul.allow_tf32}, TF32 cuDNN "
                            f"{torch.backends.cudnn.allow_tf32} (torch defaults, left as they are)")
    report.write()
    run_checks(args, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
