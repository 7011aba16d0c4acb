"""``gmodiff eval``: table, JSON/CSV reports, missing predictions and bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from gmodiff.cli import main
from gmodiff.io.hdr import write_hdr
from gmodiff.io.scene import Scene, save_scene
from gmodiff.metrics import psnr_mu


def _gt(seed):
    rng = np.random.default_rng(seed)
    return (rng.random((16, 20, 3)) * 0.8 + 0.05).astype(np.float32)


@pytest.fixture()
def bench(tmp_path):
    root, preds = tmp_path / "scenes", tmp_path / "preds"
    truths = {}
    for seed, name in enumerate(["alpha", "beta"]):
        gt = _gt(seed)
        frames = [np.clip(gt * t, 0, 1) ** (1 / 2.2) for t in (1.0, 4.0, 16.0)]
        save_scene(Scene(frames=frames, exposure_times=np.array([1.0, 4.0, 16.0]),
                         ground_truth=gt), root / name)
        truths[name] = gt
    preds.mkdir()
    noise = np.random.default_rng(9).normal(0, 0.02, truths["alpha"].shape)
    write_hdr(preds / "alpha.exr", np.clip(truths["alpha"] + noise, 0, None), half=False)
    write_hdr(preds / "beta.hdr", truths["beta"] * 0.9)
    return root, preds, tmp_path


def test_eval_json_and_table(bench, capsys):
    root, preds, tmp = bench
    out = tmp / "m.json"
    assert main(["eval", "--pred", str(preds), "--gt", str(root), "-o", str(out),
                 "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "alpha" in stdout and "beta" in stdout and "mean (2)" in stdout and "psnr_mu" in stdout
    report = json.loads(out.read_text())
    assert [r["scene"] for r in report["scenes"]] == ["alpha", "beta"]
    assert report["missing"] == []
    for key in ("psnr_mu", "psnr_l", "ssim_mu", "ssim_l", "pu21_psnr", "pu21_ssim"):
        values = [r[key] for r in report["scenes"]]
        assert report["mean"][key] == pytest.approx(sum(values) / 2)
    # the numbers are the metric of what was on disk (EXR float is lossless)
    from gmodiff.io.hdr import read_hdr

    expect = psnr_mu(read_hdr(preds / "alpha.exr"), read_hdr(root / "alpha" / "HDRImg.hdr"))
    assert report["scenes"][0]["psnr_mu"] == pytest.approx(expect)


def test_eval_csv(bench):
    root, preds, tmp = bench
    out = tmp / "m.csv"
    assert main(["eval", "--pred", str(preds), "--gt", str(root), "-o", str(out),
                 "--no-progress"]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0][:3] == ["scene", "psnr_mu", "psnr_l"]
    assert [r[0] for r in rows[1:]] == ["alpha", "beta", "mean"]
    assert float(rows[3][1]) == pytest.approx((float(rows[1][1]) + float(rows[2][1])) / 2)


def test_eval_missing_prediction_fails_without_output(bench, capsys):
    root, preds, tmp = bench
    (preds / "beta.hdr").unlink()
    out = tmp / "m.json"
    assert main(["eval", "--pred", str(preds), "--gt", str(root), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "beta" in err and str(preds) in err and err.count("\n") == 1
    assert not out.exists()
    # opt-in: score the rest, list the missing scene, still exit non-zero
    assert main(["eval", "--pred", str(preds), "--gt", str(root), "-o", str(out),
                 "--allow-missing", "--no-progress"]) == 1
    report = json.loads(out.read_text())
    assert report["missing"] == ["beta"] and len(report["scenes"]) == 1


def test_eval_bad_inputs_exit_2_and_write_nothing(bench, capsys):
    root, preds, tmp = bench
    out = tmp / "m.json"
    assert main(["eval", "--pred", str(preds), "--gt", str(root), "-o", str(tmp / "m.txt")]) == 2
    assert "m.txt" in capsys.readouterr().err
    write_hdr(preds / "beta.hdr", np.ones((8, 8, 3), np.float32))  # wrong size
    assert main(["eval", "--pred", str(preds), "--gt", str(root), "-o", str(out)]) == 2
    assert "beta.hdr" in capsys.readouterr().err
    (preds / "beta.hdr").write_bytes(b"#?RADIANCE\n\n-Y 16 +X 20\n")  # truncated
    assert main(["eval", "--pred", str(preds), "--gt", str(root), "-o", str(out)]) == 2
    assert "beta.hdr" in capsys.readouterr().err
    assert main(["eval", "--pred", str(preds), "--gt", str(tmp / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err
    assert not out.exists()
    assert sorted(p.name for p in tmp.iterdir()) == ["preds", "scenes"]


def test_eval_scene_without_ground_truth_exits_2(bench, capsys):
    root, preds, tmp = bench
    (root / "beta" / "HDRImg.hdr").unlink()
    assert main(["eval", "--pred", str(preds), "--gt", str(root), "-o", str(tmp / "m.json")]) == 2
    err = capsys.readouterr().err
    assert "beta" in err and "ground truth" in err
    assert not (tmp / "m.json").exists()
