"""Test helpers for ``gmodiff serve``: a small bundled bracket and a server in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SUNSET = Path(__file__).resolve().parents[1] / "src" / "gmodiff" / "samples" / "sunset"
SUNSET_EV = (0.0, 2.0, 4.0)
"""The sample's exposure.txt, in stops (its TIFFs carry no EXIF exposure)."""


def small_sunset(folder: Path, width: int = 160, height: int = 120) -> list[Path]:
    """The bundled sunset bracket downscaled to ``width``×``height`` 16-bit TIFFs."""
    import cv2
    import tifffile

    paths = []
    for i in (1, 2, 3):
        frame = tifffile.imread(SUNSET / f"input_{i}.tif")
        small = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        paths.append(folder / f"sunset_{i}.tif")
        tifffile.imwrite(paths[-1], small)
    return paths


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 60.0) -> dict:
    """GET ``url`` and decode its JSON body."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class ServerProcess:
    """``python -m gmodiff serve`` on a free port, started and stopped by the test."""

    def __init__(self, workdir: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.output = ""
        """What the server printed (stdout and stderr), once :meth:`stop` returned."""
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
               "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                              os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gmodiff", "serve", "--port", str(self.port),
             "--workdir", str(workdir), *extra],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Block until /api/health answers (or fail with the server's output)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read()}")
            try:
                if get_json(f"{self.url}/api/health", timeout=1)["ok"]:
                    return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("server did not start")

    def stop(self) -> int:
        """Ctrl+C the server and wait for it; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=180)  # a starved CPU can make exit take a minute
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.output = self.proc.stdout.read()
        return self.proc.returncode

    def job_folders(self) -> set[str]:
        """Names of the job folders in the server's work folder now."""
        return {p.name for root in self.workdir.glob("gmodiff-serve-*") for p in root.iterdir()
                if len(p.name) == 32}


def multipart(files: list[Path], fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body with ``files`` under the name "files"; (body, content type)."""
    import uuid

    boundary = uuid.uuid4().hex
    parts = []
    for key, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
                     f"{value}\r\n".encode())
    for path in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                     f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                     .encode() + path.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def post(url: str, files: list[Path], fields: dict[str, str] | None = None,
         timeout: float = 120.0, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """POST a multipart upload; (HTTP status, JSON body), errors included."""
    body, content_type = multipart(files, fields)
    return send(url, "POST", body, {"Content-Type": content_type, **(headers or {})}, timeout)


def send(url: str, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 120.0) -> tuple[int, dict]:
    """Any request (``Host`` may be set too); (HTTP status, JSON body or {"raw": bytes})."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        headers = dict(headers or {})
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.putrequest(method, path, skip_host="Host" in headers,
                              skip_accept_encoding=True)
        for key, value in headers.items():
            connection.putheader(key, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, {"raw": data}


def wait_job(base: str, job_id: str, timeout: float = 300.0) -> dict:
    """Poll a job until it is done or failed; its last status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = get_json(f"{base}/api/jobs/{job_id}")
        if status["state"] in ("done", "failed"):
            return status
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} did not finish")
