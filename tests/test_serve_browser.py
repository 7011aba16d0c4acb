"""``gmodiff serve`` driven by a real headless Chromium (Debian's chromium + chromium-driver via
selenium; nothing is downloaded): upload a bracket, watch it run, slide the exposure, see the
gain map, download and decode the Ultra HDR JPEG, upload broken files, and the server lives on.

Set GMODIFF_UPDATE_SCREENSHOTS=1 to also refresh docs/img/serve*.png.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import SUNSET_EV, ServerProcess, get_json, small_sunset

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip("Debian chromium + chromium-driver are not installed (scripts/install-system.sh "
                "installs them as root)", allow_module_level=True)
pytest.importorskip("fastapi", reason="the 'ui' extra (fastapi, uvicorn) is not installed")
pytest.importorskip("uvicorn", reason="the 'ui' extra (fastapi, uvicorn) is not installed")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
MEAN_JS = """
const img = arguments[0];
const c = document.createElement('canvas');
c.width = img.naturalWidth; c.height = img.naturalHeight;
const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
const d = ctx.getImageData(0, 0, c.width, c.height).data;
let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2];
return s / (3 * c.width * c.height);
"""


@pytest.fixture()
def browser(tmp_path, monkeypatch):
    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium-manager must never fetch anything
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,1500",
                 # DNS rebinding, simulated: another website's name that resolves to us.
                 "--host-resolver-rules=MAP attacker.example 127.0.0.1",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    driver.downloads = downloads
    yield driver
    driver.quit()


@pytest.fixture()
def server(tmp_path):
    srv = ServerProcess(tmp_path / "work")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


DROP_JS = """
const [source, zone] = arguments;
const transfer = new DataTransfer();
for (const file of source.files) transfer.items.add(file);
zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: transfer, bubbles: true}));
zone.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true}));
source.remove();
"""


def _choose(driver, paths: list[Path], evs: list[float] | None, drop: bool = False) -> None:
    names = "\n".join(str(p) for p in paths)
    if drop:  # a file input of the test's own holds the files; the page only sees the drop
        source = driver.execute_script(
            "const i = document.createElement('input'); i.type = 'file'; i.multiple = true;"
            "document.body.appendChild(i); return i;")
        source.send_keys(names)
        driver.execute_script(DROP_JS, source, driver.find_element(By.ID, "dropzone"))
    else:
        driver.find_element(By.ID, "files").send_keys(names)
    if evs is None:
        return
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "input.ev")) == len(paths))
    for field, ev in zip(driver.find_elements(By.CSS_SELECTOR, "input.ev"), evs):
        field.clear()
        field.send_keys(f"{ev:g}")


def _mean(driver, element_id: str, ev: str) -> float:
    img = driver.find_element(By.ID, element_id)
    WebDriverWait(driver, 60).until(lambda d: img.get_attribute("data-loaded-ev") == ev)
    return driver.execute_script(MEAN_JS, img)


def _screenshot(driver, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / name))
    assert (tmp_path / name).stat().st_size > 10_000
    if os.environ.get("GMODIFF_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, DOCS_IMG / name)


def test_page_end_to_end(tmp_path, server, browser, capsys):
    from gmodiff.cli import main
    from gmodiff.io.ultrahdr import read

    start = time.monotonic()
    frames = small_sunset(tmp_path)
    driver = browser
    driver.get(server.url)
    assert "gmodiff" in driver.title

    # Dropped on the page; no EXIF in the sample's TIFFs, so the page asks for the exposures.
    _choose(driver, frames, list(SUNSET_EV), drop=True)
    assert "no EXIF" in driver.find_element(By.ID, "ev-note").text
    run = driver.find_element(By.ID, "run")
    WebDriverWait(driver, 120).until(lambda d: run.is_enabled())
    run.click()
    # Generous: the model loads first, and a loaded shared CPU can make that take minutes.
    try:
        WebDriverWait(driver, 400).until(
            lambda d: d.find_element(By.ID, "result").is_displayed()
            or d.find_element(By.ID, "error").is_displayed())
    except TimeoutException:
        driver.save_screenshot(str(tmp_path / "timeout.png"))
        pytest.fail(f"no result; the page says {driver.find_element(By.ID, 'status-text').text!r}")
    assert not driver.find_element(By.ID, "error").is_displayed(), \
        driver.find_element(By.ID, "error").text
    assert driver.find_element(By.ID, "status-text").text.startswith("done in")
    notes = driver.find_element(By.ID, "notes").text
    assert "reference: sunset_2.tif" in notes
    before = _mean(driver, "preview", "0.0")
    _screenshot(driver, tmp_path, "serve.png")

    # The slider re-renders from the kept HDR: +4 stops is much brighter, -4 darker.
    slider = driver.find_element(By.ID, "ev-slider")
    slider.send_keys(Keys.END)
    assert driver.find_element(By.ID, "ev-value").text == "+4.0 EV"
    brighter = _mean(driver, "preview", "4.0")
    slider.send_keys(Keys.HOME)
    darker = _mean(driver, "preview", "-4.0")
    assert brighter > before + 20 and darker < before - 20, (darker, before, brighter)

    # Gain map on demand.
    driver.find_element(By.ID, "show-gain").click()
    map_img = driver.find_element(By.ID, "map-img")
    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth",
                                   map_img) == 160)

    # Download the Ultra HDR JPEG through the browser, decode it with our reader.
    driver.find_element(By.ID, "dl-jpg").click()
    target = browser.downloads / "sunset_2-hdr.jpg"
    WebDriverWait(driver, 60).until(lambda d: target.is_file())
    decoded = read(target)
    assert decoded.hdr.shape == (120, 160, 3)
    assert np.isfinite(decoded.radiance).all() and decoded.radiance.min() >= 0
    assert decoded.hdr.max() > 1.5  # highlights above SDR white: a real HDR, not an SDR copy

    # A truncated JPEG: the page shows the CLI's own one-line message.
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    _choose(driver, [frames[0], broken], [0, 2])
    WebDriverWait(driver, 120).until(lambda d: run.is_enabled())
    run.click()
    error = driver.find_element(By.ID, "error")
    WebDriverWait(driver, 120).until(lambda d: error.is_displayed())
    assert main(["reconstruct", str(frames[0]), str(broken), "--ev", "0,2",
                 "-o", str(tmp_path / "cli.exr")]) == 2
    cli_line = capsys.readouterr().err.strip().replace(f"{tmp_path}/", "")
    assert error.text == cli_line
    _screenshot(driver, tmp_path, "serve-error.png")

    # Not an image at all (checked by content, whatever the name says): refused on upload.
    fake = tmp_path / "holiday.jpg"
    fake.write_bytes(b"GIF89a not a bracket frame")
    _choose(driver, [frames[0], fake], None)
    WebDriverWait(driver, 60).until(lambda d: "holiday.jpg: not a JPEG, PNG or TIFF" in error.text)

    # The server is still there, and Ctrl+C removes every result.
    assert get_json(f"{server.url}/api/health")["ok"]
    driver.get(server.url)
    assert driver.find_element(By.ID, "dropzone").is_displayed()
    assert server.stop() == 0
    assert list(server.workdir.iterdir()) == []
    assert time.monotonic() - start < 600  # 35-50 s alone on the shared 2-core machine


FOREIGN_PAGE = """<!doctype html><title>another website</title><script>
async function attack(target, png) {
  const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
  const form = new FormData();
  for (const name of ["a.png", "b.png"]) form.append("files", new Blob([bytes]), name);
  form.append("ev", "0,2");
  const results = [];
  for (const mode of ["no-cors", "cors"]) {
    try { await fetch(target + "/api/jobs", {method: "POST", mode, body: form});
          results.push("sent"); }
    catch (e) { results.push("blocked"); }
  }
  return results;
}
</script>"""


def _foreign_site(port: int):
    """Another website on this computer (a page on another port: another origin)."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 — http.server's name
            body = FOREIGN_PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.1", port), Page)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    return site


