"""engine/ui/point_raster.py: points painted as squares where the axes put them, clipped at the edges, later
points over earlier ones, clear errors for impossible input."""

from __future__ import annotations

import numpy as np
import pytest
from convscope.engine.ui.point_raster import rasterize, square_side

RED, BLUE = (255, 0, 0, 255), (0, 0, 255, 255)


def test_a_point_is_a_square_centred_where_the_limits_put_it():
    # 10 x 10 pixels over x in [0, 10], y in [0, 10]: (2.5, 7.5) is column 2, row 2 (row 0 is y = 10).
    img = rasterize([2.5], [7.5], [RED], (0, 10, 0, 10), (10, 10), side=3)
    assert img.shape == (10, 10, 4) and img.dtype == np.uint8
    painted = np.argwhere(img[..., 3] > 0)
    assert painted.min(0).tolist() == [1, 1] and painted.max(0).tolist() == [3, 3]
    assert (img[1:4, 1:4] == RED).all() and img[..., 3].sum() == 9 * 255


def test_rows_are_top_first_and_width_and_height_are_their_own():
    img = rasterize([0.5, 19.5], [0.5, 9.5], [RED, BLUE], (0, 20, 0, 10), (20, 10), side=1)
    assert tuple(img[9, 0]) == RED, "y = 0.5 is the bottom row"
    assert tuple(img[0, 19]) == BLUE, "y = 9.5 is the top row, x = 19.5 the last column"
    assert img[..., 3].astype(bool).sum() == 2


def test_points_at_and_beyond_the_edges_are_clipped_not_wrapped():
    img = rasterize([0.0, 10.0, 50.0, np.nan], [5.0, 5.0, 5.0, 1.0], [RED] * 4, (0, 10, 0, 10), (10, 10), 3)
    cols = np.flatnonzero(img[..., 3].any(0))
    assert cols.tolist() == [0, 1, 9], "half squares at the left and right edges, nothing wrapped round"
    assert img[..., 3].astype(bool).sum() == 3 * 2 + 3 * 1


def test_a_later_point_covers_an_earlier_one():
    img = rasterize([5.0, 5.0], [5.0, 5.0], [RED, BLUE], (0, 10, 0, 10), (10, 10), side=3)
    assert (img[img[..., 3] > 0] == BLUE).all()


def test_square_side_follows_implot_square_markers():
    assert square_side(2.5) == 4 and square_side(2.0) == 3 and square_side(2.0, scale=2.0) == 6
    assert square_side(0.1) == 1


@pytest.mark.parametrize(
    "args, match",
    [
        (([1.0], [1.0], [RED], (0, 10, 0, 10), (0, 10), 3), "size"),
        (([1.0], [1.0], [RED], (5, 5, 0, 10), (10, 10), 3), "limits"),
        (([1.0, 2.0], [1.0], [RED], (0, 10, 0, 10), (10, 10), 3), "colours"),
    ],
)
def test_impossible_input_is_refused(args, match):
    with pytest.raises(ValueError, match=match):
        rasterize(*args)
