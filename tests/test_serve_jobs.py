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
    check_pixels(path, "png", "big.png", max_megapixels=0.02)
    with pytest.raises(SceneError, match=r"big.png: image is 200x100 \(0.0 MP\), above this "
                                         r"server's 0.01 MP limit"):
        check_pixels(path, "png", "big.png", max_megapixels=0.01)


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
    assert code == 400 and "above this server's 1 MB limit" in body["error"]
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
    assert [f["ev"] for f in body["frames"]] == [2.0, 0.0, 4.0]
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
