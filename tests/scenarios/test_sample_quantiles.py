"""``sample_quantiles`` is ``np.quantile`` (linear interpolation) computed from one sort."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from scenarios.result import sample_quantiles

_FINITE = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), x=arrays(np.float32, array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=9), elements=_FINITE),
       qs=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4))
def test_equals_numpy_quantile(data: st.DataObject, x: np.ndarray, qs: list[float]) -> None:
    axis = data.draw(st.integers(0, x.ndim - 1))
    want = np.quantile(x, qs, axis=axis)
    got = sample_quantiles(x, qs, axis=axis)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * (1.0 + float(np.abs(x).max())))


def test_nan_samples_give_nan_as_numpy_does() -> None:
    x = np.array([[1.0, np.nan], [2.0, 3.0], [4.0, 5.0]])
    np.testing.assert_array_equal(np.isnan(sample_quantiles(x, [0.5])), np.isnan(np.quantile(x, [0.5], axis=0)))
    np.testing.assert_allclose(sample_quantiles(x, [0.5])[0, 0], 2.0)
