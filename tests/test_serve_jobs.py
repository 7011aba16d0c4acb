"""``gmodiff.serve`` without a browser: upload checks, the one-worker queue, previews, limits."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from gmodiff.errors import ExposureError, SceneError
from gmodiff.serve import jobs as jobs_module
from gmodiff.serve.config import ServeConfig
from gmodiff.serve.jobs import Job, JobQueue, JobRequest
from gmodiff.serve.render import HDRCache, clamp_ev, preview_png
from gmodiff.serve.uploads import check_pixels, safe_stem, sniff, unique_names


def test_type_is_read_from_content_not_name():
    assert sniff(b"\xff\xd8\xff\xe1rest") == ("jpeg", ".jpg")
    assert sniff(b"\x89PNG\r\n\x1a\nxx") == ("png", ".png")
    assert sniff(b"II*\x00....") == ("tiff", ".tif") and sniff(b"MM\x00*....")[0] == "tiff"
    assert sniff(b"GIF89a..") is None and sniff(b"") is None


@pytest.mark.parametrize("client, expected", [
    ("../../etc/passwd", "passwd"), ("C:\\Users\\me\\IMG 0041.JPG", "IMG_0041"),
    ("", "frame_3"), ("..", "frame_3"), (".bashrc", "bashrc"), ("a/b/ünï cødé.tif", "n_c_d")])
def test_client_names_never_become_paths(client, expected):
    assert safe_stem(client, 2) == expected


def test_unique_names_keep_the_content_extension():
    assert unique_names(["x.png", "X.jpg", "x.tif"], [".jpg", ".jpg", ".tif"]) == \
        ["x.jpg", "X_2.jpg", "x.tif"]


def test_pixel_limit_is_checked_from_the_header(tmp_path):
    from PIL import Image

    path = tmp_path / "big.png"
    Image.new("RGB", (200, 100)).save(path)
    assert check_pixels(path, "big.png", max_megapixels=0.02) == 20000
    with pytest.raises(SceneError, match=r"big.png: image is 200x100 \(0.0 MP\), above this "
                                         r"server's 0.01 MP limit"):
        check_pixels(path, "big.png", max_megapixels=0.01)


def _job(queue: JobQueue, **request) -> Job:
    job_id, folder = queue.new_folder()
    return Job(id=job_id, folder=folder, frames=[], request=JobRequest(**request))


def test_one_worker_runs_jobs_in_order_and_reports_the_line(tmp_path, monkeypatch):
    release, order = threading.Event(), []

    def fake_run(job):
        order.append(job.id)
        if len(order) == 1:
            assert release.wait(10)
        if job.request.ev == "bad":
            raise ExposureError("--ev must be comma-separated numbers, got 'bad'")
        if job.request.ev == "bug":
            raise ValueError("boom")

    monkeypatch.setattr(jobs_module, "run_job", fake_run)
    queue = JobQueue(ServeConfig(workdir=tmp_path))
    queue.start()
    first, second, third = _job(queue), _job(queue, ev="bad"), _job(queue, ev="bug")
    assert queue.submit(first) == 0
    assert queue.submit(second) == 1
    assert queue.submit(third) == 2
    deadline = time.monotonic() + 5
    while first.state != "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert first.state == "running"
    assert (queue.position(second.id), queue.position(third.id)) == (1, 2)
    assert second.state == "queued" and queue.pending() == 3
    release.set()
    while third.finished is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert order == [first.id, second.id, third.id]
    assert first.state == "done"
    assert second.error == "error: --ev must be comma-separated numbers, got 'bad'"
    assert third.state == "failed" and third.error.startswith("error: internal error (ValueError")
    assert queue.pending() == 0
    queue.close()
    assert not queue.root.exists()


def test_a_finished_state_is_shown_only_after_its_folder_is_cleaned(tmp_path, monkeypatch):
    # A client that polls "failed" (or "done") must not find the frames still on disk: the
    # worker deletes first and publishes the state after (CI once saw the other order).
    states_while_deleting = []
    real_rmtree = jobs_module.shutil.rmtree

    def slow_rmtree(path, *args, **kwargs):
        states_while_deleting.append(next(j.state for j in jobs if path in (j.folder, j.inputs)))
        time.sleep(0.05)
        real_rmtree(path, *args, **kwargs)

    def fake_run(job):
        job.inputs.mkdir(parents=True, exist_ok=True)
        if job.request.ev == "bad":
            raise ExposureError("--ev must be comma-separated numbers, got 'bad'")

    monkeypatch.setattr(jobs_module, "run_job", fake_run)
    monkeypatch.setattr(jobs_module.shutil, "rmtree", slow_rmtree)
    queue = JobQueue(ServeConfig(workdir=tmp_path))
    queue.start()
    jobs = [_job(queue), _job(queue, ev="bad")]
    for job in jobs:
        queue.submit(job)
    deadline = time.monotonic() + 5
    while jobs[1].state != "failed" and time.monotonic() < deadline:
        time.sleep(0.001)
    assert jobs[0].state == "done" and not jobs[0].inputs.exists()
    assert jobs[1].state == "failed" and not jobs[1].folder.exists()
    assert states_while_deleting == ["running", "running"]
    monkeypatch.setattr(jobs_module.shutil, "rmtree", real_rmtree)
    queue.close()


def test_jobs_wait_for_the_model_warm_up(tmp_path, monkeypatch):
    loaded, ran = threading.Event(), []
    monkeypatch.setattr(jobs_module, "run_job", lambda job: ran.append(job.id))
    queue = JobQueue(ServeConfig(workdir=tmp_path), warm_up=lambda: loaded.wait(10))
    queue.start()
    job = _job(queue)
    queue.submit(job)
    time.sleep(0.2)
    assert queue.warming and job.state == "queued" and not ran
    loaded.set()
    deadline = time.monotonic() + 5
    while job.finished is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ran == [job.id] and not queue.warming and job.state == "done"
    queue.close()


def test_old_results_are_deleted(tmp_path):
    queue = JobQueue(ServeConfig(workdir=tmp_path, result_ttl_s=60, max_kept_jobs=2))
    forgotten = []
    queue.on_delete = forgotten.append
    made = [_job(queue) for _ in range(4)]
    for i, job in enumerate(made):
        queue._jobs[job.id] = job
        job.finished = 1000.0 + i
    deleted = queue.cleanup(now=1000.0 + 30)  # none is old yet; the two oldest exceed the cap
    assert deleted == [made[0].id, made[1].id]
    assert not made[0].folder.exists() and made[2].folder.exists()
    assert forgotten == [made[0].folder, made[1].folder]
    assert sorted(queue.cleanup(now=2000.0)) == sorted([made[2].id, made[3].id])
    assert queue.get(made[3].id) is None and list(queue.root.iterdir()) == []
    queue.close()


def test_messages_leave_the_private_folder_out(tmp_path):
    queue = JobQueue(ServeConfig(workdir=tmp_path))
    job = _job(queue)
    err = SceneError("frame is 10×10 but a.jpg is 20×20", job.inputs / "b.jpg", "same size")
    assert job.public_message(err) == \
        "error: b.jpg: frame is 10×10 but a.jpg is 20×20 — same size"
    queue.close()


def test_previews_follow_the_slider_without_recomputing(tmp_path):
    hdr = np.random.default_rng(0).gamma(2.0, 0.2, (24, 32, 3)).astype(np.float32)
    np.save(tmp_path / "main.npy", hdr)
    np.save(tmp_path / "compare.npy", hdr * 2)
    cache = HDRCache()
    import cv2

    def mean(ev: float, view: str = "main") -> float:
        png = preview_png(cache, tmp_path / f"{view}.npy", tmp_path / "main.npy", ev)
        return float(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).mean())

    assert mean(-2) < mean(0) < mean(2)
    # Same exposure for both views: the 2× brighter comparison at 0 EV equals main at +1 EV.
    assert abs(mean(0, "compare") - mean(1)) < 1.0
    assert clamp_ev(9) == 4 and clamp_ev(-9) == -4 and clamp_ev(float("nan")) == 0
    for i in range(6):  # only the last few stay
        np.save(tmp_path / f"other{i}.npy", hdr)
        cache.get(tmp_path / f"other{i}.npy")
    assert len(cache._items) == cache.max_items
    cache.forget(tmp_path)
    assert not cache._items


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("fastapi", reason="the 'ui' extra (fastapi, uvicorn) is not installed")
    from serve_helpers import ServerProcess

    work = tmp_path_factory.mktemp("serve") / "work"
    srv = ServerProcess(work, "--max-megapixels", "0.05", "--max-upload-mb", "1", "--no-preload")
    try:
        srv.wait_ready()
        yield srv
    finally:
        assert srv.stop() == 0
        assert list(work.iterdir()) == []  # Ctrl+C deleted every result
        # Refused, malformed and aborted uploads are answered in one line, never a traceback.
        assert "Traceback" not in srv.output and "Exception" not in srv.output, srv.output


def test_bad_requests_are_refused_with_one_line(tmp_path, server):
    import urllib.error
    import urllib.request

    from PIL import Image
    from serve_helpers import get_json, post, wait_job

    big = tmp_path / "big.png"
    Image.new("RGB", (300, 200), (90, 90, 90)).save(big)
    other = tmp_path / "other.png"
    Image.new("RGB", (100, 100), (200, 200, 200)).save(other)
    url = server.url
    code, body = post(f"{url}/api/jobs", [big, other], {"ev": "0,2"})
    assert code == 400 and body["error"] == (
        "error: big.png: image is 300x200 (0.1 MP), above this server's 0.05 MP limit — "
        "downscale the frames, or start the server with a larger --max-megapixels")
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2 * 1024 * 1024))
    code, body = post(f"{url}/api/jobs", [huge, other])
    assert code == 413 and "above this server's 1 MB limit" in body["error"]
    code, body = post(f"{url}/api/jobs", [other, other], {"method": "nope"})
    assert code == 400 and body["error"].startswith("error: unknown method 'nope'")
    code, body = post(f"{url}/api/jobs", [other], {"ev": "0"})  # one frame: the worker's error
    assert code == 200
    assert wait_job(url, body["id"])["error"] == (
        "error: other.png: a bracket needs at least 2 frames, got 1 — pass 2 or more "
        "differently exposed images of the same view")
    for path in ("/api/jobs/..%2F..%2Fetc", "/api/jobs/" + "0" * 32,
                 f"/api/jobs/{body['id']}/download/..%2Fmain.npy",
                 f"/api/jobs/{body['id']}/preview?view=main"):  # failed job: no result
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url + path, timeout=60)
        assert info.value.code == 404
    assert get_json(f"{url}/api/health")["ok"]


def test_exif_exposures_are_shown_then_read_by_the_server(tmp_path, server):
    from bracket_helpers import write_bracket
    from serve_helpers import post, wait_job

    paths, _, _ = write_bracket(tmp_path, h=48, w=64)  # files at 0, -2, +2 EV, with EXIF
    code, body = post(f"{server.url}/api/inspect", paths)
    assert code == 200
    # The CLI's convention: stops from the reference frame (was: from the shortest frame).
    assert [f["ev"] for f in body["frames"]] == [0.0, -2.0, 2.0]
    assert [f["name"] for f in body["frames"]] == [p.name for p in paths]
    assert abs(body["frames"][1]["exposure_s"] - 1 / 240) < 1e-6
    # No ev field: the server reads EXIF itself, as the CLI does.
    code, body = post(f"{server.url}/api/jobs", paths, {"method": "deghost", "compare": "none"})
    status = wait_job(server.url, body["id"])
    assert status["state"] == "done", status
    assert status["messages"][:3] == ["short: IMG_00.jpg (-2.0 EV)",
                                      "reference: IMG_01.jpg (+0.0 EV)", "long: IMG_02.jpg (+2.0 EV)"]
    assert status["maps"] == []  # the classical merge has no gain map


def test_serve_is_a_cli_command(capsys):
    from gmodiff.cli import main

    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--port" in out and "--max-megapixels" in out and "127.0.0.1" in out
    assert "--max-queue" in out and "--max-disk-mb" in out
    for flag, value in (("--max-upload-mb", "1e400"), ("--max-megapixels", "nan"),
                        ("--max-queue", "0"), ("--max-disk-mb", "inf")):
        assert main(["serve", flag, value]) == 2, flag  # click's range check, no traceback


# ------------------------------------------------- other websites (issue 26: Host and Origin)


@pytest.mark.parametrize("host, allowed", [
    ("127.0.0.1:7860", True), ("127.0.0.1", True), ("127.8.9.10:80", True), ("LOCALHOST:7860", True),
    ("localhost", True), ("[::1]:7860", True), ("[::1]", True),
    ("attacker.example", False), ("attacker.example:7860", False), ("127.0.0.1.nip.io", False),
    ("localhost.attacker.example", False), ("10.0.0.5:7860", False), ("::1", False),
    ("[::1", False), ("127.0.0.1:99999", False), ("127.0.0.1:x", False), ("", False),
])
def test_only_loopback_host_names_are_answered(host, allowed):
    from starlette.datastructures import Headers

    from gmodiff.serve.guard import refusal

    refused = refusal(ServeConfig(), "GET", "/api/health", Headers({"host": host}))
    assert (refused is None) == allowed, refused
    if not allowed:
        assert refused[0] == 421 and refused[1].startswith("error: Host ")


def test_the_host_the_server_was_started_with_is_answered_too():
    from starlette.datastructures import Headers

    from gmodiff.serve.guard import refusal

    def ok(config, host, origin=None):
        headers = {"host": host, **({"origin": origin} if origin else {})}
        return refusal(config, "POST", "/api/jobs", Headers(headers)) is None

    lan = ServeConfig(host="192.168.1.20", port=8000)
    assert ok(lan, "192.168.1.20:8000", "http://192.168.1.20:8000")
    assert not ok(lan, "192.168.1.21:8000") and not ok(lan, "photos.example:8000")
    # A wildcard bind answers IP addresses (rebinding needs a name), never foreign names.
    anywhere = ServeConfig(host="0.0.0.0")
    assert ok(anywhere, "10.1.2.3:7860") and not ok(anywhere, "attacker.example:7860")
    # Another port of this computer is another website.
    assert not ok(ServeConfig(), "127.0.0.1:7860", "http://127.0.0.1:3000")
    assert ok(ServeConfig(), "localhost:7860", "http://localhost:7860")


def _done_job(tmp_path, server) -> tuple[str, list[Path]]:
    """A finished deghost job on a small EXIF bracket: (its id, the frames)."""
    from bracket_helpers import write_bracket
    from serve_helpers import post, wait_job

    paths, _, _ = write_bracket(tmp_path, h=48, w=64)
    code, body = post(f"{server.url}/api/jobs", paths, {"method": "deghost"})
    assert code == 200, body
    assert wait_job(server.url, body["id"])["state"] == "done"
    return body["id"], paths


def test_other_websites_cannot_drive_the_server(tmp_path, server):
    """DNS rebinding (a foreign Host) gets nothing, downloads included; a foreign Origin may
    not queue, inspect or download; the page's own origin and loopback names still work."""
    from serve_helpers import multipart, send

    job, frames = _done_job(tmp_path, server)
    url, port = server.url, server.port
    download = f"{url}/api/jobs/{job}/download/jpg"
    assert send(download)[0] == 200
    before = server.job_folders()
    body, content_type = multipart(frames)
    upload = {"Content-Type": content_type}
    for path in ("/api/health", "/", f"/api/jobs/{job}", f"/api/jobs/{job}/download/jpg",
                 f"/api/jobs/{job}/preview?view=main"):
        code, reply = send(url + path, headers={"Host": f"attacker.example:{port}"})
        assert code == 421 and reply["error"].startswith("error: Host 'attacker.example:"), reply
    code, reply = send(f"{url}/api/jobs", "POST", body, {**upload, "Host": "attacker.example"})
    assert code == 421
    for origin in ("http://attacker.example", f"http://attacker.example:{port}", "null",
                   "http://127.0.0.1:3000", f"https://127.0.0.1:{port}"):
        for method, path, data in (("POST", "/api/jobs", body), ("POST", "/api/inspect", body),
                                   ("GET", f"/api/jobs/{job}/download/jpg", None),
                                   ("GET", f"/api/jobs/{job}/download/exr", None)):
            code, reply = send(url + path, method, data, {**upload, "Origin": origin})
            assert code == 403, (origin, path, reply)
            assert reply == {"error": f"error: request from another website ({origin!r}) refused"
                                      f" — use the page at http://127.0.0.1:{port}/ itself"}
    code, _ = send(download, headers={"Sec-Fetch-Site": "cross-site"})
    assert code == 403
    assert server.job_folders() == before  # nothing was queued
    # The page's own origin, and the loopback names of this computer.
    code, reply = send(f"{url}/api/inspect", "POST", body, {**upload, "Origin": url})
    assert code == 200 and len(reply["frames"]) == 3
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "127.0.0.1"):
        assert send(download, headers={"Host": host})[0] == 200
    assert send(download, headers={"Sec-Fetch-Site": "same-origin", "Origin": url})[0] == 200


