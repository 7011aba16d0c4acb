"""One worker thread, a queue of jobs, and their results in a temporary folder.

A job is one uploaded bracket: its frames are in ``<root>/<id>/in``, its results in
``<root>/<id>/out``. The worker runs jobs strictly one at a time (a reconstruction already uses
every core), so a second upload waits its turn and :meth:`JobQueue.position` says how long the
line is. The line is bounded (``max_pending``: an upload first reserves its place), the frames
are deleted as soon as their job ends (a failed job keeps nothing on disk), and the work folder
has a disk budget (``max_disk_mb``) that the oldest finished results give way to. Everything runs through the same library calls as ``gmodiff reconstruct``: a bad
bracket fails with the CLI's one-line message and the worker goes on with the next job.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gmodiff.errors import GmodiffError, as_flags
from gmodiff.methods import ReconstructOptions
from gmodiff.serve.config import ServeConfig

METHODS: dict[str, tuple[str, ReconstructOptions]] = {
    "auto": ("auto", ReconstructOptions()),
    "refine": ("gmodiff", ReconstructOptions(refine=True)),
    "deghost": ("deghost", ReconstructOptions()),
}
"""Page choice → (``reconstruct_scene`` method, options), typed once here: the default model as
the CLI's ``--method auto`` (the bundled model's DaReg stage), the same with its one-step
diffusion refiner (``--refine``, slower), and the best classical merge."""
METHOD_LABELS = {
    "auto": "Default model",
    "refine": "Default model + one-step refiner (--refine, slower)",
    "deghost": "Deghost (classical)",
}
COMPARE_CHOICES = ("none", "reference", *METHODS)
OUTPUT_SUFFIXES = (".jpg", ".exr", ".hdr")
"""Downloads: Ultra HDR JPEG, OpenEXR (half), Radiance."""


@dataclass
class JobRequest:
    """What the page asked for, checked once where it enters (the upload handler)."""

    method: str = "auto"
    compare: str = "none"
    ev: str | None = None
    align: str = "ecc"


@dataclass
class Job:
    """One uploaded bracket and everything the page shows about it."""

    id: str
    folder: Path
    frames: list[Path]
    request: JobRequest
    state: str = "queued"  # queued → running → done | failed
    stage: str = "waiting"
    progress: float = 0.0
    messages: list[str] = field(default_factory=list)
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    stem: str = "hdr"
    methods: dict[str, str] = field(default_factory=dict)
    """Which view ("main", "compare") ran which method (``Reconstruction.method``)."""
    maps: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def inputs(self) -> Path:
        """Folder of the uploaded frames."""
        return self.folder / "in"

    @property
    def outputs(self) -> Path:
        """Folder of the results."""
        return self.folder / "out"

    def public_message(self, err: BaseException) -> str:
        """The CLI's one-line message (options named as its flags, as `gmodiff reconstruct`
        prints them), with this server's private folder left out of paths."""
        text = f"error: {as_flags(str(err))}"
        for prefix in (str(self.inputs) + "/", str(self.outputs) + "/", str(self.folder) + "/"):
            text = text.replace(prefix, "")
        return text


