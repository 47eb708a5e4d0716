"""Image embeddings: first-order statistics (known answers, invariants) and the fitted encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from graph.schema import Node, NodeType
from synthetic.images import render_kidney
from twin.image_encoder import FIRST_ORDER_STATS, ImageEncoder, first_order_stats, otsu_threshold


def _disc(radius: float, inside: float = 0.8, outside: float = 0.1) -> np.ndarray:
    yy, xx = np.mgrid[0:32, 0:32]
    return np.where((yy - 15.5) ** 2 + (xx - 15.5) ** 2 <= radius**2, inside, outside)


def test_otsu_and_stats_of_a_two_level_image() -> None:
    img = _disc(8.0)
    fg = float((img > 0.5).mean())
    assert 0.1 < otsu_threshold(img) < 0.8
    s = dict(zip(FIRST_ORDER_STATS, first_order_stats(img), strict=True))
    assert s["foreground_fraction"] == fg
    np.testing.assert_allclose(s["mean"], 0.8 * fg + 0.1 * (1 - fg), rtol=1e-6)
    np.testing.assert_allclose([s["foreground_mean"], s["foreground_std"], s["p10"], s["p90"]], [0.8, 0.0, 0.1, 0.8],
                               atol=1e-6)
    # a bigger organ: a bigger foreground, the same foreground intensity
    assert first_order_stats(_disc(11.0))[5] > s["foreground_fraction"]


def test_constant_image_is_all_foreground() -> None:
    s = first_order_stats(np.full((16, 16), 0.3))
    assert s[5] == 1.0 and abs(s[1]) < 1e-6
    np.testing.assert_allclose(s[[0, 6]], 0.3, rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(2, 20), st.integers(2, 20)), elements=st.floats(0.0, 1.0)))
def test_stats_invariants(img: np.ndarray) -> None:
    s = dict(zip(FIRST_ORDER_STATS, first_order_stats(img), strict=True))
    assert all(np.isfinite(v) for v in s.values())
    lo, hi = img.min() - 1e-6, img.max() + 1e-6
    assert lo <= s["p10"] <= s["p50"] + 1e-6 <= s["p90"] + 2e-6 <= hi + 2e-6
    assert lo <= s["mean"] <= hi and lo <= s["foreground_mean"] <= hi
    assert 0.0 < s["foreground_fraction"] <= 1.0
    assert s["foreground_mean"] >= s["mean"] - 1e-6  # the foreground is the brighter class


def _image_node(path: Path) -> Node:
    return Node(f"Image/{path.stem}", NodeType.IMAGE, patient_id="p", props={"file": str(path)})


def test_embedding_reads_kidney_state_and_round_trips(tmp_path: Path) -> None:
    """Fitted on rendered renal ultrasounds, a linear read-out of the embedding recovers the
    structural eGFR the images were drawn from (the autoencoder code alone does far worse)."""
    rng = np.random.default_rng(0)
    egfr = rng.uniform(15.0, 120.0, 90)
    paths = []
    for i, e in enumerate(egfr):
        paths.append(tmp_path / f"k{i}.npy")
        np.save(paths[-1], render_kidney(float(e), 6.5, float(rng.uniform(0, 6.28)), rng))
    enc = ImageEncoder()
    enc.fit(paths[:60], epochs=2, seed=0)
    emb = np.stack([enc.embed_path(p) for p in paths])
    assert emb.shape == (90, enc.dim) and enc.dim == enc.code_dim + len(FIRST_ORDER_STATS)
    stats = emb[:, enc.code_dim:]
    np.testing.assert_allclose(stats[:60].mean(0), 0.0, atol=1e-4)  # standardised over the fit images

    a = np.c_[stats, np.ones(90)]
    w = np.linalg.lstsq(a[:60], egfr[:60], rcond=None)[0]
    rmse = float(np.sqrt(np.mean((a[60:] @ w - egfr[60:]) ** 2)))
    assert rmse < 4.0, rmse  # structural eGFR spans 15-120 (sd ~30)

    again = ImageEncoder.from_state(enc.state())
    np.testing.assert_array_equal(again(_image_node(paths[70])), emb[70])
