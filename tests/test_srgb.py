"""The one sRGB transfer curve (gmodiff.srgb) every road uses: the IEC 61966-2-1 values, both
directions inverse to each other, and the float type kept."""

from __future__ import annotations

import numpy as np

from gmodiff.camera.response import SRGBResponse
from gmodiff.io.ultrahdr import srgb_to_linear as ultrahdr_decode
from gmodiff.srgb import linear_to_srgb, srgb_to_linear


def test_the_curve_has_the_standards_values_and_inverts():
    encoded = np.array([0.0, 0.04045, 0.5, 1.0])
    assert np.allclose(srgb_to_linear(encoded), [0.0, 0.04045 / 12.92, 0.214041, 1.0], atol=1e-6)
    values = np.linspace(0.0, 1.0, 1001)
    assert np.abs(linear_to_srgb(srgb_to_linear(values)) - values).max() < 1e-9
    assert srgb_to_linear(np.float32([0.5])).dtype == np.float32  # callers choose the precision


def test_every_user_of_the_curve_gets_the_same_numbers():
    values = np.random.default_rng(0).random(500).astype(np.float32)
    response = SRGBResponse()
    assert np.array_equal(response.inverse(values), srgb_to_linear(values.astype(np.float64)).astype(np.float32))
    assert np.array_equal(ultrahdr_decode(values), srgb_to_linear(values))
    with np.errstate(invalid="raise"):  # negative light raises no warning in the power
        assert linear_to_srgb(np.array([-0.1]))[0] < 0