def run_job(job: Job) -> None:
    """Prepare the bracket, reconstruct (and the comparison), write every output of ``job``:
    the bracket's own finish (extra frames merged, a two-frame bracket's level anchored) and
    the CLI's write road (:func:`gmodiff.jobs.write_result`: EXIF carried, one atomic group)."""
    from gmodiff.bracket.prepare import BracketOptions, number_list, prepare_bracket
    from gmodiff.io.ldr import write_ldr
    from gmodiff.jobs import OutputOptions, debug_map_paths, write_debug_maps, write_result
    from gmodiff.methods import memory_check, reconstruct_scene

    start = time.perf_counter()
    req = job.request
    job.stage, job.progress = "reading and aligning the frames", 0.1
    method, options = METHODS[req.method]
    # The same header-size check through the method's memory plan as the CLI, before decoding.
    prepared = prepare_bracket(job.frames, BracketOptions(ev=number_list(req.ev, "ev"),
                                                          align=req.align),
                               run_check=memory_check(method, options))
    job.messages = prepared.messages()
    scene = prepared.scene
    job.stem = scene.name
    out = job.outputs
    out.mkdir(parents=True, exist_ok=True)
    write_ldr(out / "reference.png", scene.frames[scene.reference_index], bit_depth=8)
    views = [("main", req.method)] + ([("compare", req.compare)]
                                      if req.compare in METHODS else [])
    results = {}
    for i, (view, choice) in enumerate(views):
        job.stage = f"reconstructing ({METHOD_LABELS[choice]})"
        job.progress = 0.25 + 0.5 * i / len(views)
        method, options = METHODS[choice]
        results[view] = reconstruct_scene(scene, method, options)
        results[view].hdr = prepared.finish(results[view].hdr)
        job.methods[view] = results[view].method
        np.save(out / f"{view}.npy", results[view].hdr.astype(np.float32))
    job.stage, job.progress = "writing the HDR files", 0.8
    # Ultra HDR: SDR white at the reference exposure, and every file in reference-white units,
    # as `gmodiff reconstruct` writes them (the one write road).
    main = [out / f"main{suffix}" for suffix in OUTPUT_SUFFIXES]
    write_result(scene, results["main"], main, OutputOptions(debug_maps=True))
    job.maps = [path.name for path in debug_map_paths(main[0]) if path.is_file()]
    if "compare" in results:  # e.g. compare.gain_map.png, for the page only
        job.maps += [path.name for path in write_debug_maps(out / "compare.png",
                                                            results["compare"])]
    job.seconds = time.perf_counter() - start


def warm_up() -> None:
    """Load the default model (if installed) by reconstructing a tiny grey bracket, so the first
    photographer's job does not pay for it; the pipeline cache keeps it."""
    from gmodiff.io.scene import Scene
    from gmodiff.methods import reconstruct_scene

    frames = [np.full((64, 64, 3), v, np.float32) for v in (0.2, 0.45, 0.7)]
    reconstruct_scene(Scene(frames=frames, exposure_times=np.array([1.0, 4.0, 16.0]),
                            name="warm-up"), "auto")


def _folder_bytes(folder: Path) -> int:
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(parent, name)).st_size
            except OSError:  # deleted meanwhile
                pass
    return total


