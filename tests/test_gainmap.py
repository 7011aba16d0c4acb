"""Property tests for the μ-law gain-map codec (spec §2), numpy and torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gmodiff.gainmap import (GM_OFFSET, decode_gain_map, encode_gain_map, from_signed,
                             hdr_upper_bound, mu_compress, mu_expand, to_signed)

unit = st.floats(0.0, 1.0, allow_nan=False, width=64)
shapes = st.tuples(st.integers(1, 6), st.integers(1, 6), st.just(3))


@st.composite
def hdr_ldr_pairs(draw):
    """Random (hdr, ldr_ref) with hdr within the codec's range [0, ldr_ref + 1/64]."""
    shape = draw(shapes)
    ldr = draw(arrays(np.float64, shape, elements=unit))
    fraction = draw(arrays(np.float64, shape, elements=unit))
    return fraction * (ldr + GM_OFFSET), ldr


@settings(max_examples=150, deadline=None)
@given(hdr_ldr_pairs())
def test_round_trip_numpy(pair):
    hdr, ldr = pair
    gain_map = encode_gain_map(hdr, ldr)
    assert gain_map.min() >= 0.0 and gain_map.max() <= 1.0
    assert np.abs(decode_gain_map(gain_map, ldr) - hdr).max() < 1e-5


@settings(max_examples=100, deadline=None)
@given(hdr_ldr_pairs())
def test_round_trip_torch_float32(pair):
    hdr, ldr = (torch.from_numpy(a.astype(np.float32)) for a in pair)
    gain_map = encode_gain_map(hdr, ldr)
    assert isinstance(gain_map, torch.Tensor) and gain_map.dtype == torch.float32
    assert float((decode_gain_map(gain_map, ldr) - hdr).abs().max()) < 1e-5
    # numpy and torch agree
    np.testing.assert_allclose(gain_map.numpy(), encode_gain_map(*pair), atol=1e-6)


@settings(max_examples=100, deadline=None)
@given(hdr_ldr_pairs())
def test_signed_round_trip_through_vae_range(pair):
    gain_map = encode_gain_map(*pair)
    signed = to_signed(gain_map)
    assert signed.min() >= -1.0 and signed.max() <= 1.0
    np.testing.assert_allclose(from_signed(signed), gain_map, atol=1e-12)
    hdr, ldr = pair
    via_torch = from_signed(to_signed(torch.from_numpy(gain_map)))
    assert float((decode_gain_map(via_torch, torch.from_numpy(ldr)) - torch.from_numpy(hdr))
                 .abs().max()) < 1e-5


@settings(max_examples=150, deadline=None)
@given(arrays(np.float64, shapes, elements=unit),
       st.floats(1.0, 2.0**8, allow_nan=False), st.sampled_from([None, 8, 16]))
def test_kalantari_normalisation_respects_bound(radiance, t_ref, bits):
    """Ground truth in [0, 1], reference LDR = clip((H·t_ref)^(1/2.2)) (quantised) ⇒ H ≤ L + 1/64."""
    ldr = np.clip(radiance * t_ref, 0.0, 1.0) ** (1 / 2.2)
    if bits is not None:
        peak = 2**bits - 1
        ldr = np.round(ldr * peak) / peak
    assert np.all(radiance <= hdr_upper_bound(ldr) + 1e-12)
    assert np.abs(decode_gain_map(encode_gain_map(radiance, ldr), ldr) - radiance).max() < 1e-5


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, shapes, elements=unit))
def test_mu_law_inverse(y):
    np.testing.assert_allclose(mu_compress(mu_expand(y)), y, atol=1e-12)
    np.testing.assert_allclose(mu_compress(y, 5000.0)[y == 1.0], 1.0)


def test_values_above_bound_saturate_and_clip_flag():
    ldr = np.array([0.5])
    hdr = np.array([2.0])  # far above 0.5 + 1/64
    assert encode_gain_map(hdr, ldr)[0] == pytest.approx(1.0)
    assert decode_gain_map(encode_gain_map(hdr, ldr), ldr)[0] == pytest.approx(0.5 + GM_OFFSET)
    assert encode_gain_map(hdr, ldr, clip=False)[0] > 1.0
