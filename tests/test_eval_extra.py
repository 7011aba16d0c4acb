"""``gmodiff eval --extra cvvdp,flip`` / ``--compare``: the metrics environment, HDR-FLIP
in-process, the paper-layout table, and the Kalantari protocol script on a simulated stand-in.

The cvvdp tests need ``.venv-metrics/`` (``make metrics-env``; ``make test`` builds it first and
sets GMODIFF_REQUIRE_METRICS_ENV=1 so that a missing env fails instead of skipping).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from gmodiff.cli import main
from gmodiff.cli.evaluate import format_methods_table
from gmodiff.evaluation.folder import EvalReport, read_scene_units
from gmodiff.io.hdr import read_hdr, write_hdr
from gmodiff.io.scene import Scene, save_scene
from gmodiff.metrics import (CvvdpSession, ExtraMetrics, MetricsEnvError, available, cvvdp_jod,
                             parse_extra, psnr_mu)
from gmodiff.metrics import cvvdp_env

REPO = Path(__file__).resolve().parents[1]
needs_metrics_env = pytest.mark.skipif(
    not available()["cvvdp"] and os.environ.get("GMODIFF_REQUIRE_METRICS_ENV") != "1",
    reason="no metrics environment: run `make metrics-env`")


def _gt(seed: int, shape=(48, 64, 3)) -> np.ndarray:
    # smooth gradients plus texture: something cvvdp and FLIP can see differences on
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:shape[0], 0:shape[1]] / max(shape)
    base = 0.05 + 0.6 * x[..., None] * np.array([1.0, 0.8, 0.6]) + 0.2 * y[..., None]
    return (base + 0.1 * rng.random(shape)).astype(np.float32)


def _noisy(gt: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, gt.shape)
    return np.clip(gt + noise * gt, 0, None).astype(np.float32)


@pytest.fixture()
def bench(tmp_path):
    """Two scenes, a close and a far prediction folder (float EXR)."""
    root, close, far = tmp_path / "scenes", tmp_path / "close", tmp_path / "far"
    close.mkdir()
    far.mkdir()
    for seed, name in enumerate(["alpha", "beta"]):
        gt = _gt(seed)
        frames = [np.clip(gt * t, 0, 1) ** (1 / 2.2) for t in (1.0, 4.0, 16.0)]
        save_scene(Scene(frames=frames, exposure_times=np.array([1.0, 4.0, 16.0]),
                         ground_truth=gt), root / name)
        write_hdr(close / f"{name}.exr", _noisy(gt, 0.02, seed), half=False)
        write_hdr(far / f"{name}.exr", _noisy(gt, 0.3, seed), half=False)
    return root, close, far, tmp_path


@pytest.fixture()
def no_metrics_env(tmp_path, monkeypatch):
    """As on a fresh clone before `make metrics-env`."""
    monkeypatch.delenv(cvvdp_env.METRICS_PYTHON_VAR, raising=False)
    monkeypatch.setattr(cvvdp_env, "metrics_env_candidates", lambda: [tmp_path / ".venv-metrics"])


def test_parse_extra():
    assert parse_extra("flip,CVVDP") == ("cvvdp", "flip")
    assert parse_extra("all") == ("cvvdp", "flip") and parse_extra(None) == ()
    from gmodiff.errors import ConfigError

    with pytest.raises(ConfigError, match="'vdp'.*cvvdp, flip"):
        parse_extra("flip,vdp")


def test_missing_metrics_env_is_one_line_naming_make_target(bench, capsys, no_metrics_env):
    root, close, _far, tmp = bench
    out = tmp / "m.csv"
    assert not available()["cvvdp"]
    assert cvvdp_jod(_gt(0), _gt(0)) is None
    with pytest.raises(MetricsEnvError, match="make metrics-env"):
        cvvdp_jod(_gt(0), _gt(0), required=True)
    capsys.readouterr()
    assert main(["eval", "--pred", str(close), "--gt", str(root), "--extra", "cvvdp,flip",
                 "-o", str(out), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "make metrics-env" in captured.err
    assert ".venv-metrics" in captured.err and "Traceback" not in captured.err
    assert captured.out == "" and not out.exists()  # failed before scoring anything


def test_broken_metrics_python_is_one_line(tmp_path, monkeypatch):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named pycvvdp' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv(cvvdp_env.METRICS_PYTHON_VAR, str(fake))
    with CvvdpSession() as session, pytest.raises(MetricsEnvError) as err:
        session.score(_gt(0), _gt(0))
    message = str(err.value)
    assert "No module named pycvvdp" in message and "make metrics-env" in message
    assert "\n" not in message
    monkeypatch.setenv(cvvdp_env.METRICS_PYTHON_VAR, str(tmp_path / "nope"))
    with pytest.raises(MetricsEnvError, match="names no file"):
        ExtraMetrics(["cvvdp"]).start()


def test_flip_in_process_orders_predictions(bench, capsys):
    root, close, far, tmp = bench
    out = tmp / "m.json"
    assert main(["eval", "--pred", str(close), "--gt", str(root), "--extra", "flip",
                 "-o", str(out), "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "FLIP↓" in stdout and "PSNR-μ" in stdout and "flip-evaluator 1.7" in stdout
    report = json.loads(out.read_text())
    assert report["metrics"][-1] == "hdr_flip" and "cvvdp_jod" not in report["metrics"]
    assert any("lower is better" in note for note in report["notes"])
    close_flip = report["mean"]["hdr_flip"]
    assert main(["eval", "--pred", str(far), "--gt", str(root), "--extra", "flip",
                 "-o", str(out), "--no-progress"]) == 0
    assert 0 < close_flip < json.loads(out.read_text())["mean"]["hdr_flip"]
    # an identical prediction has zero error
    with ExtraMetrics(["flip"]) as extra:
        assert extra.score(_gt(3), _gt(3))["hdr_flip"] == pytest.approx(0.0, abs=1e-6)


def test_flip_absent(monkeypatch):
    import sys

    from gmodiff.errors import MetricUnavailableError
    from gmodiff.metrics import hdr_flip

    monkeypatch.setitem(sys.modules, "flip_evaluator", None)  # find_spec → None: not installed
    assert not available()["flip"] and hdr_flip(_gt(0), _gt(0)) is None
    with pytest.raises(MetricUnavailableError, match="flip-evaluator.*requirements.txt"):
        ExtraMetrics(["flip"]).start()
    assert ExtraMetrics(["flip"], required=False).start().names == ()


def test_compare_table_and_reports(bench, capsys):
    root, close, far, tmp = bench
    (far / "beta.exr").unlink()
    out_csv, out_json = tmp / "c.csv", tmp / "c.json"
    argv = ["eval", "--gt", str(root), "--compare", str(close), str(far), "--allow-missing",
            "--no-progress"]
    assert main([*argv, "-o", str(out_csv)]) == 1  # a method lacks a scene: still exit 1
    stdout = capsys.readouterr().out
    lines = stdout.splitlines()
    assert lines[0].split()[:3] == ["method", "PSNR-μ", "PSNR-l"]
    assert lines[1].startswith("close") and lines[2].startswith("far")
    assert lines[2].rstrip().endswith("1 (1 missing)")
    rows = list(csv.reader(out_csv.open()))
    assert rows[0][:3] == ["method", "scene", "psnr_mu"]
    by_key = {(r[0], r[1]): r for r in rows[1:]}
    assert by_key[("far", "beta")][2] == "missing"
    expect = psnr_mu(read_hdr(close / "alpha.exr"), read_hdr(root / "alpha" / "HDRImg.hdr"))
    assert float(by_key[("close", "alpha")][2]) == pytest.approx(expect)
    mean = (float(by_key[("close", "alpha")][2]) + float(by_key[("close", "beta")][2])) / 2
    assert float(by_key[("close", "mean")][2]) == pytest.approx(mean)
    assert main([*argv, "-o", str(out_json)]) == 1
    report = json.loads(out_json.read_text())
    assert list(report["methods"]) == ["close", "far"]
    assert report["methods"]["far"]["missing"] == ["beta"]
    assert report["methods"]["close"]["mean"]["psnr_mu"] == pytest.approx(mean)
    # folders without --compare, or --compare without folders: one line, exit 2
    capsys.readouterr()
    assert main(["eval", "--gt", str(root), str(close)]) == 2
    assert "--compare" in capsys.readouterr().err
    assert main(["eval", "--gt", str(root), "--compare"]) == 2


def test_methods_table_takes_new_columns():
    # a metric the table has no label for (e.g. a region PSNR) still gets a column; a method
    # without it shows "-"
    a = EvalReport(metric_names=["psnr_mu", "psnr_mu_clipped"],
                   rows=[{"scene": "s", "psnr_mu": 40.0, "psnr_mu_clipped": 30.0}])
    b = EvalReport(metric_names=["psnr_mu"], rows=[{"scene": "s", "psnr_mu": 41.0}])
    text = format_methods_table({"a": a, "b": b}, ["note line"])
    header, row_a, row_b, note = text.splitlines()
    assert header.split() == ["method", "PSNR-μ", "psnr_mu_clipped", "scenes"]
    assert row_a.split() == ["a", "40.00", "30.00", "1"]
    assert row_b.split() == ["b", "41.00", "-", "1"] and note == "note line"


@needs_metrics_env
def test_cvvdp_gives_higher_jod_to_closer_prediction():
    gt = _gt(0)
    session = cvvdp_env.shared_session()  # the process's worker: the CLI test below reuses it
    identical = session.score(gt, gt)
    close = session.score(_noisy(gt, 0.02), gt)
    far = session.score(_noisy(gt, 0.3), gt)
    # absolute scale comes from max(gt) = 1000 cd/m², so a common gain changes nothing
    scaled = cvvdp_jod(_noisy(gt, 0.02) * 8, gt * 8, required=True)
    info = session.info
    assert cvvdp_env.shared_session() is session and session._process.poll() is None
    assert identical == pytest.approx(10.0, abs=1e-3)
    assert far < close < identical
    assert scaled == pytest.approx(close, abs=1e-3)
    assert info.display == "standard_hdr_linear" and info.cvvdp == "0.5.7"
    assert "standard_hdr_linear" in info.describe() and "1000 cd/m²" in info.describe()


@needs_metrics_env
def test_eval_extra_cvvdp_flip_cli(bench, capsys):
    root, close, far, tmp = bench
    out = tmp / "c.csv"
    assert main(["eval", "--gt", str(root), "--compare", str(close), str(far),
                 "--extra", "cvvdp,flip", "-o", str(out), "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    header = stdout.splitlines()[0].split()
    assert header[:2] == ["method", "PSNR-μ"] and header[-3:] == ["JOD", "FLIP↓", "scenes"]
    assert "display 'standard_hdr_linear'" in stdout and "max(GT) = 1000 cd/m²" in stdout
    rows = {(r[0], r[1]): r for r in csv.reader(out.open())}
    names = rows[("method", "scene")]
    jod, flip = names.index("cvvdp_jod"), names.index("hdr_flip")
    assert float(rows[("close", "mean")][jod]) > float(rows[("far", "mean")][jod])
    assert float(rows[("close", "mean")][flip]) < float(rows[("far", "mean")][flip])


def _kalantari():
    spec = importlib.util.spec_from_file_location("kalantari", REPO / "benchmarks" / "kalantari.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kalantari_protocol_on_simulated_stand_in(tmp_path, capsys):
    sims = tmp_path / "Test"
    assert main(["simulate", "procedural", str(sims), "--count", "2", "--size", "48x32",
                 "--seed", "0", "--no-progress"]) == 0
    kalantari = _kalantari()
    out, saved = tmp_path / "res" / "k.md", tmp_path / "saved"
    assert kalantari.main(["--root", str(sims), "--method", "deghost", "--extra", "flip",
                           "--out", str(out), "--save-pred", str(saved)]) == 0
    text = out.read_text()
    for peer, (mu, linear) in kalantari.PEERS.items():
        assert f"| {peer} | {mu:.2f} | {linear:.2f} |" in text
    assert "**not** Kalantari's 15 test scenes" in text and "clipped to [0, 1]" in text
    ours = next(line for line in text.splitlines() if line.startswith("| **deghost**"))
    rows = list(csv.reader(out.with_suffix(".csv").open()))
    assert [r[0] for r in rows[1:]] == ["procedural_000", "procedural_001", "mean"]
    mean_mu = float(rows[3][1])
    assert ours.split("|")[2].strip() == f"{mean_mu:.2f}"
    # the same numbers as scoring the saved predictions (reference-white units, brought back to
    # the scene's by the factor their header states), clipped to [0, 1], one by one
    scores = [psnr_mu(np.clip(read_scene_units(saved / f"{name}.exr"), 0, 1),
                      read_hdr(sims / name / "HDRImg.hdr"))
              for name in ("procedural_000", "procedural_001")]
    assert mean_mu == pytest.approx(np.mean(scores))
    assert float(rows[3][rows[0].index("hdr_flip")]) > 0
    # any method's predictions: --pred scores a folder instead of reconstructing
    out2 = tmp_path / "res" / "theirs.md"
    assert kalantari.main(["--root", str(sims), "--pred", str(saved), "--name", "Theirs",
                           "--out", str(out2)]) == 0
    assert float(list(csv.reader(out2.with_suffix(".csv").open()))[3][1]) == pytest.approx(mean_mu)
    assert "| **Theirs** |" in out2.read_text()
    # a prediction missing: one line, exit 2, no table written
    (saved / "procedural_001.exr").unlink()
    capsys.readouterr()
    out3 = tmp_path / "res" / "broken.md"
    assert kalantari.main(["--root", str(sims), "--pred", str(saved), "--out", str(out3)]) == 2
    assert "procedural_001" in capsys.readouterr().err and not out3.exists()
