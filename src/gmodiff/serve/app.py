"""The FastAPI app: one static page plus a small JSON/PNG API over :class:`JobQueue`.

Routes (all under the server's own origin; nothing takes a path from the client):

- ``GET /`` the page; ``GET /static/...`` its script and style
- ``GET /api/health`` liveness and queue length
- ``POST /api/inspect`` frames → per-frame size and EXIF exposure (nothing is kept)
- ``POST /api/jobs`` frames + method/compare/ev → job id and place in the queue
- ``GET /api/jobs/{id}`` state, stage, messages or the CLI's one-line error
- ``GET /api/jobs/{id}/preview?view=main|compare|reference&ev=X`` tone-mapped PNG
- ``GET /api/jobs/{id}/map/{gain_map|mask}?view=main|compare`` the network's maps as PNG
- ``GET /api/jobs/{id}/download/{jpg|exr|hdr}`` the HDR files

Every request passes :mod:`gmodiff.serve.guard` first (loopback ``Host`` names only, no foreign
``Origin``), and every error, FastAPI's own included, is answered in one shape:
``{"error": "error: <one line>"}``, the line the page shows.
"""

from __future__ import annotations

import errno
import re
import shutil
import uuid
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from gmodiff.bracket.prepare import choose_reference
from gmodiff.errors import ConfigError, GmodiffError, printable
from gmodiff.serve.config import ServeConfig
from gmodiff.serve.form import ClientDisconnect, Refused, read_form, refuse
from gmodiff.serve.guard import RequestGuard
from gmodiff.serve.jobs import (
    COMPARE_CHOICES,
    METHOD_LABELS,
    METHODS,
    Job,
    JobQueue,
    JobRequest,
    warm_up,
)
from gmodiff.serve.render import EV_RANGE, HDRCache, preview_png
from gmodiff.serve.uploads import SNIFF_BYTES, check_pixels, sniff, unique_names, wrong_type_error

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
DOWNLOAD_TYPES = {"jpg": "image/jpeg", "exr": "image/x-exr", "hdr": "image/vnd.radiance"}
DOWNLOAD_SUFFIX = {"jpg": ".jpg", "exr": ".exr", "hdr": ".hdr"}
NO_STORE = {"Cache-Control": "no-store"}


def reference_stops(exposures) -> list[float]:
    """Each frame's exposure in stops from the frame the bracket rule takes as reference, the
    CLI's EV convention (``short: a.jpg (-2.0 EV)``), so both front ends show the same numbers."""
    stops = np.log2(np.asarray(exposures, dtype=np.float64))
    order = np.argsort(stops, kind="stable")
    reference = stops[order][choose_reference(stops[order])]
    return [round(float(v - reference), 2) + 0.0 for v in stops]