# ------------------------------------------------------------- bodies that are not an upload


def test_bodies_that_are_not_an_upload_are_refused(tmp_path, server):
    """Empty, JSON, form without frames, cut-off and aborted bodies: one line each, no job, no
    folder left, no traceback in the server's log (checked when the fixture stops it)."""
    import socket

    from serve_helpers import get_json, multipart, send

    url = f"{server.url}/api/jobs"
    before = server.job_folders()
    png = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (90, 90, 90)).save(png)
    full, content_type = multipart([png, png])
    cut = full[: full.rindex(b"--")]  # no closing boundary
    no_files, no_files_type = multipart([], {"method": "auto"})
    cases = [
        (b"", {"Content-Type": content_type}, 400, "the upload is empty"),
        (b'{"files": []}', {"Content-Type": "application/json"}, 415,
         "not a multipart form of frames (Content-Type application/json)"),
        (no_files, {"Content-Type": no_files_type}, 400, "the upload has no frames"),
        (cut, {"Content-Type": content_type}, 400, "the upload ended before its last part"),
        (full, {"Content-Type": "multipart/form-data; boundary=other"}, 400,
         "the upload is not a valid multipart form"),
        (None, {"Content-Type": content_type}, 411, "the upload has no Content-Length"),
        (*multipart([png] * 10), 413, "more than 9 frames, above this server's limit of 9"),
    ]
    for body, headers, status, text in cases:
        if isinstance(headers, str):  # (body, content type) from multipart()
            headers = {"Content-Type": headers}
        code, reply = send(url, "POST", body, headers)
        assert code == status and set(reply) == {"error"}, (text, reply)
        assert reply["error"].startswith("error: ") and text in reply["error"], reply
        assert "\n" not in reply["error"]
    # A client that goes away mid-upload.
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: "
                    f"{content_type}\r\nContent-Length: {len(full) + 100_000}\r\n\r\n".encode()
                    + full[:-10])
    deadline = time.monotonic() + 30
    while server.job_folders() != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.job_folders() == before
    assert get_json(f"{server.url}/api/health")["pending"] == 0


