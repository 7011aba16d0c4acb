"""Load check of ``gmodiff serve``: 20 sequential jobs, then 5 concurrent uploads, then memory.

Starts the server in a subprocess on a free port, runs one warm-up job (the model loads), takes
the server's resident memory (VmRSS) as the baseline, runs 20 jobs one after another (each with
three preview renders and a download, as the page does), then 5 uploads at once (they queue
behind the single worker), and reads the memory again. Inputs are the bundled sunset bracket
downscaled (``--size``, default 160×120) so the run is short. Writes
``benchmarks/results/serve_load.md``.

    nice -n 15 python benchmarks/serve_load.py
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the same server/upload helpers the tests use
from serve_helpers import (  # noqa: E402
    SUNSET_EV,
    ServerProcess,
    get_json,
    post,
    small_sunset,
    wait_job,
)

RESULTS = ROOT / "benchmarks" / "results" / "serve_load.md"
EV = ",".join(f"{v:g}" for v in SUNSET_EV)


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def fetch(url: str) -> int:
    """GET ``url``; number of bytes received."""
    with urllib.request.urlopen(url, timeout=60) as response:
        return len(response.read())


def one_job(base: str, frames: list[Path], method: str) -> tuple[dict, float]:
    """Upload, wait, render previews at three exposures and download the Ultra HDR JPEG."""
    start = time.perf_counter()
    code, body = post(f"{base}/api/jobs", frames, {"ev": EV, "method": method,
                                                   "compare": "reference"})
    if code != 200:
        raise RuntimeError(body)
    status = wait_job(base, body["id"], timeout=600)
    if status["state"] == "done":
        for ev in (-2, 0, 2):
            fetch(f"{base}/api/jobs/{status['id']}/preview?view=main&ev={ev}")
        fetch(f"{base}/api/jobs/{status['id']}/download/jpg")
    return {**status, "ahead_at_upload": body["ahead"]}, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="160x120", help="input size W×H")
    parser.add_argument("--sequential", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=5)
    parser.add_argument("--method", default="auto", help="auto, refine or deghost")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        tmp = Path(tmp)
        frames = small_sunset(tmp, width, height)
        # Room in the line for every concurrent upload (the default --max-queue is 4).
        server = ServerProcess(tmp / "work", "--max-queue", str(max(4, args.concurrent)))
        server.wait_ready()
        base, pid = server.url, server.proc.pid
        started = rss_mib(pid)
        warm, warm_s = one_job(base, frames, args.method)
        assert warm["state"] == "done", warm
        time.sleep(1)
        baseline = rss_mib(pid)

        seq_times, peak = [], baseline
        for _ in range(args.sequential):
            status, seconds = one_job(base, frames, args.method)
            assert status["state"] == "done", status
            seq_times.append(seconds)
            peak = max(peak, rss_mib(pid))
        after_seq = rss_mib(pid)

        results: list[tuple[dict, float]] = []
        lock = threading.Lock()

        def worker() -> None:
            out = one_job(base, frames, args.method)
            with lock:
                results.append(out)

        threads = [threading.Thread(target=worker) for _ in range(args.concurrent)]
        conc_start = time.perf_counter()
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_mib(pid))
            time.sleep(0.2)
        conc_wall = time.perf_counter() - conc_start
        time.sleep(1)
        after_all = rss_mib(pid)
        done = sum(s["state"] == "done" for s, _ in results)
        aheads = sorted(s["ahead_at_upload"] for s, _ in results)
        healthy = get_json(f"{base}/api/health")["ok"]
        kept = sum(1 for p in (tmp / "work").rglob("*") if p.is_file())
        exit_code = server.stop()
        left = list((tmp / "work").iterdir())

    seq_sorted = sorted(seq_times)
    lines = [
        "# `gmodiff serve` under load",
        "",
        f"`nice -n 15 python benchmarks/serve_load.py` on {platform.machine()}, CPU only, a 2-core "
        "machine shared with other jobs (times are upper bounds). Input: the bundled sunset "
        f"bracket downscaled to {width}×{height}, method `{args.method}`, compared with the "
        "reference frame. Each job = upload + reconstruction + 3 preview renders + the Ultra HDR "
        "download, over HTTP from a client process; one worker thread runs the reconstructions.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| warm-up job (the model loads) | {warm_s:.1f} s |",
        f"| {args.sequential} sequential jobs | {len(seq_times)} of {args.sequential} done, "
        f"median {seq_sorted[len(seq_sorted) // 2]:.2f} s, max {seq_sorted[-1]:.2f} s per job |",
        f"| {args.concurrent} concurrent uploads | {done} of {args.concurrent} done in "
        f"{conc_wall:.1f} s; places in the queue at upload: {aheads} |",
        f"| server RSS at start / after warm-up (baseline) | {started:.0f} / {baseline:.0f} MiB |",
        f"| server RSS after the sequential jobs / after all | {after_seq:.0f} / {after_all:.0f} "
        f"MiB ({after_all - baseline:+.0f} MiB vs baseline), peak {peak:.0f} MiB |",
        f"| server answering after the load | {healthy} |",
        f"| result files kept while running / after Ctrl+C | {kept} / {len(left)} "
        f"(exit code {exit_code}) |",
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