def _error(message: str, status: int = 400, headers: dict | None = None) -> JSONResponse:
    """The one reply shape of every error: ``{"error": "error: <one line>"}``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _refused(err: BaseException) -> JSONResponse:
    if isinstance(err, Refused):
        return _error(err.line, err.status, err.headers)
    if isinstance(err, ClientDisconnect):  # nobody reads this; no traceback in the log either
        return _error("error: the upload was cut off — upload the frames again", 400)
    return _error(f"error: {err}")


def _static_dir() -> Path:
    return Path(str(resources.files("gmodiff.serve") / "static"))


RESULT_BYTES_PER_PIXEL = 64
"""What a job's kept results take on disk, per pixel of its frames: two views' float32 arrays
(24 B) and maps, the EXR, Radiance, Ultra HDR and reference PNG files, rounded up."""


async def _save_frames(request: Request, config: ServeConfig, jobs: JobQueue, folder: Path,
                       results: bool = False):
    """Read the multipart form into ``folder``: (frame paths, form fields), checked by content,
    size, pixel count and the disk budget (with the results the job will write when
    ``results``). Raises :class:`Refused` (or GmodiffError) with a one-line message."""
    length = request.headers.get("content-length", "")
    incoming = int(length) if length.isascii() and length.isdigit() else 0
    # Before the body: could it fit at all? (Results make room only once its size is known.)
    # Walking the work folder is blocking file IO: off the event loop, like the header reads.
    if incoming <= config.max_upload_bytes and \
            not await run_in_threadpool(jobs.make_room, incoming, False):
        raise _disk_full(config)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        form = await read_form(request, folder, config.max_upload_bytes, config.max_files,
                               config.max_upload_mb)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise refuse("the disk of the server's work folder is full", "free some space, or "
                     "start the server with --workdir on another disk", 507) from None
    if not form.files:
        raise refuse("the upload has no frames", "choose the bracket's 2 or more frames")
    kinds = []
    for client, path in form.files:
        with path.open("rb") as fh:
            kind = sniff(fh.read(SNIFF_BYTES))
        if kind is None:
            raise wrong_type_error(Path(client.replace("\\", "/")).name or "upload")
        kinds.append(kind)
    names = unique_names([client for client, _ in form.files], [suffix for _, suffix in kinds])
    paths, pixels = [], 0
    for (_, part), name in zip(form.files, names):
        path = part.rename(folder / name)
        # Header reads are blocking file IO: keep them off the event loop.
        pixels += await run_in_threadpool(check_pixels, path, name, config.max_megapixels)
        paths.append(path)
    if results and pixels:
        frame = pixels // len(paths)  # the frames of a bracket share one size
        if not await run_in_threadpool(jobs.make_room, frame * RESULT_BYTES_PER_PIXEL):
            raise _disk_full(config)
    return paths, form.fields


def _disk_full(config: ServeConfig) -> Refused:
    return refuse(f"the server's work folder is full (its budget is {config.max_disk_mb:g} MB, "
                  "taken by jobs that are still queued or running)",
                  "wait for a job to finish and upload again, or start the server with a larger "
                  "--max-disk-mb", 507)


def _parse_request(fields: dict[str, str]) -> JobRequest:
    """The page's choices, checked once here (typed from then on)."""
    method = fields.get("method", "auto")
    compare = fields.get("compare", "none")
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}", fix=f"use one of {', '.join(METHODS)}")
    if compare not in COMPARE_CHOICES or compare == method:
        raise ConfigError(f"cannot compare with {compare!r}",
                          fix="pick the reference frame or a different method")
    ev = (fields.get("ev") or "").strip() or None
    align = fields.get("align", "ecc")
    return JobRequest(method=method, compare=compare, ev=ev, align=align)


def _job_json(queue: JobQueue, job: Job) -> dict:
    return {
        "id": job.id, "state": job.state, "stage": job.stage, "progress": job.progress,
        "ahead": queue.position(job.id) if job.state == "queued" else 0,
        "warming": queue.warming,
        "messages": job.messages, "error": job.error, "methods": job.methods,
        "maps": job.maps, "seconds": round(job.seconds, 2),
        "compare": job.request.compare, "method": job.request.method,
        "downloads": {k: f"/api/jobs/{job.id}/download/{k}" for k in DOWNLOAD_TYPES}
        if job.state == "done" else {},
    }