def test_every_error_has_the_one_line_shape(server):
    from serve_helpers import send

    for method, path, status in (("GET", "/nope", 404), ("GET", "/static/nope.js", 404),
                                 ("DELETE", "/api/jobs", 405), ("PUT", "/api/health", 405),
                                 ("GET", f"/api/jobs/{'0' * 32}/preview?ev=abc", 400),
                                 ("GET", "/api/jobs/nope", 404)):
        code, reply = send(server.url + path, method)
        assert code == status and set(reply) == {"error"}, (path, reply)
        assert reply["error"].startswith("error: ") and "\n" not in reply["error"], reply


def test_pixel_limit_uses_the_header_even_beyond_pillows_bomb_limit(tmp_path, server):
    """A valid 20000x14000 PNG (280 MP: Pillow's own bomb check refuses to open it) is refused
    at upload, naming the file and its size; no job is queued."""
    import struct
    import zlib

    from serve_helpers import post

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 14000,
                                                                       8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    other = tmp_path / "other.png"
    from PIL import Image

    Image.new("RGB", (20, 14)).save(other)
    before = server.job_folders()
    for route in ("/api/jobs", "/api/inspect"):
        code, body = post(f"{server.url}{route}", [other, bomb])
        assert code == 400 and body["error"] == (
            "error: bomb.png: image is 20000x14000 (280.0 MP), above this server's 0.05 MP limit"
            " — downscale the frames, or start the server with a larger --max-megapixels")
    assert server.job_folders() == before