def test_other_websites_cannot_use_the_server(tmp_path, browser):
    """From the browser: the page works at its loopback names; a rebound name gets the one-line
    refusal, and a page of another origin cannot queue a job (its POSTs are refused)."""
    import base64
    import io

    from PIL import Image
    from serve_helpers import free_port

    srv = ServerProcess(tmp_path / "work", "--no-preload")
    site = _foreign_site(free_port())
    try:
        srv.wait_ready()
        buf = io.BytesIO()
        Image.new("RGB", (16, 12), (90, 90, 90)).save(buf, "PNG")
        png = base64.b64encode(buf.getvalue()).decode()
        for base in (srv.url, f"http://localhost:{srv.port}"):
            browser.get(base)
            assert browser.find_element(By.ID, "dropzone").is_displayed()
            # The page's own POST (the browser adds its Origin) is answered.
            status = browser.execute_script(
                "const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));"
                "const form = new FormData();"
                "for (const n of ['a.png', 'b.png']) form.append('files', new Blob([bytes]), n);"
                "return fetch('/api/inspect', {method: 'POST', body: form})"
                ".then((r) => r.status);", png)
            assert status == 200
        browser.get(f"http://attacker.example:{srv.port}/")
        assert "error: Host 'attacker.example:" in browser.find_element(By.TAG_NAME, "body").text
        for origin in (f"http://127.0.0.1:{site.server_port}",
                       f"http://attacker.example:{site.server_port}"):
            browser.get(origin + "/")
            browser.execute_script("window.done = null; attack(arguments[0], arguments[1])"
                                   ".then((r) => { window.done = r; });", srv.url, png)
            WebDriverWait(browser, 30).until(lambda d: d.execute_script("return window.done"))
            assert browser.execute_script("return window.done") == ["sent", "blocked"]
        assert srv.job_folders() == set()
        assert get_json(f"{srv.url}/api/health")["pending"] == 0
    finally:
        site.shutdown()
        assert srv.stop() == 0
    assert "Traceback" not in srv.output
