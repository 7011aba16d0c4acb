"""``python -m gmodiff.cli.demo`` runs end to end and says which method it used."""

from __future__ import annotations

from gmodiff.cli import demo
from gmodiff.pipeline import bundled as pipeline_module
from gmodiff.io.hdr import read_hdr


def test_demo_writes_hdr_and_preview(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pipeline_module, "WEIGHTS_DIR", tmp_path / "no-weights")
    out = tmp_path / "demo-out"
    assert demo.main(["--out", str(out), "--source", "procedural"]) == 0
    text = capsys.readouterr().out
    assert "classical baseline" in text and "psnr_mu" in text
    for name in ("hdr.hdr", "hdr.exr", "preview.png", "ground_truth.png"):
        assert (out / name).stat().st_size > 0
    assert read_hdr(out / "hdr.exr").shape == (384, 512, 3)
    assert (out / "scene" / "exposure.txt").is_file()


def test_demo_uses_the_bundled_model_and_sample(tmp_path, capsys):
    if pipeline_module.bundled_pipeline() is None or demo.bundled_sample() is None:
        import pytest

        pytest.skip("no bundled default model or sample scene")
    out = tmp_path / "demo-out"
    assert demo.main(["--out", str(out), "--no-compare"]) == 0
    text = capsys.readouterr().out
    assert "bundled sample scene 'sunset'" in text and "bundled default model" in text
    for name in ("hdr.hdr", "hdr.exr", "preview.png", "ground_truth.png", "gain_map.png", "mask.png"):
        assert (out / name).stat().st_size > 0
    assert read_hdr(out / "hdr.hdr").shape == (384, 512, 3)
    psnr = float(text.split("psnr_mu")[1].split("dB")[0])
    assert psnr > 30.0  # the sample's ground truth; the classical baseline gets ~32 dB
