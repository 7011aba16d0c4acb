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
"""

from __future__ import annotations

import math
import re
import shutil
import uuid
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from gmodiff.errors import ConfigError, GmodiffError, SceneError
from gmodiff.serve.config import ServeConfig
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
CHUNK = 1 << 20
DOWNLOAD_TYPES = {"jpg": "image/jpeg", "exr": "image/x-exr", "hdr": "image/vnd.radiance"}
DOWNLOAD_SUFFIX = {"jpg": ".jpg", "exr": ".exr", "hdr": ".hdr"}
NO_STORE = {"Cache-Control": "no-store"}


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _static_dir() -> Path:
    return Path(str(resources.files("gmodiff.serve") / "static"))


async def _save_frames(request: Request, config: ServeConfig, folder: Path):
    """Read the multipart form into ``folder``: (frame paths, form fields), checked by content,
    size and pixel count. Raises GmodiffError with a one-line message."""
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise SceneError("the upload has no Content-Length", None, "upload from the page")
    if int(length) > config.max_upload_bytes:
        raise SceneError(f"the upload is {int(length) / 2**20:.1f} MB, above this server's "
                         f"{config.max_upload_mb:g} MB limit", None,
                         "send smaller frames, or start the server with a larger --max-upload-mb")
    form = await request.form(max_files=config.max_files + 1, max_fields=20)
    try:
        uploads = [v for k, v in form.multi_items() if k == "files" and hasattr(v, "read")]
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        if len(uploads) > config.max_files:
            raise SceneError(f"{len(uploads)} frames, above this server's limit of "
                             f"{config.max_files}", None, "upload fewer frames")
        heads, client_names = [], []
        for upload in uploads:
            heads.append(await upload.read(SNIFF_BYTES))
            client_names.append(upload.filename or "")
            await upload.seek(0)
        kinds = []
        for head, client in zip(heads, client_names):
            kind = sniff(head)
            if kind is None:
                raise wrong_type_error(Path(client.replace("\\", "/")).name or "upload")
            kinds.append(kind)
        names = unique_names(client_names, [suffix for _, suffix in kinds])
        paths = []
        for upload, name, (kind, _) in zip(uploads, names, kinds):
            path = folder / name
            with path.open("wb") as fh:
                while chunk := await upload.read(CHUNK):
                    fh.write(chunk)
            # Header reads are blocking file IO: keep them off the event loop.
            await run_in_threadpool(check_pixels, path, kind, name, config.max_megapixels)
            paths.append(path)
        return paths, fields
    finally:
        await form.close()


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
    app.mount("/static", StaticFiles(directory=_static_dir()), name="static")

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
        folder.mkdir(parents=True)
        try:
            paths, _ = await _save_frames(request, config, folder)

            def exif_or_none(path: Path):
                try:
                    return read_exif(path)
                except GmodiffError:  # unreadable: the run itself reports it, in the CLI's words
                    return None

            infos = [await run_in_threadpool(exif_or_none, path) for path in paths]
            known = [i for i in infos if i is not None and i.exposure_time_seconds is not None]
            stops = None
            if len(known) == len(infos) and infos:
                stops = [round(math.log2(x), 2) for x in relative_exposures(infos)]
            frames = [{"name": path.name,
                       "exposure_s": info.exposure_time_seconds if info is not None else None,
                       "ev": stops[k] if stops else None}
                      for k, (path, info) in enumerate(zip(paths, infos))]
            return JSONResponse({"frames": frames})
        except GmodiffError as err:
            return _error(f"error: {err}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @app.post("/api/jobs")
    async def submit(request: Request) -> JSONResponse:
        job_id, folder = jobs.new_folder()
        try:
            paths, fields = await _save_frames(request, config, folder / "in")
            job = Job(id=job_id, folder=folder, frames=paths, request=_parse_request(fields))
        except GmodiffError as err:
            shutil.rmtree(folder, ignore_errors=True)
            return _error(f"error: {err}")
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