class JobQueue:
    """Jobs by id, run in order by one background thread; old results are deleted."""

    def __init__(self, config: ServeConfig, warm_up: Callable[[], None] | None = None):
        import tempfile

        parent = config.workdir
        if parent is not None:
            Path(parent).mkdir(parents=True, exist_ok=True)
        self.config = config
        self.root = Path(tempfile.mkdtemp(prefix="gmodiff-serve-", dir=parent))
        self._jobs: dict[str, Job] = {}
        self._order: list[str] = []  # queued ids, oldest first
        self._running: str | None = None
        self._reserved = 0  # uploads under way that hold a place in the line
        self._lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="gmodiff-serve-worker", daemon=True)
        self._closed = False
        self._warm_up = warm_up
        self.warming = warm_up is not None
        """True until the worker has run ``warm_up`` (queued jobs wait for it)."""
        self.on_delete = None
        """Called with a job's folder when it is deleted (the preview cache forgets it)."""

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def new_folder(self) -> tuple[str, Path]:
        """A fresh job id and its (created) input folder."""
        job_id = uuid.uuid4().hex
        folder = self.root / job_id
        (folder / "in").mkdir(parents=True)
        return job_id, folder

    def reserve(self) -> bool:
        """Hold a place in the line for an upload under way; False when the line is full
        (``max_pending`` jobs queued, running or being uploaded). :meth:`submit` or
        :meth:`release` gives the place back."""
        with self._lock:
            if len(self._order) + (self._running is not None) + self._reserved \
                    >= self.config.max_pending:
                return False
            self._reserved += 1
            return True

    def release(self) -> None:
        """Give back a place :meth:`reserve` held (the upload was refused or aborted)."""
        with self._lock:
            self._reserved = max(0, self._reserved - 1)

    def disk_used(self) -> int:
        """Bytes in the work folder now (uploads under way, queued frames, kept results)."""
        return _folder_bytes(self.root)

    def make_room(self, needed: int, evict: bool = True) -> bool:
        """Whether ``needed`` more bytes fit in the disk budget, deleting the oldest finished
        results when they would not (none when even that would not make enough room, nor when
        ``evict`` is False: then only whether they could fit is answered)."""
        self.cleanup()
        budget, used = self.config.max_disk_bytes, self.disk_used()
        if used + needed <= budget:
            return True
        with self._lock:
            done = sorted((j for j in self._jobs.values() if j.finished is not None),
                          key=lambda j: j.finished)
        sizes = [_folder_bytes(job.folder) for job in done]
        if used - sum(sizes) + needed > budget:
            return False
        if not evict:
            return True
        for job, size in zip(done, sizes):
            with self._lock:
                self._jobs.pop(job.id, None)
            self._delete(job)
            used -= size
            if used + needed <= budget:
                break
        return True

    def _delete(self, job: Job) -> None:
        if self.on_delete is not None:
            self.on_delete(job.folder)
        shutil.rmtree(job.folder, ignore_errors=True)

    def submit(self, job: Job, reserved: bool = True) -> int:
        """Queue ``job`` (taking the place :meth:`reserve` held for it, unless ``reserved`` is
        False); returns how many jobs are ahead of it."""
        self.cleanup()
        with self._lock:
            if reserved:
                self._reserved = max(0, self._reserved - 1)
            self._jobs[job.id] = job
            self._order.append(job.id)
            ahead = self._ahead(job.id)
        self._queue.put(job.id)
        return ahead

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None (unknown or already deleted)."""
        with self._lock:
            return self._jobs.get(job_id)

    def _ahead(self, job_id: str) -> int:
        queued = self._order.index(job_id) if job_id in self._order else 0
        return queued + (1 if self._running is not None and self._running != job_id else 0)

    def position(self, job_id: str) -> int:
        """How many jobs run before ``job_id`` (0 when it runs now or is finished)."""
        with self._lock:
            return self._ahead(job_id) if job_id in self._order else 0

    def pending(self) -> int:
        """Jobs queued or running."""
        with self._lock:
            return len(self._order) + (self._running is not None)

    def _work(self) -> None:
        if self._warm_up is not None:
            try:
                self._warm_up()
            except Exception:  # noqa: BLE001 — a missing/broken model fails the job, in words
                pass
            finally:
                self.warming = False
        while True:
            try:
                job_id = self._queue.get(timeout=30)
            except queue.Empty:
                self.cleanup()
                continue
            if job_id is None or self._closed:
                return
            with self._lock:
                job = self._jobs.get(job_id)
                if job_id in self._order:
                    self._order.remove(job_id)
                self._running = job_id if job is not None else None
            if job is None:
                continue
            job.state, job.stage = "running", "starting"
            error: str | None = "error: the job was interrupted"  # replaced unless run_job returns or raises
            try:
                run_job(job)
                error = None
            except GmodiffError as err:
                error = job.public_message(err)
            except Exception as exc:  # noqa: BLE001 — one bad job must not stop the server
                error = job.public_message(RuntimeError(
                    f"internal error ({type(exc).__name__}: {exc}) — please report it with "
                    "these frames"))
            finally:
                # The frames are not needed once the job ends; a failed job has no results.
                # The folder goes before the state is published, so a client that sees
                # "done"/"failed" never finds the frames still on disk.
                shutil.rmtree(job.inputs if error is None else job.folder, ignore_errors=True)
                if error is None:
                    job.stage, job.progress = "done", 1.0
                else:
                    job.error = error
                job.finished = time.time()
                job.state = "done" if error is None else "failed"
                with self._lock:
                    self._running = None

    def cleanup(self, now: float | None = None) -> list[str]:
        """Delete finished jobs older than the TTL, and the oldest beyond ``max_kept_jobs``."""
        now = time.time() if now is None else now
        with self._lock:
            done = sorted((j for j in self._jobs.values() if j.finished is not None),
                          key=lambda j: j.finished)
            old = [j for j in done if now - j.finished > self.config.result_ttl_s]
            extra = done[:max(0, len(done) - self.config.max_kept_jobs)]
            doomed = {j.id: j for j in [*old, *extra]}
            for job_id in doomed:
                del self._jobs[job_id]
        for job in doomed.values():
            self._delete(job)
        return list(doomed)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker (after the running job, up to ``timeout``) and delete every result."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            self._order.clear()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)
        shutil.rmtree(self.root, ignore_errors=True)