# ------------------------------------------------------- bounded queue, disk budget (issue 26)


def _frames(tmp_path, n: int = 2, size=(40, 30)) -> list[tuple[str, tuple[str, bytes, str]]]:
    """``n`` small PNG frames as a TestClient ``files=`` list."""
    import io

    from PIL import Image

    files = []
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", size, (60 * (i + 1), 90, 90)).save(buf, "PNG")
        files.append(("files", (f"f{i}.png", buf.getvalue(), "image/png")))
    return files


def _client(config: ServeConfig):
    pytest.importorskip("fastapi", reason="the 'ui' extra (fastapi, uvicorn) is not installed")
    from starlette.testclient import TestClient

    from gmodiff.serve.app import create_app

    app = create_app(config)
    return app, TestClient(app, base_url=f"http://127.0.0.1:{config.port}")


def _finished(client, job_id: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status.get("state") in ("done", "failed"):
            return status
        time.sleep(0.02)
    raise TimeoutError(job_id)


def test_the_queue_is_bounded_and_frames_go_when_their_job_ends(tmp_path, monkeypatch):
    release, seen = threading.Event(), {}

    def fake_run(job):
        seen[job.id] = sorted(p.name for p in job.inputs.iterdir())
        assert release.wait(20)
        if job.request.ev == "bad":
            raise ExposureError("--ev must be comma-separated numbers, got 'bad'")
        job.outputs.mkdir()
        (job.outputs / "main.jpg").write_bytes(b"result")

    monkeypatch.setattr(jobs_module, "run_job", fake_run)
    app, client = _client(ServeConfig(workdir=tmp_path, preload=False, max_pending=2))
    with client:
        root = app.state.jobs.root
        good = client.post("/api/jobs", files=_frames(tmp_path), data={"ev": "0,2"})
        bad = client.post("/api/jobs", files=_frames(tmp_path), data={"ev": "bad"})
        assert good.status_code == bad.status_code == 200
        ids = [good.json()["id"], bad.json()["id"]]
        full = client.post("/api/jobs", files=_frames(tmp_path))
        assert full.status_code == 429 and full.headers["retry-after"] == "30"
        assert full.json() == {"error": "error: the server already has 2 jobs waiting or "
                                        "running, its limit — wait for one to finish and upload "
                                        "again (or start the server with a larger --max-queue)"}
        assert sorted(p.name for p in root.iterdir()) == sorted(ids)  # the refused one left none
        release.set()
        assert _finished(client, ids[0])["state"] == "done"
        failed = _finished(client, ids[1])
        assert failed["error"] == "error: --ev must be comma-separated numbers, got 'bad'"
        assert seen[ids[0]] == ["f0.png", "f1.png"]
        # Frames deleted once the job ended; results kept; a failed job keeps nothing.
        assert sorted(p.name for p in (root / ids[0]).iterdir()) == ["out"]
        assert not (root / ids[1]).exists()
        assert client.get(f"/api/jobs/{ids[0]}/download/jpg").content == b"result"
        again = client.post("/api/jobs", files=_frames(tmp_path))
        assert again.status_code == 200  # the line has room again
        _finished(client, again.json()["id"])


def test_uploads_are_written_under_the_workdir_only(tmp_path, monkeypatch):
    """A 1.7 MB frame: Starlette would spool it to the system temp folder; ours goes straight
    into the job's folder under --workdir."""
    import io
    import tempfile

    from PIL import Image

    spooled = []
    real = tempfile.TemporaryFile
    monkeypatch.setattr(tempfile, "TemporaryFile",
                        lambda *a, **k: spooled.append(a) or real(*a, **k))
    release, sizes = threading.Event(), {}
    monkeypatch.setattr(jobs_module, "run_job", lambda job: (
        sizes.update({p.name: p.stat().st_size for p in job.inputs.iterdir()}),
        release.wait(20)))
    noise = np.random.default_rng(0).integers(0, 255, (700, 800, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG", compress_level=0)
    big = buf.getvalue()
    app, client = _client(ServeConfig(workdir=tmp_path / "work", preload=False))
    with client:
        files = [("files", ("big.png", big, "image/png")), *_frames(tmp_path, 1)]
        reply = client.post("/api/jobs", files=files, data={"ev": "0,2"})
        assert reply.status_code == 200, reply.json()
        release.set()
        _finished(client, reply.json()["id"])
    assert len(big) > 1.5e6 and sizes["big.png"] == len(big)
    assert spooled == []


def test_the_work_folder_has_a_disk_budget(tmp_path, monkeypatch):
    """Results give way oldest first; an upload that still would not fit (a running job holds
    the space) is refused in one line and nothing is deleted for it."""
    release = threading.Event()

    def fake_run(job):  # ev: "<KiB of results>" or "block:<KiB>" (then wait)
        kib = int(job.request.ev.split(":")[-1])
        job.outputs.mkdir()
        (job.outputs / "main.npy").write_bytes(bytes(kib * 1024))
        if job.request.ev.startswith("block"):
            assert release.wait(20)

    monkeypatch.setattr(jobs_module, "run_job", fake_run)
    # 40x30 frames: each upload also books 1200 px × 64 B = 75 KiB for its results.
    app, client = _client(ServeConfig(workdir=tmp_path, preload=False, max_disk_mb=1.0))
    with client:
        def upload(ev: str):
            return client.post("/api/jobs", files=_frames(tmp_path), data={"ev": ev})

        ids = {}
        for name, ev in (("a", "500"), ("b", "450"), ("c", "300")):
            reply = upload(ev)
            assert reply.status_code == 200, reply.json()
            ids[name] = reply.json()["id"]
            _finished(client, ids[name])
        # c did not fit beside a and b: the oldest (a) made room.
        assert client.get(f"/api/jobs/{ids['a']}").status_code == 404
        assert client.get(f"/api/jobs/{ids['b']}").json()["state"] == "done"
        blocker = upload("block:1000").json()["id"]
        deadline = time.monotonic() + 20
        while client.get(f"/api/jobs/{blocker}").json()["state"] != "running" \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        before = sorted(p.name for p in app.state.jobs.root.iterdir())
        refused = upload("1")
        assert refused.status_code == 507
        assert refused.json() == {"error": (
            "error: the server's work folder is full (its budget is 1 MB, taken by jobs that are "
            "still queued or running) — wait for a job to finish and upload again, or start the "
            "server with a larger --max-disk-mb")}
        assert sorted(p.name for p in app.state.jobs.root.iterdir()) == before
        assert client.get(f"/api/jobs/{ids['c']}").json()["state"] == "done"
        release.set()
        _finished(client, blocker)


# ------------------------------------------------ the web page's write road is the CLI's (issue 24)


def test_the_page_writes_what_the_cli_writes(tmp_path, server, capsys):
    """A two-frame bracket: the page's result is level-anchored and written like
    `gmodiff reconstruct` (same EXR), and its Ultra HDR download carries the reference EXIF."""
    import io

    from PIL import Image
    from bracket_helpers import write_bracket
    from serve_helpers import post, send, wait_job

    from gmodiff.cli import main
    from gmodiff.io.hdr import read_hdr

    paths, _, _ = write_bracket(tmp_path, h=48, w=64, stops=(0.0, 2.0))
    code, body = post(f"{server.url}/api/jobs", paths, {"method": "deghost"})
    assert code == 200, body
    status = wait_job(server.url, body["id"])
    assert status["state"] == "done", status
    downloads = {}
    for fmt in ("exr", "jpg"):
        code, reply = send(f"{server.url}/api/jobs/{body['id']}/download/{fmt}")
        assert code == 200
        downloads[fmt] = tmp_path / f"page.{fmt}"
        downloads[fmt].write_bytes(reply["raw"])
    cli = tmp_path / "cli.exr"
    assert main(["reconstruct", *map(str, paths), "--method", "deghost", "-o", str(cli),
                 "--quiet"]) == 0
    capsys.readouterr()
    np.testing.assert_array_equal(read_hdr(downloads["exr"]), read_hdr(cli))
    with Image.open(downloads["jpg"]) as im:
        exposure = im.getexif().get_ifd(0x8769).get(0x829A)  # Exif IFD → ExposureTime
    line = next(m for m in status["messages"] if m.startswith("reference: "))
    reference = line.removeprefix("reference: ").split(" (")[0]
    with Image.open(next(p for p in paths if p.name == reference)) as im:
        assert exposure is not None and exposure == im.getexif().get_ifd(0x8769).get(0x829A)


def test_the_errors_table_names_these_tests():
    """docs/errors.md's web-page table: every row names tests that exist here or in the
    browser test (tests/test_errors_table.py checks the CLI tables)."""
    import re

    docs = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
    section = docs.read_text(encoding="utf-8").split("## The web page (`gmodiff serve`)")[1]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "::test_" in line]
    assert len(rows) >= 10
    here = Path(__file__).parent
    for row in rows:
        for module, name in re.findall(r"`(test_serve_\w+)\.py::(test_\w+)`", row):
            assert f"def {name}(" in (here / f"{module}.py").read_text(encoding="utf-8"), name


def test_a_full_disk_while_uploading_is_one_line(tmp_path, monkeypatch):
    import errno
    import os

    from gmodiff.serve import form as form_module

    def full(self, data, start, end):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(form_module._Parser, "on_part_data", full)
    app, client = _client(ServeConfig(workdir=tmp_path, preload=False))
    with client:
        reply = client.post("/api/jobs", files=_frames(tmp_path))
        assert reply.status_code == 507 and reply.json() == {"error": (
            "error: the disk of the server's work folder is full — free some space, or start "
            "the server with --workdir on another disk")}
        assert list(app.state.jobs.root.iterdir()) == []