def create_app(config: ServeConfig | None = None) -> FastAPI:
    """The web app; its lifespan starts the worker and deletes all results on shutdown."""
    config = config or ServeConfig()
    jobs = JobQueue(config, warm_up if config.preload else None)
    cache = HDRCache()
    jobs.on_delete = cache.forget

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        jobs.start()
        try:
            yield
        finally:
            jobs.close()

    app = FastAPI(title="gmodiff", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.jobs = jobs
    app.add_middleware(RequestGuard, config=config)
    app.mount("/static", StaticFiles(directory=_static_dir()), name="static")

    # One reply shape for every error, FastAPI's own included (no {"detail": ...}).
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            line = f"error: no such page {request.url.path!r} — open the page at /"
        elif exc.status_code == 405:
            line = f"error: {request.method} is not allowed on {request.url.path!r}"
        else:
            line = f"error: {printable(str(exc.detail))}"
        return _error(line, exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for item in exc.errors()[:3]:
            where = ".".join(str(part) for part in item.get("loc", ()) if part != "query")
            problems.append(f"{where}: {item.get('msg', 'invalid')}" if where
                            else str(item.get("msg", "invalid")))
        return _error(f"error: bad request ({printable('; '.join(problems))[:200]}) — use the "
                      "page, which sends valid values", 400)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        return _error(f"error: internal error ({type(exc).__name__}) — please report it", 500)

    def _done_job(job_id: str) -> Job | None:
        job = jobs.get(job_id) if JOB_ID.match(job_id) else None
        return job if job is not None and job.state == "done" else None

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(_static_dir() / "index.html", headers=NO_STORE)

    @app.get("/api/health")
    def health() -> dict:
        return {"ok": True, "pending": jobs.pending(), "model_loading": jobs.warming}

    @app.get("/api/config")
    def settings() -> dict:
        return {"methods": METHOD_LABELS, "ev_range": EV_RANGE, "max_files": config.max_files,
                "max_upload_mb": config.max_upload_mb, "max_megapixels": config.max_megapixels}

    @app.post("/api/inspect")
    async def inspect(request: Request) -> JSONResponse:
        from gmodiff.io.exif import read_exif, relative_exposures

        folder = jobs.root / "inspect" / uuid.uuid4().hex
        try:
            paths, _ = await _save_frames(request, config, jobs, folder)

            def exif_or_none(path: Path):
                try:
                    return read_exif(path)
                except GmodiffError:  # unreadable: the run itself reports it, in the CLI's words
                    return None

            infos = [await run_in_threadpool(exif_or_none, path) for path in paths]
            known = [i for i in infos if i is not None and i.exposure_time_seconds is not None]
            stops = None
            if len(known) == len(infos) and infos:
                stops = reference_stops(relative_exposures(infos))
            frames = [{"name": path.name,
                       "exposure_s": info.exposure_time_seconds if info is not None else None,
                       "ev": stops[k] if stops else None}
                      for k, (path, info) in enumerate(zip(paths, infos))]
            return JSONResponse({"frames": frames})
        except (Refused, GmodiffError, ClientDisconnect) as err:
            return _refused(err)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @app.post("/api/jobs")
    async def submit(request: Request) -> JSONResponse:
        if not jobs.reserve():
            n = config.max_pending
            return _error(f"error: the server already has {n} job{'s' if n > 1 else ''} waiting "
                          f"or running, its limit — wait for one to finish and upload again (or "
                          f"start the server with a larger --max-queue)", 429,
                          headers={"Retry-After": "30"})
        job_id, folder = jobs.new_folder()
        try:
            paths, fields = await _save_frames(request, config, jobs, folder / "in",
                                               results=True)
            job = Job(id=job_id, folder=folder, frames=paths, request=_parse_request(fields))
        except BaseException as err:
            # Refused, malformed or aborted: nothing of this upload stays on disk.
            jobs.release()
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(err, (Refused, GmodiffError, ClientDisconnect)):
                return _refused(err)
            raise
        ahead = jobs.submit(job)
        return JSONResponse({"id": job_id, "ahead": ahead})

    @app.get("/api/jobs/{job_id}")
    def status(job_id: str) -> JSONResponse:
        job = jobs.get(job_id) if JOB_ID.match(job_id) else None
        if job is None:
            return _error("error: no such job (finished jobs are deleted after a while) — upload "
                          "the frames again", 404)
        return JSONResponse(_job_json(jobs, job), headers=NO_STORE)

    @app.get("/api/jobs/{job_id}/preview")
    def preview(job_id: str, view: str = "main", ev: float = 0.0) -> Response:
        job = _done_job(job_id)
        if job is None or view not in ("main", "compare", "reference"):
            return _error("error: no such result", 404)
        if view == "reference":
            return FileResponse(job.outputs / "reference.png", media_type="image/png")
        path = job.outputs / f"{view}.npy"
        if not path.is_file():
            return _error("error: this job has no comparison result", 404)
        png = preview_png(cache, path, job.outputs / "main.npy", ev)
        return Response(png, media_type="image/png")

    @app.get("/api/jobs/{job_id}/map/{kind}")
    def gain_map(job_id: str, kind: str, view: str = "main") -> Response:
        job = _done_job(job_id)
        name = f"{view}.{kind}.png"
        if job is None or kind not in ("gain_map", "mask") or view not in ("main", "compare") \
                or name not in job.maps:
            return _error("error: this result has no such map (classical methods have none)", 404)
        return FileResponse(job.outputs / name, media_type="image/png")

    @app.get("/api/jobs/{job_id}/download/{fmt}")
    def download(job_id: str, fmt: str) -> Response:
        job = _done_job(job_id)
        if job is None or fmt not in DOWNLOAD_TYPES:
            return _error("error: no such download", 404)
        suffix = DOWNLOAD_SUFFIX[fmt]
        return FileResponse(job.outputs / f"main{suffix}", media_type=DOWNLOAD_TYPES[fmt],
                            filename=f"{job.stem}-hdr{suffix}")

    return app


def run_server(config: ServeConfig) -> None:
    """Serve until Ctrl+C / SIGTERM; the results folder is deleted on the way out."""
    import uvicorn

    app = create_app(config)
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"gmodiff serve: warning: listening on {config.host}: the page has no login, so "
              "anyone who can reach this address can upload and download", flush=True)
    print(f"gmodiff serve: open http://{config.host}:{config.port}/ "
          f"(results in {app.state.jobs.root}; Ctrl+C stops and deletes them)", flush=True)
    # A stuck client must not keep Ctrl+C from stopping the server (and deleting the results).
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning",
                timeout_graceful_shutdown=5)
