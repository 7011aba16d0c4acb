"""Photographs lifted to radiance: the training source of real photographic texture (#28)."""

import numpy as np

from gmodiff.data.sources import PHOTO_NAMES, photo_radiance, read_photos
from gmodiff.train.data import TrainDataConfig, build_train_dataset


def _photo(h: int = 60, w: int = 80) -> np.ndarray:
    """A stand-in photograph: a gradient with a clipped white patch."""
    rng = np.random.default_rng(0)
    photo = (rng.random((h, w, 3)) * 180).astype(np.uint8)
    photo[10:20, 10:20] = 255
    return photo


def test_photo_radiance_is_deterministic_hdr_and_keeps_texture():
    photos = [_photo()]
    first = photo_radiance(32, 48, photos, seed=3)
    assert first.shape == (32, 48, 3) and first.dtype == np.float32
    assert np.array_equal(first, photo_radiance(32, 48, photos, seed=3))
    assert not np.array_equal(first, photo_radiance(32, 48, photos, seed=4))
    assert np.isfinite(first).all() and first.min() >= 0
    luminance = first.mean(axis=-1)
    # The lighting field and lifted whites give more range than an 8-bit photo's 255:1.
    ranges = [np.ptp(np.log2(photo_radiance(32, 48, photos, seed=s).mean(-1) + 1e-6)) for s in range(8)]
    assert max(ranges) > 8
    # Texture survives: neighbouring pixels differ (not a smooth synthetic gradient).
    assert np.abs(np.diff(np.log(luminance + 1e-6), axis=1)).mean() > 0.05


def test_photo_crops_fit_photos_smaller_than_the_crop():
    out = photo_radiance(128, 128, [_photo(40, 50)], seed=1)
    assert out.shape == (128, 128, 3)


def test_bundled_photos_and_the_config_weight():
    photos = read_photos()
    assert len(photos) == len(PHOTO_NAMES) and all(p.ndim == 3 and p.shape[2] == 3 for p in photos)
    config = TrainDataConfig(simulated_items=2, simulated_procedural=False, simulated_photos=1,
                             crop_size=32)
    item = build_train_dataset(config)[0]
    assert np.isfinite(item["inputs"].numpy()).all()
