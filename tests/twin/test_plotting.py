"""Figure layout: no empty grid slot but the legend's, names wrapped never cut, pooled quantiles."""

from __future__ import annotations

import numpy as np
import pytest

from scenarios.plots import pooled_quantiles
from twin.plotting import grid_shape, lab_label

LONG = "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood"


@pytest.mark.parametrize(("panels", "cols", "shape"), [(9, 3, (3, 3)), (10, 3, (5, 2)), (7, 3, (4, 2)), (5, 3, (2, 3)),
                                                       (8, 2, (4, 2)), (1, 3, (1, 1)), (2, 3, (1, 2))])
def test_grid_shape_known_cases(panels: int, cols: int, shape: tuple[int, int]) -> None:
    assert grid_shape(panels, cols) == shape


def test_grid_leaves_at_most_the_legend_slot_empty() -> None:
    for max_cols in (2, 3):
        for n in range(1, 25):
            rows, cols = grid_shape(n, max_cols)
            assert cols <= max_cols and 0 <= rows * cols - n <= 1, (n, max_cols, rows, cols)
    with pytest.raises(ValueError):
        grid_shape(0)


def test_lab_label_wraps_whole_words_and_shows_the_readable_unit() -> None:
    label = lab_label(LONG, "62238-1", "mL/min/{1.73_m2}", width=40)
    lines = label.split("\n")
    assert len(lines) > 1 and all(len(line) <= 40 for line in lines)
    assert " ".join(lines) == f"{LONG} (62238-1) [mL/min/1.73 m²]"  # nothing cut, nothing lost
    assert "…" not in label


def test_pooled_quantiles_are_smoother_and_unbiased_on_a_slow_trend() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(0.0, 365.0, 7.0)
    x = 0.01 * t + rng.standard_normal((256, len(t)))  # a slow drift plus independent noise per time
    alone = pooled_quantiles(x, (0.5,), 0)[0]
    pooled = pooled_quantiles(x, (0.5,), 2)[0]
    assert np.allclose(alone, np.median(x, axis=0))
    assert np.abs(np.diff(pooled, 2)).mean() < 0.5 * np.abs(np.diff(alone, 2)).mean()
    assert np.abs(pooled - 0.01 * t).max() < 0.25
    assert pooled[0] == alone[0] and pooled[-1] == alone[-1]  # the ends use their own samples
